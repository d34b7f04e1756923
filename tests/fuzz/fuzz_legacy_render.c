/*
 * fuzz_legacy_render: mailer-real's legacy renderer and destination rule
 * on arbitrary shipTo values, ids and totals. Oracle: an accepted shipTo
 * yields an address with one '@', no control character, no space, no
 * angle bracket or comma (nothing that can smuggle a second recipient or a
 * header), the canonical subject, and a body whose lines all end CRLF.
 */
#include <inttypes.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "mailer-real/legacy_render.h"

static void
check_address(const char *a)
{
	const char *at = strchr(a, '@');

	FUZZ_CHECK(at != NULL && strchr(at + 1, '@') == NULL, "address '%s'", a);
	FUZZ_CHECK(!fuzz_has_ctl(a, ""), "control character in address");
	FUZZ_CHECK(strpbrk(a, " <>,;\\\"()[]") == NULL, "unsafe character in '%s'", a);
	FUZZ_CHECK(strlen(a) <= LEGACY_ADDR_MAX, "address too long");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t id = fuzz_take_i64(&data, &size);
	int64_t cents = fuzz_take_i64(&data, &size);
	char *ship_to = fuzz_cstr(data, size);
	char dest[LEGACY_ADDR_MAX + 1], err[256], subject[64], total[64];
	struct legacy_mail m;

	memset(&m, 0, sizeof(m));
	if (legacy_destination(ship_to, "example.com", dest, sizeof(dest), err, sizeof(err)) == 0)
		check_address(dest);
	else
		FUZZ_CHECK(err[0] != '\0', "rejected without a reason");
	if (cents < 0)
		cents = -(cents + 1);
	cents %= 100000000001LL;
	if (id < 0)
		id = -(id + 1);
	legacy_format_total(cents, total, sizeof(total));
	FUZZ_CHECK(strlen(total) >= 4 && total[strlen(total) - 3] == '.', "total '%s'", total);
	if (legacy_render(id, ship_to, cents, "example.com", &m, err, sizeof(err)) == 0) {
		check_address(m.destination);
		snprintf(subject, sizeof(subject), "Payroll %" PRId64 " shipped", id);
		FUZZ_CHECK(strcmp(m.subject, subject) == 0, "subject '%s'", m.subject);
		FUZZ_CHECK(m.body != NULL && fuzz_crlf_only(m.body), "body line ends");
		FUZZ_CHECK(strncmp(m.body, "Hello ", 6) == 0, "body start");
		FUZZ_CHECK(strstr(m.body, total) != NULL, "body lacks total %s", total);
		legacy_mail_clear(&m);
	}
	free(ship_to);
	return 0;
}
