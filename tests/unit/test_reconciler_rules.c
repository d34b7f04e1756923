/*
 * Unit tests for reconciler/rules: the file format (and its errors, which
 * name the line), each action, and how differences absorbed are counted.
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

#include "reconciler/rules.h"

static const char good[] =
    "# noise the legacy renderer adds\n"
    "[timestamp]\n"
    "field = body\n"
    "regex = [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\n"
    "replace = <ts>\n"
    "\n"
    "[dest-case]\n"
    "field = destination\n"
    "lowercase = yes\n"
    "\n"
    "[blanks]\n"
    "field = subject, body\n"
    "trim = yes\n";

static struct mail
mail(const char *d, const char *s, const char *b)
{
	struct mail m;

	m.v[0] = d;
	m.v[1] = s;
	m.v[2] = b;
	m.len[0] = strlen(d);
	m.len[1] = strlen(s);
	m.len[2] = strlen(b);
	return m;
}

static void
test_parse_good(void **state)
{
	char err[256] = "";
	struct rules *r = rules_parse(good, "t.rules", err, sizeof(err));

	(void)state;
	assert_non_null(r);
	assert_int_equal(rules_count(r), 3);
	assert_string_equal(rules_name(r, 0), "timestamp");
	assert_string_equal(rules_name(r, 2), "blanks");
	rules_free(r);
	r = rules_load(NULL, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(rules_count(r), 0);
	rules_free(r);
}

static void
expect_error(const char *text, const char *needle)
{
	char err[256] = "";
	struct rules *r = rules_parse(text, "t.rules", err, sizeof(err));

	assert_null(r);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void
test_parse_errors(void **state)
{
	(void)state;
	expect_error("field = body\n", "t.rules:1");
	expect_error("[a]\nfield = body\n", "no action");
	expect_error("[a]\nregex = x\n", "no 'field");
	expect_error("[a]\nfield = bodyy\nregex = x\n", "t.rules:2: field");
	expect_error("[a]\nfield = body\nregex = (\n", "t.rules:3: regex");
	expect_error("[a]\nfield = body\ncolour = red\n", "unknown key 'colour'");
	expect_error("[a]\nfield = body\nlowercase = yes\ntrim = yes\n",
	    "second action");
	expect_error("[a]\nfield = body\ntrim = yes\n[a]\nfield = body\n"
	    "trim = yes\n", "defined twice");
	expect_error("[a b]\n", "rule name");
	expect_error("[a]\nfield = body\nlowercase = no\n", "only 'yes'");
	expect_error("[a]\nfield = body\nlowercase = yes\nreplace = x\n",
	    "without 'regex'");
}

static void
test_apply(void **state)
{
	char err[256];
	struct rules *r = rules_parse(good, "t", err, sizeof(err));
	const char *b = "Sent 2026-01-02T03:04:05Z and 2026-01-02T03:04:06Z.";
	char *out;

	(void)state;
	out = rules_apply(r, 0, FIELD_BODY, b, strlen(b));
	assert_string_equal(out, "Sent <ts> and <ts>.");
	free(out);
	assert_null(rules_apply(r, 0, FIELD_SUBJECT, "x", 1));
	out = rules_apply(r, 1, FIELD_DESTINATION, "Ann@Example.COM", 15);
	assert_string_equal(out, "ann@example.com");
	free(out);
	out = rules_apply(r, 2, FIELD_BODY, "  Hello \r\n\r\nBye\t\r\n\r\n", 20);
	assert_string_equal(out, "Hello\r\n\r\nBye");
	free(out);
	rules_free(r);
}

static void
test_regex_groups_and_empty_matches(void **state)
{
	char err[256];
	struct rules *r = rules_parse("[g]\nfield = all\nregex = id=([0-9]+)\n"
	    "replace = <\\1>\n[e]\nfield = body\nregex = x*\nreplace = -\n",
	    "t", err, sizeof(err));
	char *out;

	(void)state;
	assert_non_null(r);
	out = rules_apply(r, 0, FIELD_SUBJECT, "a id=12 b id=7", 14);
	assert_string_equal(out, "a <12> b <7>");
	free(out);
	/* An empty match never loops. */
	out = rules_apply(r, 1, FIELD_BODY, "ab", 2);
	assert_non_null(out);
	free(out);
	rules_free(r);
}

static void
test_compare_counts_absorptions(void **state)
{
	char err[256];
	struct rules *r = rules_parse(good, "t", err, sizeof(err));
	struct mail a, b;
	uint64_t hits[3] = { 0, 0, 0 };
	int absorbed;
	unsigned mask;
	char buf[64];

	(void)state;
	a = mail("a@x", "S", "at 2026-01-02T03:04:05Z");
	b = mail("A@X", "S ", "at 2026-02-02T03:04:05Z");
	mask = rules_compare(r, &a, &b, hits, &absorbed);
	assert_int_equal(mask, 0);
	assert_int_equal(absorbed, 1);
	assert_int_equal(hits[0], 1);	/* body: timestamp */
	assert_int_equal(hits[1], 1);	/* destination: case */
	assert_int_equal(hits[2], 1);	/* subject: blanks */

	/* Equal as stored: no rule runs, nothing absorbed. */
	mask = rules_compare(r, &a, &a, hits, &absorbed);
	assert_int_equal(mask, 0);
	assert_int_equal(absorbed, 0);
	assert_int_equal(hits[0] + hits[1] + hits[2], 3);

	b = mail("b@x", "S", "at 2026-01-02T03:04:05Z!");
	mask = rules_compare(r, &a, &b, hits, &absorbed);
	assert_string_equal(rules_fields_text(mask, buf, sizeof(buf)),
	    "destination,body");
	/* Without rules everything counts. */
	b = mail("A@x", "S", "at 2026-01-02T03:04:05Z");
	mask = rules_compare(NULL, &a, &b, NULL, NULL);
	assert_int_equal(mask, FIELD_BIT(FIELD_DESTINATION));
	rules_free(r);
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/test_rules_XXXXXX", err[256] = "";
	struct rules *r;
	FILE *fp;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs(good, fp);
	fclose(fp);
	r = rules_load(path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(rules_count(r), 3);
	rules_free(r);
	unlink(path);
	r = rules_load(path, err, sizeof(err));
	assert_null(r);
	assert_non_null(strstr(err, path));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_regex_groups_and_empty_matches),
		cmocka_unit_test(test_compare_counts_absorptions),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
