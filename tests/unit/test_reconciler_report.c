/*
 * Unit tests for reconciler/escape and the report writers: untrusted
 * bodies come out escaped in every format, the JSON parses, the CSV has
 * one record per mismatch, the HTML diff marks what differs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "reconciler/escape.h"
#include "reconciler/report.h"

static void
test_escape_html(void **state)
{
	const char *s = "<script>alert('x')</script> & \"q\"";
	char *e = escape_html(s, strlen(s));

	(void)state;
	assert_string_equal(e, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
	    " &amp; &quot;q&quot;");
	free(e);
	e = escape_html("a\0b\x01" "c\n", 6);
	assert_string_equal(e, "abc\n");
	free(e);
}

static void
test_escape_csv(void **state)
{
	char *e;

	(void)state;
	e = escape_csv("plain");
	assert_string_equal(e, "plain");
	free(e);
	e = escape_csv("a,b");
	assert_string_equal(e, "\"a,b\"");
	free(e);
	e = escape_csv("say \"hi\"\r\nbye");
	assert_string_equal(e, "\"say \"\"hi\"\"\r\nbye\"");
	free(e);
	e = escape_csv(NULL);
	assert_string_equal(e, "");
	free(e);
}

static void
test_escape_text(void **state)
{
	char *e = escape_text("Hi \"x\"\r\n\t\\\x1b");

	(void)state;
	assert_string_equal(e, "\"Hi \\\"x\\\"\\r\\n\\t\\\\\\x1b\"");
	free(e);
}

struct arr {
	struct mismatch *v;
	size_t n, i;
};

static int
arr_next(void *ctx, struct mismatch *m)
{
	struct arr *a = ctx;

	if (a->i == a->n)
		return 0;
	*m = a->v[a->i++];
	return 1;
}

static char *
render(enum report_format f, struct mismatch *v, size_t n)
{
	struct run_summary s;
	struct rule_hit hit = { "ts", 4 };
	struct arr a = { v, n, 0 };
	struct mismatch_iter it = { arr_next, &a, NULL };
	char *buf = NULL, err[128];
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	memset(&s, 0, sizeof(s));
	s.id = 7;
	s.status = "done";
	s.shard_k = s.shard_n = 1;
	s.grace = 60;
	s.c.matched = 10;
	s.c.content = 1;
	s.c.missing_in_micro = 1;
	s.c.new_mismatches = 2;
	s.rules = &hit;
	s.nrules = 1;
	s.cutoff = "2026-01-01T00:00:00.000Z";
	s.rules_file = "/etc/noise<1>.rules";
	assert_int_equal(report_write(fp, f, &s, &it, err, sizeof(err)), 0);
	fclose(fp);
	return buf;
}

static void
two(struct mismatch m[2])
{
	memset(m, 0, 2 * sizeof(*m));
	m[0].id = 1;
	m[0].run_id = 7;
	m[0].cid = "00000000-0000-0000-0000-000000000001";
	m[0].kind = "content";
	m[0].fields = "body";
	m[0].mono[0] = m[0].micro[0] = "a@x";
	m[0].mono[1] = m[0].micro[1] = "Payroll 1 shipped";
	m[0].mono[2] = "Hello A,\r\n\r\nPayroll 1 shipped to A of 3.00.\r\n";
	m[0].micro[2] = "Hello A,\r\n\r\nPayroll 1 shipped to A of 3.10."
	    "<script>alert(1)</script>\r\n";
	m[1].id = 2;
	m[1].run_id = 7;
	m[1].cid = "00000000-0000-0000-0000-000000000002";
	m[1].kind = "missing_in_micro";
	m[1].fields = "";
	m[1].mono[0] = "b@x";
	m[1].mono[1] = "S, with comma";
	m[1].mono[2] = "line1\r\nline2\r\n";
}

static void
test_json_parses(void **state)
{
	struct mismatch m[2];
	json_error_t jerr;
	json_t *j, *mm;
	char *out;

	(void)state;
	two(m);
	out = render(REPORT_JSON, m, 2);
	j = json_loads(out, 0, &jerr);
	if (j == NULL)
		fail_msg("JSON does not parse: %s\n%s", jerr.text, out);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    json_object_get(j, "run"), "counts"), "new_mismatches")), 2);
	mm = json_object_get(j, "mismatches");
	assert_int_equal(json_array_size(mm), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
	    json_array_get(mm, 0), "fields"), 0)), "body");
	assert_true(json_is_null(json_object_get(json_array_get(mm, 1),
	    "micro")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    json_array_get(mm, 1), "mono"), "body")), "line1\r\nline2\r\n");
	json_decref(j);
	free(out);
}

static void
test_csv_one_record_per_mismatch(void **state)
{
	struct mismatch m[2];
	char *out, *p;
	int records = 0, quoted = 0;

	(void)state;
	two(m);
	out = render(REPORT_CSV, m, 2);
	/* Count record ends outside quotes. */
	for (p = out; *p; p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (!quoted && p[0] == '\r' && p[1] == '\n')
			records++;
	}
	assert_int_equal(records, 3);	/* header + 2 */
	assert_non_null(strstr(out, "\"S, with comma\""));
	free(out);
}

static void
test_html_escapes_and_marks(void **state)
{
	struct mismatch m[2];
	char *out;

	(void)state;
	two(m);
	out = render(REPORT_HTML, m, 2);
	assert_null(strstr(out, "<script>"));
	assert_non_null(strstr(out, "&lt;script&gt;alert(1)&lt;/script&gt;"));
	assert_non_null(strstr(out, "<mark>"));
	assert_non_null(strstr(out, "Payroll 1 shipped to A of 3."));
	assert_non_null(strstr(out, "missing_in_micro"));
	/* The summary: the cutoff and the rules file (escaped) too. */
	assert_non_null(strstr(out, "<th>cutoff</th><td>2026-01-01T00:00:00.000Z"));
	assert_non_null(strstr(out, "/etc/noise&lt;1&gt;.rules"));
	free(out);
}

/* Bodies that differ only in their line ends (CRLF against LF) must show
 * where they differ, not two identical-looking columns. */
static void
test_html_shows_line_end_differences(void **state)
{
	struct mismatch m;
	char *out;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.id = 3;
	m.run_id = 7;
	m.cid = "00000000-0000-0000-0000-000000000003";
	m.kind = "content";
	m.fields = "body";
	m.mono[0] = m.micro[0] = "a@example.com";
	m.mono[1] = m.micro[1] = "Payroll 3 shipped";
	m.mono[2] = "Hello A,\r\n\r\nPayroll 3 shipped.\r\n";
	m.micro[2] = "Hello A,\n\nPayroll 3 shipped.";
	out = render(REPORT_HTML, &m, 1);
	assert_null(strstr(out, "<mark></mark>"));
	assert_non_null(strstr(out, "Hello A,<mark class=\"eol\">[CRLF]"));
	assert_non_null(strstr(out, "Hello A,<mark class=\"eol\">[LF]"));
	assert_non_null(strstr(out, "shipped.<mark class=\"eol\">[no line end]"));
	free(out);
}

static void
test_text_summary_first(void **state)
{
	struct mismatch m[2];
	char *out, *sum, *first;

	(void)state;
	two(m);
	out = render(REPORT_TEXT, m, 2);
	sum = strstr(out, "new_mismatches 2");
	first = strstr(out, "mismatch 1 ");
	assert_non_null(sum);
	assert_non_null(first);
	assert_true(sum < first);
	assert_non_null(strstr(out, "ts 4"));
	assert_non_null(strstr(out, "rules file \"/etc/noise<1>.rules\""));
	free(out);
}

/* Issue 14: OWASP's formula-leading characters get a leading quote. */
static void
test_csv_formula_injection(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\"" },
		{ "+1+1", "'+1+1" },
		{ "-2+3", "'-2+3" },
		{ "@SUM(A1)", "'@SUM(A1)" },
		{ "\t=1", "'\t=1" },
		{ "\r=1", "\"'\r=1\"" },
		{ "=1,2", "\"'=1,2\"" },
		{ "a=1", "a=1" },
		{ "", "" },
	};
	size_t i;
	char *e;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		e = escape_csv(cases[i].in);
		assert_string_equal(e, cases[i].out);
		free(e);
	}
}

/* Every cell of a CSV report is neutralised, not only the bodies. */
static void
test_csv_report_no_formula_cell(void **state)
{
	struct mismatch m[2];
	char *out;

	(void)state;
	two(m);
	m[0].kind = "=cmd|' /C calc'!A0";
	m[0].note = "@evil";
	m[0].mono[0] = "+x@example.com";
	m[0].micro[1] = "-1";
	out = render(REPORT_CSV, m, 2);
	assert_null(strstr(out, ",=cmd"));
	assert_null(strstr(out, ",@evil"));
	assert_null(strstr(out, ",+x@"));
	assert_null(strstr(out, ",-1"));
	assert_non_null(strstr(out, ",'@evil,"));
	assert_non_null(strstr(out, ",'+x@example.com,"));
	free(out);
}

/* The text report escapes every field: a stored kind, field list, rule
 * name or resolution cannot start a line or carry a terminal escape. */
static void
test_text_escapes_every_field(void **state)
{
	struct mismatch m[2];
	char *out, *p;

	(void)state;
	two(m);
	m[0].kind = "content\nmismatch 99 forged";
	m[0].fields = "body\x1b[2J";
	m[0].resolved_at = "2026-01-01T00:00:00Z\r";
	m[0].resolution = "late\xc2\x9b" "31m";
	m[1].cid = "x\ny";
	out = render(REPORT_TEXT, m, 2);
	assert_null(strstr(out, "\nmismatch 99"));
	assert_null(strchr(out, '\x1b'));
	assert_null(strchr(out, '\r'));
	assert_null(strstr(out, "\xc2\x9b"));
	assert_non_null(strstr(out, "\"content\\nmismatch 99 forged\""));
	assert_non_null(strstr(out, "\\xc2\\x9b31m"));
	/* ordinary words stay as they were */
	assert_non_null(strstr(out, "mismatch 2 \"x\\ny\" missing_in_micro\n"));
	assert_non_null(strstr(out, " resolved \"2026-01-01T00:00:00Z\\r\" (\"late"));
	for (p = out; *p; p++)
		assert_true((unsigned char)*p >= 0x20 || *p == '\n');
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_html),
		cmocka_unit_test(test_escape_csv),
		cmocka_unit_test(test_escape_text),
		cmocka_unit_test(test_json_parses),
		cmocka_unit_test(test_csv_one_record_per_mismatch),
		cmocka_unit_test(test_html_escapes_and_marks),
		cmocka_unit_test(test_html_shows_line_end_differences),
		cmocka_unit_test(test_text_summary_first),
		cmocka_unit_test(test_csv_formula_injection),
		cmocka_unit_test(test_csv_report_no_formula_cell),
		cmocka_unit_test(test_text_escapes_every_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
