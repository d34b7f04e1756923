/*
 * Unit tests for common/metrics and common/ids: the Prometheus text a
 * scraper reads (one HELP/TYPE per name, cumulative buckets, sum and
 * count), and the id helpers (UUID form, request ids, request-id sanity,
 * FNV-1a).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ids.h"
#include "common/metrics.h"

static void
test_counter_and_labels(void **state)
{
	struct metric *a, *b;
	char *text;

	(void)state;
	a = metrics_counter("t_requests_total", "Requests", "status=\"201\"");
	b = metrics_counter("t_requests_total", "Requests", "status=\"400\"");
	assert_ptr_equal(a, metrics_counter("t_requests_total", "x", "status=\"201\""));
	metrics_inc(a, 2);
	metrics_inc(b, 1);
	assert_true(metrics_value(a) == 2.0);
	text = metrics_render();
	assert_non_null(strstr(text, "# TYPE t_requests_total counter\n"
	    "t_requests_total{status=\"201\"} 2\n"
	    "t_requests_total{status=\"400\"} 1\n"));
	/* one HELP line for the two series */
	assert_null(strstr(strstr(text, "# HELP t_requests_total") + 1,
	    "# HELP t_requests_total"));
	free(text);
}

static void
test_histogram(void **state)
{
	static const double bounds[] = { 1, 2, 4 };
	struct metric *h;
	char *text;

	(void)state;
	h = metrics_histogram("t_batch", "Batch sizes", "", bounds, 3);
	metrics_observe(h, 1);
	metrics_observe(h, 3);
	metrics_observe(h, 9);
	text = metrics_render();
	assert_non_null(strstr(text,
	    "t_batch_bucket{le=\"1\"} 1\n"
	    "t_batch_bucket{le=\"2\"} 1\n"
	    "t_batch_bucket{le=\"4\"} 2\n"
	    "t_batch_bucket{le=\"+Inf\"} 3\n"
	    "t_batch_sum 13\n"
	    "t_batch_count 3\n"));
	free(text);
}

static void
test_gauge(void **state)
{
	struct metric *g;

	(void)state;
	g = metrics_gauge("t_queue", "Queue", "q=\"a\"");
	metrics_set(g, 5);
	metrics_add(g, -1.5);
	assert_true(metrics_value(g) == 3.5);
}

#define RID_N 2000

static void *
request_ids(void *p)
{
	char (*out)[IDS_UUID_LEN + 1] = p;
	int i;

	for (i = 0; i < RID_N; i++)
		ids_request_uuid(out[i]);
	return NULL;
}

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Request ids: UUID v4 shape, and no repeats within or across threads. */
static void
test_request_uuid(void **state)
{
	static char ids[2 * RID_N][IDS_UUID_LEN + 1];
	pthread_t t;
	int i;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, request_ids, ids[RID_N]), 0);
	request_ids(ids[0]);
	assert_int_equal(pthread_join(t, NULL), 0);
	for (i = 0; i < 2 * RID_N; i++) {
		assert_int_equal(strlen(ids[i]), 36);
		assert_true(ids_uuid_valid(ids[i]));
		assert_int_equal(ids[i][14], '4');
		assert_non_null(strchr("89ab", ids[i][19]));
		assert_null(strpbrk(ids[i], "ABCDEF"));
	}
	qsort(ids, 2 * RID_N, sizeof(ids[0]), cmp_id);
	for (i = 1; i < 2 * RID_N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
}

static void
test_ids(void **state)
{
	char u[IDS_UUID_LEN + 1];
	char *long_id;

	(void)state;
	ids_uuid(u);
	assert_int_equal(strlen(u), 36);
	assert_true(ids_uuid_valid(u));
	assert_int_equal(u[14], '4');
	assert_true(ids_uuid_valid("6F1C2B3A-0D4E-4F5A-8B6C-7D8E9F0A1B2C"));
	assert_false(ids_uuid_valid("6f1c2b3a0d4e4f5a8b6c7d8e9f0a1b2c"));
	assert_false(ids_uuid_valid("6f1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2"));
	assert_false(ids_uuid_valid("6f1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2cc"));
	assert_false(ids_uuid_valid("gf1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2c"));
	assert_true(ids_request_id_sane("req-1.a_b:c"));
	assert_false(ids_request_id_sane(""));
	assert_false(ids_request_id_sane("a b"));
	assert_false(ids_request_id_sane("a\r\nX-Evil: 1"));
	long_id = malloc(130);
	memset(long_id, 'a', 129);
	long_id[129] = '\0';
	assert_false(ids_request_id_sane(long_id));
	long_id[128] = '\0';
	assert_true(ids_request_id_sane(long_id));
	free(long_id);
	/* FNV-1a 64 reference values */
	assert_true(ids_hash("") == 0xcbf29ce484222325ULL);
	assert_true(ids_hash("a") == 0xaf63dc4c8601ec8cULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_labels),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_gauge),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_request_uuid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
