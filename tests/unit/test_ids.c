/*
 * Unit tests for common/ids: the one UUID formatter (ids_uuid_text) and
 * the UUIDs made with it, checked against libuuid's own text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uuid/uuid.h>

#include "common/ids.h"

static void
test_uuid_text(void **state)
{
	static const unsigned char u[16] = { 0x00, 0x11, 0x22, 0x33, 0x44,
		0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
	char out[IDS_UUID_LEN + 1], want[IDS_UUID_LEN + 1];
	uuid_t r;
	int i;

	(void)state;
	ids_uuid_text(u, out);
	assert_string_equal(out, "00112233-4455-6677-8899-aabbccddeeff");
	for (i = 0; i < 1000; i++) {
		uuid_generate_random(r);
		uuid_unparse_lower(r, want);
		ids_uuid_text(r, out);
		assert_string_equal(out, want);
	}
}

static void
test_made_uuids_are_valid(void **state)
{
	char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1];

	(void)state;
	ids_uuid(a);
	ids_request_uuid(b);
	assert_true(ids_uuid_valid(a));
	assert_true(ids_uuid_valid(b));
	assert_int_equal(a[14], '4');
	assert_int_equal(b[14], '4');
	assert_string_not_equal(a, b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_text),
		cmocka_unit_test(test_made_uuids_are_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
