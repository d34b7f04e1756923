/*
 * Unit tests for common/sql_array: the array literals that carry a batch
 * to PostgreSQL. Text is always quoted with `"` and `\` escaped, so commas,
 * braces, quotes, backslashes, CR/LF and UTF-8 survive; NULL is the bare
 * word; an empty array is {}. (That the server reads them back unchanged
 * is checked end to end by the integration tests.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/sql_array.h"

static void
test_empty(void **state)
{
	struct sql_array a = { 0 };

	(void)state;
	assert_string_equal(sql_array_done(&a), "{}");
	sql_array_free(&a);
	sql_array_free(&a);		/* freeing twice is harmless */
}

static void
test_text_is_quoted_and_escaped(void **state)
{
	struct sql_array a = { 0 };

	(void)state;
	sql_array_text(&a, "plain");
	sql_array_text(&a, NULL);
	sql_array_text(&a, "a,b {c}");
	sql_array_text(&a, "say \"hi\" \\ bye");
	sql_array_text(&a, "");
	sql_array_text(&a, "Jos\xc3\xa9\r\nN\xc3\xba\xc3\xb1" "ez");
	assert_string_equal(sql_array_done(&a),
	    "{\"plain\",NULL,\"a,b {c}\",\"say \\\"hi\\\" \\\\ bye\",\"\","
	    "\"Jos\xc3\xa9\r\nN\xc3\xba\xc3\xb1" "ez\"}");
	sql_array_free(&a);
}

static void
test_integers_and_growth(void **state)
{
	struct sql_array a = { 0 };
	const char *s;
	int i;

	(void)state;
	sql_array_int(&a, INT64_MIN);
	sql_array_int(&a, 0);
	for (i = 0; i < 1000; i++)
		sql_array_int(&a, INT64_MAX);
	s = sql_array_done(&a);
	assert_int_equal(strncmp(s, "{-9223372036854775808,0,9223372036854775807,", 44), 0);
	assert_int_equal(strlen(s), 2 + 20 + 1 + 1 + 1 + 1000 * 19 + 999);
	assert_int_equal(s[strlen(s) - 1], '}');
	sql_array_free(&a);
}

/* PostgreSQL's binary array: int32 ndim, int32 has-nulls, uint32 element
 * type, int32 size, int32 lower bound, then each element as int32 length
 * and bytes; all big-endian (array_recv). */
static const char *
header(char *h, uint32_t oid, uint32_t n)
{
	static const unsigned char fixed[] = { 0, 0, 0, 1, 0, 0, 0, 0 };
	uint32_t v[3] = { oid, n, 1 };
	int i, k;

	memcpy(h, fixed, 8);
	for (i = 0; i < 3; i++)
		for (k = 0; k < 4; k++)
			h[8 + 4 * i + k] = (char)(v[i] >> (24 - 8 * k));
	return h;
}

static void
test_binary_empty(void **state)
{
	struct sql_binarray a;
	char h[20];
	const char *p;
	int len;

	(void)state;
	sql_binarray_init(&a, SQL_BIN_TEXT);
	p = sql_binarray_done(&a, &len);
	assert_int_equal(len, 20);
	assert_memory_equal(p, header(h, 25, 0), 20);
	sql_binarray_free(&a);
}

static void
test_binary_text_is_copied_as_is(void **state)
{
	static const char body[] = "say \"hi\" \\ {a,b} Jos\xc3\xa9\r\n";
	struct sql_binarray a;
	char h[20];
	const char *p;
	int len;
	size_t bl = sizeof(body) - 1;

	(void)state;
	sql_binarray_init(&a, SQL_BIN_TEXT);
	sql_binarray_text(&a, "");
	sql_binarray_text(&a, body);
	p = sql_binarray_done(&a, &len);
	assert_int_equal(len, 20 + 4 + 4 + (int)bl);
	assert_memory_equal(p, header(h, 25, 2), 20);
	assert_memory_equal(p + 20, "\0\0\0\0", 4);
	assert_int_equal((unsigned char)p[27], bl);
	assert_memory_equal(p + 24, "\0\0\0", 3);
	assert_memory_equal(p + 28, body, bl);
	sql_binarray_free(&a);
}

static void
test_binary_int8_big_endian(void **state)
{
	static const unsigned char want[] = {
		0, 0, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0, 0, 0, 8, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05 };
	struct sql_binarray a;
	char h[20];
	const char *p;
	int len, i;

	(void)state;
	sql_binarray_init(&a, SQL_BIN_INT8);
	sql_binarray_int8(&a, INT64_MIN);
	sql_binarray_int8(&a, -2);
	sql_binarray_int8(&a, 0x0102030405LL);
	for (i = 0; i < 2000; i++)		/* growth */
		sql_binarray_int8(&a, i);
	p = sql_binarray_done(&a, &len);
	assert_int_equal(len, 20 + 2003 * 12);
	assert_memory_equal(p, header(h, 20, 2003), 20);
	assert_memory_equal(p + 20, want, sizeof(want));
	assert_memory_equal(p + len - 4, "\0\0\x07\xcf", 4);	/* 1999 */
	sql_binarray_free(&a);
}

static void
test_binary_uuid(void **state)
{
	static const unsigned char want[] = { 0, 0, 0, 16,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10 };
	static const char *const bad[] = {
		"", "0123456789abcdeffedcba9876543210",
		"01234567-89ab-cdef-fedc-ba987654321",		/* 35 */
		"01234567-89ab-cdef-fedc-ba98765432100",	/* 37 */
		"01234567-89ab-cdef-fedc_ba9876543210",
		"0123456-789ab-cdef-fedc-ba9876543210",
		"01234567-89ab-cdef-fedc-ba98765432g0",
		"01234567-89ab-cdef-fedc-ba98765432 0",
		"+1234567-89ab-cdef-fedc-ba9876543210",
	};
	struct sql_binarray a;
	char h[20];
	const char *p;
	int len;
	size_t i;

	(void)state;
	sql_binarray_init(&a, SQL_BIN_UUID);
	assert_int_equal(sql_binarray_uuid(&a,
	    "01234567-89ab-cdef-fedc-ba9876543210"), 0);
	assert_int_equal(sql_binarray_uuid(&a,
	    "01234567-89AB-CDEF-FEDC-BA9876543210"), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sql_binarray_uuid(&a, bad[i]), -1);
	p = sql_binarray_done(&a, &len);
	assert_int_equal(len, 20 + 2 * 20);
	assert_memory_equal(p, header(h, 2950, 2), 20);
	assert_memory_equal(p + 20, want, sizeof(want));
	assert_memory_equal(p + 40, want, sizeof(want));
	sql_binarray_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_text_is_quoted_and_escaped),
		cmocka_unit_test(test_integers_and_growth),
		cmocka_unit_test(test_binary_empty),
		cmocka_unit_test(test_binary_text_is_copied_as_is),
		cmocka_unit_test(test_binary_int8_big_endian),
		cmocka_unit_test(test_binary_uuid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
