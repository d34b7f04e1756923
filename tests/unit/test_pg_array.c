/*
 * pg_array: the bytes PostgreSQL's array_recv expects, for each element
 * type the programs send (text, bigint, uuid), NULLs and the empty array.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/pg_array.h"

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
	static const char empty[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25 };
	struct pg_array a;
	const char *p;
	int len;

	(void)state;
	pg_array_init(&a, PG_OID_TEXT);
	/* no dimensions, as PostgreSQL writes an empty array */
	p = pg_array_value(&a, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(p, empty, 12);
	/* reset: empty again, after elements */
	pg_array_add_text(&a, "x");
	pg_array_reset(&a);
	p = pg_array_value(&a, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(p, empty, 12);
	pg_array_free(&a);
}

static void
test_binary_null(void **state)
{
	static const unsigned char want[] = { 0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1,
		0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 'z' };
	struct pg_array a;
	const char *p;
	int len;

	(void)state;
	pg_array_init(&a, PG_OID_TEXT);
	pg_array_add(&a, NULL, -1);
	pg_array_add_text(&a, "z");
	p = pg_array_value(&a, &len);
	assert_int_equal(len, (int)sizeof(want));
	assert_memory_equal(p, want, sizeof(want));
	/* a NULL string is SQL NULL too */
	pg_array_reset(&a);
	pg_array_add_text(&a, NULL);
	pg_array_add_text(&a, "z");
	p = pg_array_value(&a, &len);
	assert_int_equal(len, (int)sizeof(want));
	assert_memory_equal(p, want, sizeof(want));
	pg_array_free(&a);
	pg_array_free(&a);		/* freeing twice is harmless */
}

static void
test_binary_text_is_copied_as_is(void **state)
{
	static const char body[] = "say \"hi\" \\ {a,b} Jos\xc3\xa9\r\n";
	struct pg_array a;
	char h[20];
	const char *p;
	int len;
	size_t bl = sizeof(body) - 1;

	(void)state;
	pg_array_init(&a, PG_OID_TEXT);
	pg_array_add_text(&a, "");
	pg_array_add_text(&a, body);
	p = pg_array_value(&a, &len);
	assert_int_equal(len, 20 + 4 + 4 + (int)bl);
	assert_memory_equal(p, header(h, 25, 2), 20);
	assert_memory_equal(p + 20, "\0\0\0\0", 4);
	assert_int_equal((unsigned char)p[27], bl);
	assert_memory_equal(p + 24, "\0\0\0", 3);
	assert_memory_equal(p + 28, body, bl);
	pg_array_free(&a);
}

static void
test_binary_int8_big_endian(void **state)
{
	static const unsigned char want[] = {
		0, 0, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0, 0, 0, 8, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05 };
	struct pg_array a;
	char h[20];
	const char *p;
	int len, i;

	(void)state;
	pg_array_init(&a, PG_OID_INT8);
	pg_array_add_int8(&a, INT64_MIN);
	pg_array_add_int8(&a, -2);
	pg_array_add_int8(&a, 0x0102030405LL);
	for (i = 0; i < 2000; i++)		/* growth */
		pg_array_add_int8(&a, i);
	p = pg_array_value(&a, &len);
	assert_int_equal(len, 20 + 2003 * 12);
	assert_memory_equal(p, header(h, 20, 2003), 20);
	assert_memory_equal(p + 20, want, sizeof(want));
	assert_memory_equal(p + len - 4, "\0\0\x07\xcf", 4);	/* 1999 */
	pg_array_free(&a);
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
	struct pg_array a;
	char h[20];
	const char *p;
	int len;
	size_t i;

	(void)state;
	pg_array_init(&a, PG_OID_UUID);
	assert_int_equal(pg_array_add_uuid(&a,
	    "01234567-89ab-cdef-fedc-ba9876543210"), 0);
	assert_int_equal(pg_array_add_uuid(&a,
	    "01234567-89AB-CDEF-FEDC-BA9876543210"), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pg_array_add_uuid(&a, bad[i]), -1);
	p = pg_array_value(&a, &len);
	assert_int_equal(len, 20 + 2 * 20);
	assert_memory_equal(p, header(h, 2950, 2), 20);
	assert_memory_equal(p + 20, want, sizeof(want));
	assert_memory_equal(p + 40, want, sizeof(want));
	pg_array_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_binary_empty),
		cmocka_unit_test(test_binary_text_is_copied_as_is),
		cmocka_unit_test(test_binary_int8_big_endian),
		cmocka_unit_test(test_binary_uuid),
		cmocka_unit_test(test_binary_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
