/*
 * render: mailer-spy's own rendering of the payroll e-mail (the candidate
 * of the Parallel Run). Written independently of mailer-real's legacy
 * renderer: the two must agree on the canonical mail of docs/DESIGN.md,
 * and a difference between them is what the system exists to catch.
 *
 * The subject and the body come from templates with placeholders
 * {id} {shipTo} {total} {destination} ("{{" and "}}" for literal braces).
 * The built-in body template gives exactly the canonical body; another
 * one can be loaded from a file (SPY_TEMPLATE), e.g. to show the
 * reconciler catching a changed greeting. Line ends become CRLF.
 *
 * The destination rule is in docs/SPY.md.
 */
#ifndef MAILER_SPY_RENDER_H
#define MAILER_SPY_RENDER_H

#include <stddef.h>
#include <stdint.h>

#define RENDER_SHIP_TO_MAX 256	/* bytes */
#define RENDER_LOCAL_MAX 64	/* bytes of the local part */
#define RENDER_ADDRESS_MAX 254	/* bytes of the whole address */
#define RENDER_TEMPLATE_MAX (64 * 1024)

struct render_template;

struct render_mail {
	char *destination;
	char *subject;
	char *body;
};

/* The canonical body: "Hello {shipTo},\r\n\r\nPayroll {id} shipped to {shipTo} of {total}.\r\n" */
extern const char render_default_body[];

/* NULL with err on an unknown placeholder, a stray brace or a control character. */
struct render_template *render_template_parse(const char *text, size_t len,
    char *err, size_t errlen);
/* Reads and parses a template file (at most RENDER_TEMPLATE_MAX bytes). */
struct render_template *render_template_load(const char *path, char *err,
    size_t errlen);
void render_template_free(struct render_template *t);

/*
 * The destination for ship_to (malloc'ed), or NULL with err when ship_to
 * can make neither a valid address nor a safe local part.
 */
char *render_destination(const char *ship_to, const char *mail_domain,
    char *err, size_t errlen);

/* 1 when domain is a host name fit for MAIL_DOMAIN (LDH labels, two or more). */
int render_domain_ok(const char *domain);

/*
 * Fills out (every string malloc'ed; render_mail_clear frees them). body
 * NULL = the default template. -1 with err when ship_to is unusable.
 */
int render_mail(const struct render_template *body, int64_t payroll_id,
    const char *ship_to, int64_t total_cents, const char *mail_domain,
    struct render_mail *out, char *err, size_t errlen);
void render_mail_clear(struct render_mail *m);

#endif
