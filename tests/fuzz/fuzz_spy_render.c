/*
 * fuzz_spy_render: mailer-spy's renderer (mailer-spy/render.c): its
 * template parser, its destination rule and the whole mail, on arbitrary
 * templates, shipTo values, ids and totals.
 *
 * Input: 8 bytes id, 8 bytes total, then the template up to the first NUL
 * (none: the built-in template), then the shipTo.
 *
 * Oracles:
 *  - an accepted shipTo yields an address with one '@', no control
 *    character, space, angle bracket or comma, at most 254 bytes;
 *  - the subject is "Payroll {id} shipped";
 *  - an accepted template gives a body whose lines all end CRLF and that
 *    has no control character but TAB (the shipTo cannot bring one);
 *  - a rejected shipTo or template comes with a reason;
 *  - differential, the point of the Parallel Run: a shipTo that mailer-real
 *    accepts (its validation limit, 256 bytes, and legacy_destination) is
 *    accepted by the spy too, which renders the same destination, subject
 *    and body with its built-in template. A difference here is a mismatch
 *    every real payroll with such a shipTo would raise.
 */
#include <inttypes.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "mailer-real/legacy_render.h"
#include "mailer-spy/render.h"

static void
check_address(const char *a)
{
	const char *at = strchr(a, '@');

	FUZZ_CHECK(at != NULL && strchr(at + 1, '@') == NULL, "address '%s'", a);
	FUZZ_CHECK(!fuzz_has_ctl(a, ""), "control character in address");
	FUZZ_CHECK(strpbrk(a, " <>,;\\\"()[]") == NULL, "unsafe character in '%s'", a);
	FUZZ_CHECK(strlen(a) <= RENDER_ADDRESS_MAX, "address too long");
}

static void
check_mail(const struct render_mail *m, int64_t id)
{
	char subject[64];

	check_address(m->destination);
	snprintf(subject, sizeof(subject), "Payroll %" PRId64 " shipped", id);
	FUZZ_CHECK(strcmp(m->subject, subject) == 0, "subject '%s'", m->subject);
	FUZZ_CHECK(m->body != NULL && fuzz_crlf_only(m->body), "body line ends");
	FUZZ_CHECK(!fuzz_has_ctl(m->body, "\t\r\n"), "control character in body");
}

/* mailer-real's answer for ship_to, as its handler gives it. */
static int
real_accepts(const char *ship_to, char *dest, size_t destlen)
{
	char err[256];

	if (strlen(ship_to) > 256)	/* payroll.c: shipTo max_len */
		return 0;
	return legacy_destination(ship_to, "example.com", dest, destlen, err,
	    sizeof(err)) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t id = fuzz_take_i64(&data, &size);
	int64_t cents = fuzz_take_i64(&data, &size);
	const uint8_t *nul = memchr(data, '\0', size);
	struct render_template *t = NULL;
	char err[256], dest[LEGACY_ADDR_MAX + 1], *ship_to, *d;
	struct render_mail m;
	struct legacy_mail lm;

	if (id < 0)
		id = -(id + 1);
	if (cents < 0)
		cents = -(cents + 1);
	cents %= 100000000001LL;
	if (nul != NULL) {
		err[0] = '\0';
		t = render_template_parse((const char *)data, (size_t)(nul - data),
		    err, sizeof(err));
		if (t == NULL)
			FUZZ_CHECK(err[0] != '\0', "template rejected without a reason");
		size -= (size_t)(nul - data) + 1;
		data = nul + 1;
	}
	ship_to = fuzz_cstr(data, size);

	err[0] = '\0';
	d = render_destination(ship_to, "example.com", err, sizeof(err));
	if (d != NULL)
		check_address(d);
	else
		FUZZ_CHECK(err[0] != '\0', "shipTo rejected without a reason");

	if (render_mail(t, id, ship_to, cents, "example.com", &m, err,
	    sizeof(err)) == 0) {
		FUZZ_CHECK(d != NULL && strcmp(d, m.destination) == 0,
		    "render_mail and render_destination disagree");
		check_mail(&m, id);
		if (t == NULL)
			FUZZ_CHECK(strncmp(m.body, "Hello ", 6) == 0, "body start");
		render_mail_clear(&m);
	} else {
		FUZZ_CHECK(d == NULL, "render_mail refused what render_destination took");
	}

	if (real_accepts(ship_to, dest, sizeof(dest))) {
		FUZZ_CHECK(d != NULL, "mailer-real takes shipTo '%s', the spy "
		    "refuses it: %s", ship_to, err);
		FUZZ_CHECK(strcmp(d, dest) == 0, "destination: real '%s', spy '%s'",
		    dest, d);
		memset(&lm, 0, sizeof(lm));
		FUZZ_CHECK(legacy_render(id, ship_to, cents, "example.com", &lm,
		    err, sizeof(err)) == 0, "legacy_render: %s", err);
		FUZZ_CHECK(render_mail(NULL, id, ship_to, cents, "example.com", &m,
		    err, sizeof(err)) == 0, "render_mail: %s", err);
		FUZZ_CHECK(strcmp(lm.subject, m.subject) == 0, "subjects differ");
		FUZZ_CHECK(strcmp(lm.body, m.body) == 0, "bodies differ:\n%s\n--\n%s",
		    lm.body, m.body);
		legacy_mail_clear(&lm);
		render_mail_clear(&m);
	}
	free(d);
	render_template_free(t);
	free(ship_to);
	return 0;
}
