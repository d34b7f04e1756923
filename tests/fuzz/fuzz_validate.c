/*
 * fuzz_validate: common/validate on arbitrary request bodies, through the
 * same field tables the two services use (POST /payroll and
 * POST /notifications). Oracle: whatever validate accepts as text holds no
 * control character, UTF-8 is well formed, money is within 0..1e9.
 */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/validate.h"
#include "fuzz_common.h"

struct payroll_in {
	const char *ship_to;
	int64_t total;
};

struct note_in {
	char correlation_id[37];
	int64_t payroll_id;
	const char *ship_to;
	int64_t total;
};

static const struct validate_field payroll_fields[] = {
	{ .name = "shipTo", .type = VALIDATE_TEXT, .required = 1, .max_len = 256,
	  .offset = offsetof(struct payroll_in, ship_to) },
	{ .name = "total", .type = VALIDATE_MONEY, .required = 1,
	  .offset = offsetof(struct payroll_in, total) },
	VALIDATE_FIELDS_END
};

static const struct validate_field note_fields[] = {
	{ .name = "correlationId", .type = VALIDATE_UUID, .required = 1,
	  .offset = offsetof(struct note_in, correlation_id) },
	{ .name = "payrollId", .type = VALIDATE_INT, .required = 1,
	  .min = 1, .max = INT64_MAX, .offset = offsetof(struct note_in, payroll_id) },
	{ .name = "shipTo", .type = VALIDATE_TEXT, .required = 1, .max_len = 256,
	  .offset = offsetof(struct note_in, ship_to) },
	{ .name = "total", .type = VALIDATE_MONEY, .required = 1,
	  .offset = offsetof(struct note_in, total) },
	VALIDATE_FIELDS_END
};

static void
check_text(const char *s)
{
	FUZZ_CHECK(validate_utf8(s, strlen(s)), "accepted text is not UTF-8");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		FUZZ_CHECK(*p >= 0x20 && *p != 0x7f, "accepted text has control byte 0x%02x", *p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct validate_error e;
	struct payroll_in p = { 0 };
	struct note_in n = { 0 };
	json_t *obj;

	if (validate_text((const char *)data, size, "x", 4096, 1, &e) == 0) {
		for (size_t i = 0; i < size; i++)
			FUZZ_CHECK(data[i] >= 0x20 && data[i] != 0x7f,
			    "validate_text accepted byte 0x%02x", data[i]);
		FUZZ_CHECK(validate_utf8((const char *)data, size), "text ok but not UTF-8");
	}
	obj = validate_parse_object((const char *)data, size, &e);
	if (obj == NULL) {
		FUZZ_CHECK(e.message[0] != '\0', "rejected without a message");
		return 0;
	}
	FUZZ_CHECK(json_is_object(obj), "parse_object returned a non-object");
	if (validate_object(obj, (const char *)data, size, payroll_fields, &p, &e) == 0) {
		check_text(p.ship_to);
		FUZZ_CHECK(p.total >= 0 && p.total <= VALIDATE_MONEY_MAX_CENTS, "total %lld", (long long)p.total);
	} else {
		FUZZ_CHECK(e.message[0] != '\0', "payroll rejected without a message");
	}
	if (validate_object(obj, (const char *)data, size, note_fields, &n, &e) == 0) {
		check_text(n.ship_to);
		FUZZ_CHECK(strlen(n.correlation_id) == 36, "uuid '%s'", n.correlation_id);
		FUZZ_CHECK(n.payroll_id >= 1, "payrollId %lld", (long long)n.payroll_id);
		FUZZ_CHECK(n.total >= 0 && n.total <= VALIDATE_MONEY_MAX_CENTS, "total");
	}
	json_decref(obj);
	return 0;
}
