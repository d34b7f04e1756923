/*
 * Unit tests for mailer-spy/render: the canonical mail byte for byte
 * (CRLF line ends, two decimals), templates (custom greeting, unknown
 * placeholders, stray braces), and the destination rule of docs/SPY.md,
 * hostile shipTo values included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailer-spy/render.h"

static void
test_canonical_mail(void **state)
{
	struct render_mail m;
	char err[256];

	(void)state;
	assert_int_equal(render_mail(NULL, 3, "Juablaz", 32000, "example.com", &m,
	    err, sizeof(err)), 0);
	assert_string_equal(m.destination, "juablaz@example.com");
	assert_string_equal(m.subject, "Payroll 3 shipped");
	assert_string_equal(m.body,
	    "Hello Juablaz,\r\n\r\nPayroll 3 shipped to Juablaz of 320.00.\r\n");
	render_mail_clear(&m);
}

static void
test_totals(void **state)
{
	static const struct {
		int64_t cents;
		const char *text;
	} cases[] = {
		{ 0, "0.00" }, { 1, "0.01" }, { 10, "0.10" }, { 32050, "320.50" },
		{ 99999999999LL, "999999999.99" }, { 100000000000LL, "1000000000.00" },
	};
	struct render_mail m;
	char err[256], want[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(render_mail(NULL, 7, "a", cases[i].cents,
		    "example.com", &m, err, sizeof(err)), 0);
		snprintf(want, sizeof(want),
		    "Hello a,\r\n\r\nPayroll 7 shipped to a of %s.\r\n", cases[i].text);
		assert_string_equal(m.body, want);
		render_mail_clear(&m);
	}
}

static void
test_utf8_name(void **state)
{
	struct render_mail m;
	char err[256];

	(void)state;
	assert_int_equal(render_mail(NULL, 12, "Jos\xc3\xa9 N\xc3\xba\xc3\xb1" "ez",
	    125, "Example.com", &m, err, sizeof(err)), 0);
	assert_string_equal(m.destination, "jose.nunez@Example.com");
	/* the body keeps the name exactly as given */
	assert_string_equal(m.body, "Hello Jos\xc3\xa9 N\xc3\xba\xc3\xb1" "ez,\r\n\r\n"
	    "Payroll 12 shipped to Jos\xc3\xa9 N\xc3\xba\xc3\xb1" "ez of 1.25.\r\n");
	render_mail_clear(&m);
}

static void
dest_is(const char *ship_to, const char *want)
{
	char err[256] = "";
	char *d = render_destination(ship_to, "example.com", err, sizeof(err));

	if (d == NULL)
		fail_msg("'%s' refused: %s", ship_to, err);
	assert_string_equal(d, want);
	free(d);
}

static void
dest_refused(const char *ship_to, const char *why)
{
	char err[256] = "";
	char *d = render_destination(ship_to, "example.com", err, sizeof(err));

	if (d != NULL)
		fail_msg("'%s' accepted as '%s'", ship_to, d);
	if (strstr(err, why) == NULL)
		fail_msg("'%s': error '%s' lacks '%s'", ship_to, err, why);
}

static void
test_destination_rules(void **state)
{
	(void)state;
	dest_is("Juablaz", "juablaz@example.com");
	dest_is("Juan Blaz", "juan.blaz@example.com");
	dest_is("O'Brien-Smith_2", "o'brien-smith_2@example.com");
	dest_is("j.smith", "j.smith@example.com");
	dest_is("Ma\xc3\x9f" "e \xc3\x86sir \xc5\x92uvre \xc3\x9e" "or",
	    "masse.aesir.oeuvre.thor@example.com");
	dest_is("\xc5\xbb\xc3\xb3\xc5\x82w", "zolw@example.com");
	dest_is("Ann.Lee@Example.COM", "Ann.Lee@example.com");
	dest_is("a+tag@mail.example.org", "a+tag@mail.example.org");
	dest_is("x@a-b.example", "x@a-b.example");
	/* 64 bytes of local part is the most */
	dest_is("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com");
}

static void
test_destination_hostile(void **state)
{
	(void)state;
	dest_refused("", "empty");
	dest_refused(" ", "must not be empty, start or end");
	dest_refused("   ", "must not be empty, start or end");
	dest_refused(" Juan", "start or end");
	dest_refused("Juan ", "start or end");
	dest_refused("Juan  Blaz", "two");
	dest_refused(".juan", "start or end");
	dest_refused("a\r\nBcc: victim@evil.com", "control");
	dest_refused("a\nb", "control");
	dest_refused("a\tb", "control");
	dest_refused("a\x7f", "control");
	dest_refused("<juan>", "U+003C");
	dest_refused("juan>", "U+003E");
	dest_refused("a,b", "U+002C");
	dest_refused("a;b", "U+003B");
	dest_refused("\"juan\"", "U+0022");
	dest_refused("a\\b", "U+005C");
	dest_refused("a:b", "U+003A");
	dest_refused("a/b", "U+002F");
	dest_refused("x \xc3\x97 y", "U+00D7");		/* multiplication sign */
	dest_refused("\xe6\x9d\xb1\xe4\xba\xac", "U+6771");	/* not a Latin letter */
	dest_refused("\xc2\x85", "U+0085");		/* C1 control */
	dest_refused("a\xff", "UTF-8");
	dest_refused("\xc0\xaf", "UTF-8");		/* overlong '/' */
	dest_refused("@example.com", "before '@'");
	dest_refused("juan@", "after '@'");
	dest_refused("juan@@example.com", "before '@'");
	dest_refused("a@b@example.com", "before '@'");
	dest_refused("juan@localhost", "after '@'");
	dest_refused("juan@-x.com", "after '@'");
	dest_refused("juan@x-.com", "after '@'");
	dest_refused("juan@x..com", "after '@'");
	dest_refused("juan@exa mple.com", "after '@'");
	dest_refused("ju an@example.com", "before '@'");
	dest_refused("<juan@example.com>", "before '@'");
	dest_refused("juan@example.com>", "after '@'");
	dest_refused("Jos\xc3\xa9@example.com", "before '@'");
	dest_refused("juan@ex\xc3\xa1mple.com", "after '@'");
	dest_refused("juan.@example.com", "before '@'");
	dest_refused("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "too long");
	dest_refused("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@example.com", "before '@'");
	/* folding may make it longer than 64: 33 x "ß" -> 66 bytes */
	dest_refused("\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f"
	    "\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f"
	    "\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f"
	    "\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f\xc3\x9f"
	    "\xc3\x9f", "too long");
}

static void
test_domain_config(void **state)
{
	(void)state;
	assert_true(render_domain_ok("example.com"));
	assert_true(render_domain_ok("mail.example-1.org"));
	assert_false(render_domain_ok("localhost"));
	assert_false(render_domain_ok("example..com"));
	assert_false(render_domain_ok("-example.com"));
	assert_false(render_domain_ok("exa_mple.com"));
	assert_false(render_domain_ok(""));
	assert_false(render_domain_ok(NULL));
}

static void
test_templates(void **state)
{
	static const char greeting[] = "Hi {shipTo}!\n\nPayroll {id} ({total}) "
	    "goes to {destination}. {{literal}}\n";
	struct render_template *t;
	struct render_mail m;
	char err[256];

	(void)state;
	t = render_template_parse(greeting, strlen(greeting), err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(render_mail(t, 5, "Ann Lee", 1999, "example.com", &m, err,
	    sizeof(err)), 0);
	assert_string_equal(m.body, "Hi Ann Lee!\r\n\r\nPayroll 5 (19.99) goes to "
	    "ann.lee@example.com. {literal}\r\n");
	assert_string_equal(m.subject, "Payroll 5 shipped");
	render_mail_clear(&m);
	render_template_free(t);

	/* the canonical template, given explicitly, with CRLF already */
	t = render_template_parse("Hello {shipTo},\r\n\r\nPayroll {id} shipped to "
	    "{shipTo} of {total}.\r\n", 65, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(render_mail(t, 3, "Juablaz", 32000, "example.com", &m,
	    err, sizeof(err)), 0);
	assert_string_equal(m.body,
	    "Hello Juablaz,\r\n\r\nPayroll 3 shipped to Juablaz of 320.00.\r\n");
	render_mail_clear(&m);
	render_template_free(t);

	assert_null(render_template_parse("Hello {name}", 12, err, sizeof(err)));
	assert_non_null(strstr(err, "{name}"));
	assert_null(render_template_parse("Hello {shipTo", 13, err, sizeof(err)));
	assert_non_null(strstr(err, "not closed"));
	assert_null(render_template_parse("Hello }", 7, err, sizeof(err)));
	assert_non_null(strstr(err, "stray"));
	assert_null(render_template_parse("Hello\rx", 7, err, sizeof(err)));
	assert_non_null(strstr(err, "control"));
}

static void
test_template_file(void **state)
{
	char path[] = "/tmp/spy-template-XXXXXX", err[256];
	struct render_template *t;
	struct render_mail m;
	FILE *fp;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs("Howdy {shipTo},\n\nPayroll {id} shipped to {shipTo} of {total}.\n", fp);
	fclose(fp);
	t = render_template_load(path, err, sizeof(err));
	unlink(path);
	assert_non_null(t);
	assert_int_equal(render_mail(t, 3, "Juablaz", 32000, "example.com", &m,
	    err, sizeof(err)), 0);
	assert_string_equal(m.body,
	    "Howdy Juablaz,\r\n\r\nPayroll 3 shipped to Juablaz of 320.00.\r\n");
	render_mail_clear(&m);
	render_template_free(t);
	assert_null(render_template_load("/nonexistent/t", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/t"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical_mail),
		cmocka_unit_test(test_totals),
		cmocka_unit_test(test_utf8_name),
		cmocka_unit_test(test_destination_rules),
		cmocka_unit_test(test_destination_hostile),
		cmocka_unit_test(test_domain_config),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_template_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
