/*
 * legacy_render: the monolith's own rendering of the payroll e-mail, the
 * control of the Parallel Run. It is written independently of mailer-spy's
 * renderer on purpose: a difference between the two is what the system is
 * built to catch, so they must never share code.
 *
 * Canonical output (docs/DESIGN.md, docs/MAILER-REAL.md):
 *   destination  shipTo's address with the domain lower-cased, or
 *                lower(shipTo) with spaces as '.' at mail_domain
 *   subject      "Payroll {id} shipped"
 *   body         "Hello {shipTo},\r\n\r\nPayroll {id} shipped to {shipTo} of {total}.\r\n"
 */
#ifndef MAILER_REAL_LEGACY_RENDER_H
#define MAILER_REAL_LEGACY_RENDER_H

#include <stddef.h>
#include <stdint.h>

#define LEGACY_ADDR_MAX 254	/* RFC 5321 path limit, less the brackets */

struct legacy_mail {
	char destination[LEGACY_ADDR_MAX + 1];
	char subject[64];
	char *body;		/* owned; legacy_mail_clear frees it */
};

/*
 * The destination for ship_to, or -1 with err saying why it can make
 * neither an address nor a safe local part (the caller answers 400 on
 * field "shipTo").
 */
int legacy_destination(const char *ship_to, const char *mail_domain,
    char *out, size_t outlen, char *err, size_t errlen);

/* Renders the whole mail; -1 with err when ship_to is unusable. */
int legacy_render(int64_t payroll_id, const char *ship_to,
    int64_t total_cents, const char *mail_domain, struct legacy_mail *out,
    char *err, size_t errlen);

void legacy_mail_clear(struct legacy_mail *m);

/* "320.00" from 32000: the money text both the body and the API use. */
void legacy_format_total(int64_t cents, char *out, size_t outlen);

/* 1 when mail_domain is usable, else 0 (a configuration check at start;
 * a predicate like smtp_address_ok and the spy's render_domain_ok). */
int legacy_domain_ok(const char *mail_domain);

#endif
