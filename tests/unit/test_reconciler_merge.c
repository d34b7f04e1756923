/*
 * Unit tests for reconciler/merge (the outcome table, the three-way walk
 * over sorted streams) and reconciler/shard (the hash the SQL filter must
 * agree with).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/merge.h"
#include "reconciler/rules.h"
#include "reconciler/shard.h"

static struct merge_row
row(int id, const char *d, const char *s, const char *b)
{
	struct merge_row r;

	memset(&r, 0, sizeof(r));
	r.cid[15] = (unsigned char)id;
	r.cid[14] = (unsigned char)(id >> 8);
	r.mail.v[FIELD_DESTINATION] = d;
	r.mail.v[FIELD_SUBJECT] = s;
	r.mail.v[FIELD_BODY] = b;
	r.mail.len[FIELD_DESTINATION] = strlen(d);
	r.mail.len[FIELD_SUBJECT] = strlen(s);
	r.mail.len[FIELD_BODY] = strlen(b);
	return r;
}

static void
test_match_and_content(void **state)
{
	struct merge_row a = row(1, "a@x", "S", "B"), b = row(1, "a@x", "S", "B");
	struct verdict v;

	(void)state;
	merge_classify(&a, &b, NULL, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_MATCH);
	assert_int_equal(v.ignored, 0);
	assert_int_equal(v.resolve_id, 0);

	b = row(1, "A@x", "S", "B2");
	merge_classify(&a, &b, NULL, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_CONTENT);
	assert_int_equal(v.fields, FIELD_BIT(FIELD_DESTINATION) |
	    FIELD_BIT(FIELD_BODY));

	b = row(1, "a@x", "T", "B");
	merge_classify(&a, &b, NULL, NULL, NULL, &v);
	assert_int_equal(v.fields, FIELD_BIT(FIELD_SUBJECT));
}

static void
test_one_sided(void **state)
{
	struct merge_row a = row(1, "a@x", "S", "B");
	struct verdict v;

	(void)state;
	merge_classify(&a, NULL, NULL, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_ONLY_MONO);
	merge_classify(NULL, &a, NULL, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_ONLY_MICRO);
}

static void
test_open_mismatches(void **state)
{
	struct merge_row a = row(1, "a@x", "S", "B"), b = row(1, "a@x", "S", "B");
	struct merge_row c = row(1, "a@x", "S", "other");
	struct merge_open o = { .id = 42, .kind = KIND_MISSING_IN_MICRO };
	struct verdict v;

	(void)state;
	/* Still one-sided: not reported again. */
	merge_classify(&a, NULL, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_SKIP_OPEN);
	/* The partner arrived late and matches: resolves the mismatch. */
	merge_classify(&a, &b, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_MATCH);
	assert_int_equal(v.resolve_id, 42);
	/* ... or differs: resolves it and opens a content mismatch. */
	merge_classify(&a, &c, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_CONTENT);
	assert_int_equal(v.resolve_id, 42);
	assert_int_equal(v.fields, FIELD_BIT(FIELD_BODY));
	/* An open content mismatch stays until acknowledged. */
	o.kind = KIND_CONTENT;
	merge_classify(&a, &c, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_SKIP_OPEN);
	merge_classify(&a, &b, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_SKIP_OPEN);
	merge_classify(NULL, NULL, &o, NULL, NULL, &v);
	assert_int_equal(v.kind, VERDICT_NOTHING);
}

static void
test_rules_make_ignored(void **state)
{
	char err[256];
	struct rules *r = rules_parse("[case]\nfield = destination\n"
	    "lowercase = yes\n", "t", err, sizeof(err));
	struct merge_row a = row(1, "A@X", "S", "B"), b = row(1, "a@x", "S", "B");
	struct verdict v;
	uint64_t hits[1] = { 0 };

	(void)state;
	assert_non_null(r);
	merge_classify(&a, &b, NULL, r, hits, &v);
	assert_int_equal(v.kind, VERDICT_MATCH);
	assert_int_equal(v.ignored, 1);
	assert_int_equal(hits[0], 1);
	/* Absorbed in one field but another differs: a content mismatch. */
	b = row(1, "a@x", "S", "C");
	merge_classify(&a, &b, NULL, r, hits, &v);
	assert_int_equal(v.kind, VERDICT_CONTENT);
	assert_int_equal(v.ignored, 0);
	assert_int_equal(v.fields, FIELD_BIT(FIELD_BODY));
	rules_free(r);
}

/* Array-backed streams for merge_run. */
struct arr {
	struct merge_row *rows;
	size_t n, i;
};
struct oarr {
	struct merge_open *v;
	size_t n, i;
};

static int
arr_next(void *ctx, struct merge_row *out)
{
	struct arr *a = ctx;

	if (a->i == a->n)
		return 0;
	*out = a->rows[a->i++];
	return 1;
}

static int
oarr_next(void *ctx, struct merge_open *out)
{
	struct oarr *a = ctx;

	if (a->i == a->n)
		return 0;
	*out = a->v[a->i++];
	return 1;
}

struct seen {
	int n;
	int ids[32];
	enum verdict_kind kinds[32];
};

static int
record(void *ctx, const struct merge_row *mono, const struct merge_row *micro,
    const struct merge_open *open, const struct verdict *v)
{
	struct seen *s = ctx;
	const unsigned char *cid = mono ? mono->cid : micro ? micro->cid :
	    open->cid;

	s->ids[s->n] = cid[14] << 8 | cid[15];
	s->kinds[s->n++] = v->kind;
	return 0;
}

static void
test_merge_run_walks_three_streams(void **state)
{
	struct merge_row mono[] = { row(1, "d", "s", "b"), row(2, "d", "s", "b"),
		row(4, "d", "s", "b"), row(6, "d", "s", "b") };
	struct merge_row micro[] = { row(1, "d", "s", "b"), row(3, "d", "s", "b"),
		row(4, "d", "s", "x"), row(6, "d", "s", "b") };
	struct merge_open opens[2];
	struct arr am = { mono, 4, 0 }, ax = { micro, 4, 0 };
	struct oarr ao = { opens, 2, 0 };
	struct merge_rows sm = { arr_next, &am }, sx = { arr_next, &ax };
	struct merge_opens so = { oarr_next, &ao };
	struct seen s = { 0 };
	char err[256];

	(void)state;
	memset(opens, 0, sizeof(opens));
	opens[0].cid[15] = 5;
	opens[0].kind = KIND_CONTENT;
	opens[1].cid[15] = 6;
	opens[1].kind = KIND_MISSING_IN_MONO;
	opens[1].id = 9;
	assert_int_equal(merge_run(&sm, &sx, &so, NULL, NULL, record, &s, err,
	    sizeof(err)), 0);
	assert_int_equal(s.n, 6);
	assert_int_equal(s.ids[0], 1);
	assert_int_equal(s.kinds[0], VERDICT_MATCH);
	assert_int_equal(s.ids[1], 2);
	assert_int_equal(s.kinds[1], VERDICT_ONLY_MONO);
	assert_int_equal(s.ids[2], 3);
	assert_int_equal(s.kinds[2], VERDICT_ONLY_MICRO);
	assert_int_equal(s.ids[3], 4);
	assert_int_equal(s.kinds[3], VERDICT_CONTENT);
	assert_int_equal(s.ids[4], 5);
	assert_int_equal(s.kinds[4], VERDICT_NOTHING);
	assert_int_equal(s.ids[5], 6);
	assert_int_equal(s.kinds[5], VERDICT_MATCH);
}

static void
test_merge_run_rejects_disorder(void **state)
{
	struct merge_row mono[] = { row(2, "d", "s", "b"), row(1, "d", "s", "b") };
	struct arr am = { mono, 2, 0 }, ax = { NULL, 0, 0 };
	struct oarr ao = { NULL, 0, 0 };
	struct merge_rows sm = { arr_next, &am }, sx = { arr_next, &ax };
	struct merge_opens so = { oarr_next, &ao };
	struct seen s = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(merge_run(&sm, &sx, &so, NULL, NULL, record, &s, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "order"));
}

static int
failing_next(void *ctx, struct merge_row *out)
{
	(void)ctx;
	(void)out;
	return -1;
}

static void
test_merge_run_stream_failure_is_not_the_end(void **state)
{
	struct merge_row mono[] = { row(1, "d", "s", "b") };
	struct arr am = { mono, 1, 0 };
	struct oarr ao = { NULL, 0, 0 };
	struct merge_rows sm = { arr_next, &am }, sx = { failing_next, NULL };
	struct merge_opens so = { oarr_next, &ao };
	struct seen s = { 0 };
	char err[256];

	(void)state;
	/* A micro stream that fails must not turn mono rows into "missing". */
	assert_int_equal(merge_run(&sm, &sx, &so, NULL, NULL, record, &s, err,
	    sizeof(err)), -1);
	assert_int_equal(s.n, 0);
}

static void
test_shard(void **state)
{
	struct shard sh;
	char err[256];
	unsigned char u[16] = { 0 };
	char *sql;
	int k, hits[4] = { 0 };
	unsigned i;

	(void)state;
	assert_int_equal(shard_parse("2/4", &sh, err, sizeof(err)), 0);
	assert_int_equal(sh.k, 2);
	assert_int_equal(sh.n, 4);
	assert_int_equal(shard_parse("0/4", &sh, err, sizeof(err)), -1);
	assert_int_equal(shard_parse("5/4", &sh, err, sizeof(err)), -1);
	assert_int_equal(shard_parse("1/", &sh, err, sizeof(err)), -1);
	assert_int_equal(shard_parse("x", &sh, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--shard"));
	/* ...bd38ffff: the value PostgreSQL computes for the same UUID. */
	u[12] = 0xbd;
	u[13] = 0x38;
	u[14] = 0xff;
	u[15] = 0xff;
	assert_int_equal(shard_hash(u), 3174629375u);
	/* Every id falls in exactly one shard. */
	for (i = 0; i < 1000; i++) {
		u[15] = (unsigned char)i;
		u[14] = (unsigned char)(i >> 8);
		int n = 0;
		for (k = 1; k <= 4; k++) {
			struct shard s = { k, 4 };
			if (shard_contains(&s, u)) {
				n++;
				hits[k - 1]++;
			}
		}
		assert_int_equal(n, 1);
	}
	for (k = 0; k < 4; k++)
		assert_true(hits[k] > 200);
	sh.k = 3;
	sh.n = 8;
	sql = shard_sql(&sh, "c");
	assert_non_null(strstr(sql, "% 8 = 2"));
	free(sql);
	sh.k = sh.n = 1;
	sql = shard_sql(&sh, "c");
	assert_string_equal(sql, "");
	free(sql);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_and_content),
		cmocka_unit_test(test_one_sided),
		cmocka_unit_test(test_open_mismatches),
		cmocka_unit_test(test_rules_make_ignored),
		cmocka_unit_test(test_merge_run_walks_three_streams),
		cmocka_unit_test(test_merge_run_rejects_disorder),
		cmocka_unit_test(test_merge_run_stream_failure_is_not_the_end),
		cmocka_unit_test(test_shard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
