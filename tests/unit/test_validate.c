/*
 * Unit tests for common/validate: strict JSON objects (duplicates, unknown
 * and missing members, wrong types), money as exact cents (edge cases of
 * decimals, sign, size and non-finite values), text (control characters,
 * invalid UTF-8, length), and that every error names its member.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/validate.h"

struct payload {
	char id[37];
	int64_t n;
	const char *name;
	int64_t cents;
};

static const struct validate_field fields[] = {
	{ .name = "id", .type = VALIDATE_UUID, .required = 1,
	  .offset = offsetof(struct payload, id) },
	{ .name = "n", .type = VALIDATE_INT, .required = 1, .min = 1,
	  .max = INT64_MAX, .offset = offsetof(struct payload, n) },
	{ .name = "name", .type = VALIDATE_TEXT, .required = 1, .max_len = 16,
	  .offset = offsetof(struct payload, name) },
	{ .name = "total", .type = VALIDATE_MONEY, .required = 1,
	  .offset = offsetof(struct payload, cents) },
	VALIDATE_FIELDS_END
};

#define GOOD_ID "6F1C2B3A-0D4E-4F5A-8B6C-7D8E9F0A1B2C"

/* Parses and validates; returns 0/-1, fills p and e. */
static int
check(const char *body, struct payload *p, struct validate_error *e)
{
	json_t *o;
	int rc;

	memset(p, 0, sizeof(*p));
	memset(e, 0, sizeof(*e));
	o = validate_parse_object(body, strlen(body), e);
	if (o == NULL)
		return -1;
	rc = validate_object(o, body, strlen(body), fields, p, e);
	if (rc == 0 && p->name != NULL)
		p->name = "(checked)";	/* the string dies with o */
	json_decref(o);
	return rc;
}

static char *
doc(const char *total_json)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
	    "{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"Juablaz\",\"total\":%s}",
	    total_json);
	return buf;
}

static int64_t
cents_of(const char *total_json, struct validate_error *e)
{
	struct payload p;

	if (check(doc(total_json), &p, e) == -1)
		return -1;
	return p.cents;
}

static void
test_good_document(void **state)
{
	struct payload p;
	struct validate_error e;

	(void)state;
	assert_int_equal(check(doc("320"), &p, &e), 0);
	assert_string_equal(p.id, "6f1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2c");
	assert_int_equal(p.n, 3);
	assert_int_equal(p.cents, 32000);
}

static void
test_money_accepted(void **state)
{
	struct validate_error e;

	(void)state;
	assert_int_equal(cents_of("320.00", &e), 32000);
	assert_int_equal(cents_of("320.5", &e), 32050);
	assert_int_equal(cents_of("0.01", &e), 1);
	assert_int_equal(cents_of("1.10", &e), 110);
	assert_int_equal(cents_of("0.29", &e), 29);	/* 0.29*100 is 28.999... */
	assert_int_equal(cents_of("0", &e), 0);
	assert_int_equal(cents_of("1000000000", &e), 100000000000LL);
	assert_int_equal(cents_of("999999999.99", &e), 99999999999LL);
	assert_int_equal(cents_of("1e3", &e), 100000);
	assert_int_equal(cents_of("1.5e2", &e), 15000);
	assert_int_equal(cents_of("0.1", &e), 10);
	assert_int_equal(cents_of("19.99", &e), 1999);
	assert_int_equal(cents_of("12345678.91", &e), 1234567891);
	assert_int_equal(cents_of("4.35", &e), 435);	/* 4.35*100 is 434.999... */
}

static void
money_rejected(const char *total_json, const char *why)
{
	struct validate_error e;

	assert_int_equal(cents_of(total_json, &e), -1);
	assert_string_equal(e.field, "total");
	if (strstr(e.message, why) == NULL)
		fail_msg("%s: '%s' does not say '%s'", total_json, e.message, why);
}

static void
test_money_rejected(void **state)
{
	(void)state;
	money_rejected("320.001", "two decimals");
	money_rejected("0.001", "two decimals");
	money_rejected("1e-5", "two decimals");
	money_rejected("999999999.999", "two decimals");
	money_rejected("2.675", "two decimals");	/* rounds to 2.67 or 2.68 */
	money_rejected("0.105", "two decimals");
	money_rejected("999999999.995", "two decimals");
	money_rejected("-1", "negative");
	money_rejected("-0.01", "negative");
	money_rejected("1000000000.01", "at most");
	money_rejected("1000000001", "at most");
	money_rejected("1e10", "at most");
	money_rejected("1e400", "overflow");	/* jansson refuses, we name it */
	money_rejected("-1e400", "overflow");
	money_rejected("\"320\"", "must be a number");
	money_rejected("true", "must be a number");
	money_rejected("null", "must be a number");
	money_rejected("[320]", "must be a number");
	money_rejected("99999999999999999999999", "too big");
	money_rejected("-0", "negative");
}

/*
 * Issue 14: money is read from the number's text, never through a double.
 * Each of these reads back as a double with two or fewer decimals (or as
 * one just under the cap), so a double-based check let them through and
 * rounded them.
 */
static void
test_money_exact_text(void **state)
{
	struct validate_error e;

	(void)state;
	money_rejected("320.0000000000000001", "two decimals");
	money_rejected("0.30000000000000001", "two decimals");
	money_rejected("999999999.999999999", "two decimals");
	money_rejected("1.0000000000000000000000000000001", "two decimals");
	money_rejected("0.009999999999999999999", "two decimals");
	money_rejected("32000000000000000001e-17", "two decimals");
	money_rejected("1e-3", "two decimals");
	money_rejected("1E-3", "two decimals");
	money_rejected("0.001e0", "two decimals");
	money_rejected("1.0001e1", "two decimals");	/* 10.001 */
	money_rejected("1e-1000000000000000", "two decimals");
	money_rejected("1000000000.000000001", "two decimals");
	money_rejected("1000000000.0000000000000000000001", "two decimals");
	money_rejected("1000000000.01", "at most");
	money_rejected("100000000001e-2", "at most");
	money_rejected("1e12", "at most");
	money_rejected("0.0000000000000000000000000000000000001e48", "at most");
	/* the member's name written with an escape is the same member */
	assert_int_equal(check("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"J\","
	    "\"tot\\u0061l\":0.30000000000000001}", &(struct payload){0}, &e), -1);
	assert_string_equal(e.field, "total");
	/* another member holding a look-alike number does not confuse it */
	assert_int_equal(check("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":"
	    "\"total 0.001\",\"total\":320}", &(struct payload){0}, &e), 0);
}

/* Exponents are applied to the decimal value, exactly. */
static void
test_money_exact_accepted(void **state)
{
	struct validate_error e;

	(void)state;
	assert_int_equal(cents_of("0.1e1", &e), 100);
	assert_int_equal(cents_of("320.000", &e), 32000);
	assert_int_equal(cents_of("320.0000000000000000000", &e), 32000);
	assert_int_equal(cents_of("1E+2", &e), 10000);
	assert_int_equal(cents_of("12345e-2", &e), 12345);
	assert_int_equal(cents_of("100e-2", &e), 100);
	assert_int_equal(cents_of("0e-50", &e), 0);
	assert_int_equal(cents_of("0.00", &e), 0);
	assert_int_equal(cents_of("0.0000000000000000000000000000001e31", &e), 100);
	assert_int_equal(cents_of("1000000000.000", &e), 100000000000LL);
	assert_int_equal(cents_of("999999999.99", &e), 99999999999LL);
	assert_int_equal(cents_of(" 7.5 ", &e), 750);
	assert_int_equal(cents_of("0.07", &e), 7);
	assert_int_equal(cents_of("1.2300", &e), 123);
}

static void
rejected(const char *body, const char *field, const char *why)
{
	struct payload p;
	struct validate_error e;

	assert_int_equal(check(body, &p, &e), -1);
	assert_string_equal(e.field, field);
	if (strstr(e.message, why) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", body, e.message, why);
}

static void
test_structure(void **state)
{
	(void)state;
	rejected("", "", "invalid JSON");
	rejected("{", "", "invalid JSON");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"na", "", "invalid JSON");
	rejected("[1,2]", "", "JSON object");
	rejected("{} {}", "", "invalid JSON");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"x\",\"total\":1,"
	    "\"extra\":1}", "extra", "unknown field");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"n\":4,\"name\":\"x\",\"total\":1}",
	    "n", "duplicate");
	rejected("{\"n\":3,\"name\":\"x\",\"total\":1}", "id", "required");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"x\"}", "total",
	    "required");
}

static void
test_types(void **state)
{
	(void)state;
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":\"3\",\"name\":\"x\",\"total\":1}",
	    "n", "integer");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3.0,\"name\":\"x\",\"total\":1}",
	    "n", "integer");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":0,\"name\":\"x\",\"total\":1}",
	    "n", "1..");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":7,\"total\":1}",
	    "name", "string");
	rejected("{\"id\":\"not-a-uuid\",\"n\":3,\"name\":\"x\",\"total\":1}",
	    "id", "UUID");
	rejected("{\"id\":\"" GOOD_ID "0\",\"n\":3,\"name\":\"x\",\"total\":1}",
	    "id", "UUID");
	rejected("{\"id\":null,\"n\":3,\"name\":\"x\",\"total\":1}", "id",
	    "string");
}

static void
test_text(void **state)
{
	(void)state;
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"a\\r\\nBcc: x\",\"total\":1}",
	    "name", "control");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"a\\u0000b\",\"total\":1}",
	    "name", "control");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"a\\tb\",\"total\":1}",
	    "name", "control");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"a\\u0085b\",\"total\":1}",
	    "name", "control");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"\",\"total\":1}",
	    "name", "empty");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"12345678901234567\","
	    "\"total\":1}", "name", "longer");
	/* raw bytes that are not UTF-8: jansson refuses, we name the member */
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"a\xff\",\"total\":1}",
	    "name", "invalid JSON");
	rejected("{\"id\":\"" GOOD_ID "\",\"n\":3,\"name\":\"\xc0\xaf\",\"total\":1}",
	    "name", "invalid JSON");
}

static void
test_text_direct(void **state)
{
	struct validate_error e;

	(void)state;
	assert_int_equal(validate_text("Jos\xc3\xa9 N\xc3\xba\xc3\xb1" "ez", 12,
	    "shipTo", 64, 0, &e), 0);
	assert_int_equal(validate_text("\xed\xa0\x80", 3, "f", 64, 0, &e), -1);
	assert_string_equal(e.field, "f");
	assert_int_equal(validate_text("\xe0\x80\xaf", 3, "f", 64, 0, &e), -1);
	assert_int_equal(validate_text("\xf4\x90\x80\x80", 4, "f", 64, 0, &e), -1);
	assert_int_equal(validate_text("\xe2\x82", 2, "f", 64, 0, &e), -1);
	assert_int_equal(validate_text("a\x7f", 2, "f", 64, 0, &e), -1);
	assert_int_equal(validate_text("", 0, "f", 64, 1, &e), 0);
	assert_int_equal(validate_utf8("\xf0\x9f\x98\x80", 4), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_document),
		cmocka_unit_test(test_money_accepted),
		cmocka_unit_test(test_money_rejected),
		cmocka_unit_test(test_money_exact_text),
		cmocka_unit_test(test_money_exact_accepted),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_direct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
