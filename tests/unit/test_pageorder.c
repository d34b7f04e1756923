/*
 * Unit tests for reconciler/pageorder: every id added comes back exactly
 * once, region after region of 8,192 pages, no page twice in a batch,
 * batches at most max; through the file (many chunks, parts bigger than
 * one sort) and from memory alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/pageorder.h"

#define REGION 8192u

/* Row k's id: k in its first four bytes. */
static void
id_of(uint32_t k, unsigned char cid[16])
{
	memset(cid, 0xab, 16);
	memcpy(cid, &k, 4);
}

struct place {
	uint32_t blk;
	uint16_t off;
};

/*
 * Adds n rows (row k at places[k]) in a shuffled order, then takes every
 * batch and checks the contract.
 */
static void
check(const struct place *places, uint32_t n, size_t max)
{
	struct pageorder *po = pageorder_new();
	unsigned char (*ids)[16] = malloc(max * 16);
	unsigned char *seen = calloc(n, 1);
	uint32_t *order = malloc(n * sizeof(*order)), i, k, got = 0;
	uint32_t last_region = 0, *pages = malloc(max * sizeof(*pages));
	unsigned char cid[16];
	char err[256];
	size_t nb, j, l;
	int rc;

	for (i = 0; i < n; i++)
		order[i] = i;
	srand(7);
	for (i = n; i > 1; i--) {
		uint32_t x = (uint32_t)rand() % i, t = order[i - 1];
		order[i - 1] = order[x];
		order[x] = t;
	}
	for (i = 0; i < n; i++) {
		k = order[i];
		id_of(k, cid);
		assert_int_equal(pageorder_add(po, cid, places[k].blk,
		    places[k].off, err, sizeof(err)), 0);
	}
	assert_int_equal(pageorder_count(po), n);
	while ((rc = pageorder_next(po, ids, max, &nb, err, sizeof(err))) == 1) {
		assert_true(nb > 0 && nb <= max);
		for (j = 0; j < nb; j++) {
			memcpy(&k, ids[j], 4);
			assert_true(k < n);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
			got++;
			/* Regions in order: never back to an earlier one. */
			assert_true(places[k].blk / REGION >= last_region);
			last_region = places[k].blk / REGION;
			pages[j] = places[k].blk;
			for (l = 0; l < j; l++)
				assert_true(pages[l] != pages[j]);
		}
	}
	assert_int_equal(rc, 0);
	assert_int_equal(got, n);
	pageorder_free(po);
	free(ids);
	free(seen);
	free(order);
	free(pages);
}

/* 40 rows a page on 12,000 pages (two regions, many chunks and parts). */
static void
test_packed_pages_through_the_file(void **state)
{
	uint32_t n = 12000 * 40, k;
	struct place *p = malloc(n * sizeof(*p));

	(void)state;
	for (k = 0; k < n; k++) {
		p[k].blk = k / 40;
		p[k].off = (uint16_t)(k % 40 + 1);
	}
	check(p, n, 25000);
	check(p, n, 1000);
	free(p);
}

/* A few rows far apart: regions with one chunk in memory only, gaps. */
static void
test_sparse_rows_in_memory(void **state)
{
	struct place p[] = { { 5, 3 }, { 5, 1 }, { 900000, 2 }, { 8191, 1 },
	    { 8192, 1 }, { 0, 7 }, { 5, 2 }, { 900000, 1 } };

	(void)state;
	check(p, sizeof(p) / sizeof(p[0]), 25000);
	check(p, sizeof(p) / sizeof(p[0]), 1);
}

/* The first batch of a region is the first row of each page: a page
 * holding many matched rows gets one per batch. */
static void
test_one_page_gives_one_row_a_batch(void **state)
{
	struct pageorder *po = pageorder_new();
	unsigned char cid[16], ids[100][16];
	char err[256];
	size_t nb;
	uint32_t k;
	int batches = 0;

	(void)state;
	for (k = 0; k < 10; k++) {
		id_of(k, cid);
		assert_int_equal(pageorder_add(po, cid, 42, (uint16_t)(k + 1),
		    err, sizeof(err)), 0);
	}
	while (pageorder_next(po, ids, 100, &nb, err, sizeof(err)) == 1) {
		assert_int_equal(nb, 1);
		batches++;
	}
	assert_int_equal(batches, 10);
	pageorder_free(po);
}

static void
test_empty(void **state)
{
	struct pageorder *po = pageorder_new();
	unsigned char ids[4][16];
	char err[256];
	size_t nb = 99;

	(void)state;
	assert_int_equal(pageorder_next(po, ids, 4, &nb, err, sizeof(err)), 0);
	assert_int_equal(nb, 0);
	pageorder_free(po);
	pageorder_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packed_pages_through_the_file),
		cmocka_unit_test(test_sparse_rows_in_memory),
		cmocka_unit_test(test_one_page_gives_one_row_a_batch),
		cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
