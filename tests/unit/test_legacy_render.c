/*
 * Unit tests for mailer-real/legacy_render: the canonical e-mail byte for
 * byte (subject, CRLF body, two-decimal total), the destination rule for
 * names, addresses and non-ASCII names, and the refusals (control
 * characters, header injection, names that make no address).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailer-real/legacy_render.h"

static void
expect_dest(const char *ship_to, const char *want)
{
	char out[LEGACY_ADDR_MAX + 1], err[256] = "";

	if (legacy_destination(ship_to, "example.com", out, sizeof(out), err,
	    sizeof(err)) != 0)
		fail_msg("%s refused: %s", ship_to, err);
	assert_string_equal(out, want);
}

static void
expect_refused(const char *ship_to, const char *word)
{
	char out[LEGACY_ADDR_MAX + 1], err[256] = "";

	if (legacy_destination(ship_to, "example.com", out, sizeof(out), err,
	    sizeof(err)) == 0)
		fail_msg("%s accepted as %s", ship_to, out);
	assert_non_null(strstr(err, "shipTo"));
	if (word != NULL && strstr(err, word) == NULL)
		fail_msg("error for %s is \"%s\", wanted \"%s\" in it", ship_to,
		    err, word);
}

static void
test_seed_mail(void **state)
{
	struct legacy_mail m;
	char err[256] = "";

	(void)state;
	assert_int_equal(legacy_render(3, "Juablaz", 32000, "example.com", &m,
	    err, sizeof(err)), 0);
	assert_string_equal(m.destination, "juablaz@example.com");
	assert_string_equal(m.subject, "Payroll 3 shipped");
	assert_string_equal(m.body,
	    "Hello Juablaz,\r\n\r\nPayroll 3 shipped to Juablaz of 320.00.\r\n");
	legacy_mail_clear(&m);
	assert_null(m.body);
	legacy_mail_clear(&m);
}

static void
test_totals(void **state)
{
	char t[32];

	(void)state;
	legacy_format_total(0, t, sizeof(t));
	assert_string_equal(t, "0.00");
	legacy_format_total(5, t, sizeof(t));
	assert_string_equal(t, "0.05");
	legacy_format_total(123456, t, sizeof(t));
	assert_string_equal(t, "1234.56");
	legacy_format_total(100000000000LL, t, sizeof(t));
	assert_string_equal(t, "1000000000.00");
}

static void
test_names(void **state)
{
	(void)state;
	expect_dest("Juablaz", "juablaz@example.com");
	expect_dest("Ana Maria Lopez", "ana.maria.lopez@example.com");
	expect_dest("José Núñez", "jose.nunez@example.com");
	expect_dest("ÉRIC Ærø", "eric.aero@example.com");
	expect_dest("O'Brien-Smith", "o'brien-smith@example.com");
	expect_dest("agent_007", "agent_007@example.com");
}

static void
test_addresses(void **state)
{
	(void)state;
	expect_dest("Ana.Lopez@Example.COM", "Ana.Lopez@example.com");
	expect_dest("a+tag@mail.example.org", "a+tag@mail.example.org");
}

static void
test_refusals(void **state)
{
	(void)state;
	expect_refused("", "empty");
	expect_refused("Juablaz\r\nBcc: evil@example.net", "control");
	expect_refused("x\nBcc: evil@example.net", "control");
	expect_refused("a\r\n.\r\nMAIL FROM:<x@y.z>", "control");
	expect_refused("evil@example.net>\r\nRCPT TO:<b@c.d", "control");
	expect_refused("evil@example.net> NOTIFY=NEVER", NULL);
	expect_refused("a@b@example.com", "address");
	expect_refused("a@localhost", "domain");
	expect_refused("a@-bad.example.com", "domain");
	expect_refused("a..b@example.com", "address");
	expect_refused(" Juablaz", NULL);
	expect_refused("Juan  Perez", NULL);
	expect_refused(".", NULL);
	expect_refused("Иван", "U+0418");
	expect_refused("<script>", "U+003C");
	expect_refused("\xc3\x28", "UTF-8");
	expect_refused("\xed\xa0\x80", "UTF-8");	/* a surrogate */
	expect_refused("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "long");
}

static void
test_non_ascii_body_kept(void **state)
{
	struct legacy_mail m;
	char err[256] = "";

	(void)state;
	assert_int_equal(legacy_render(12, "José Núñez", 150075, "corp.example",
	    &m, err, sizeof(err)), 0);
	assert_string_equal(m.destination, "jose.nunez@corp.example");
	assert_string_equal(m.body, "Hello José Núñez,\r\n\r\n"
	    "Payroll 12 shipped to José Núñez of 1500.75.\r\n");
	legacy_mail_clear(&m);
}

static void
test_domain_check(void **state)
{
	(void)state;
	assert_int_equal(legacy_domain_ok("example.com"), 1);
	assert_int_equal(legacy_domain_ok("localhost"), 0);
	assert_int_equal(legacy_domain_ok("exa mple.com"), 0);
	assert_int_equal(legacy_domain_ok(NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_mail),
		cmocka_unit_test(test_totals),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_non_ascii_body_kept),
		cmocka_unit_test(test_domain_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
