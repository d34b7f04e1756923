/*
 * Unit tests for common/strbuf: the growing string the renderers, the
 * escapers and the SMTP message builder write into.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/strbuf.h"

static void
test_empty_take_is_an_empty_string(void **state)
{
	struct strbuf b = STRBUF_INIT;
	char *s;

	(void)state;
	s = strbuf_take(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	strbuf_free(&b);
}

static void
test_adds_grow_and_keep_bytes(void **state)
{
	struct strbuf b = STRBUF_INIT;
	size_t i;
	char *s;

	(void)state;
	for (i = 0; i < 10000; i++)
		strbuf_add(&b, "ab", i % 3 == 0 ? 2 : 1);
	assert_int_equal(b.len, 3334 * 2 + 6666);
	assert_int_equal(strlen(b.p), b.len);
	assert_memory_equal(b.p, "abaaab", 6);
	strbuf_add(&b, "x\0y", 3);	/* bytes, not a C string */
	assert_int_equal(b.p[b.len - 2], '\0');
	assert_int_equal(b.p[b.len], '\0');
	s = strbuf_take(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	free(s);
}

/* The same bytes json_dumps gives, for every byte that can need an escape. */
static void
test_json_string_matches_jansson(void **state)
{
	static const char *const cases[] = {
		"", "plain", "quote \" and backslash \\ and /slash",
		"Hello Ana,\r\n\r\nPayroll 7 shipped.\r\n",
		"tab\tbell\abs\bff\fvt\vesc\x1b del\x7f",
		"Jos\xc3\xa9 N\xc3\xba\xc3\xb1" "ez \xe2\x82\xac \xf0\x9f\x93\xa6",
		"\"\"\\\\", "end\x1f",
	};
	char all[32];
	size_t i;
	int c;

	(void)state;
	for (i = 0; i <= sizeof(cases) / sizeof(cases[0]); i++) {
		const char *s = i < sizeof(cases) / sizeof(cases[0]) ? cases[i] : all;
		struct strbuf b = STRBUF_INIT;
		json_t *j;
		char *want;

		if (s == all) {	/* every control character */
			for (c = 1; c < 32; c++)
				all[c - 1] = (char)c;
			all[31] = '\0';
		}
		j = json_string(s);
		assert_non_null(j);
		want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
		strbuf_json_string(&b, s);
		assert_string_equal(b.p, want);
		assert_int_equal(b.len, strlen(want));
		free(want);
		json_decref(j);
		strbuf_free(&b);
	}
}

static void
test_str_and_printf(void **state)
{
	struct strbuf b = STRBUF_INIT;
	char big[5000];

	(void)state;
	strbuf_str(&b, "Payroll ");
	strbuf_printf(&b, "%d shipped to %s of %.2f.", 3, "Juablaz", 320.0);
	assert_string_equal(b.p, "Payroll 3 shipped to Juablaz of 320.00.");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	strbuf_printf(&b, "[%s]", big);
	assert_int_equal(b.len, 39 + 2 + sizeof(big) - 1);
	assert_int_equal(b.p[b.len - 1], ']');
	strbuf_free(&b);
	assert_null(b.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_take_is_an_empty_string),
		cmocka_unit_test(test_adds_grow_and_keep_bytes),
		cmocka_unit_test(test_str_and_printf),
		cmocka_unit_test(test_json_string_matches_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
