/*
 * Unit tests for mailer-real/experiment: each Scientist semantic pinned down.
 * The control's value is what the caller gets; a raising candidate is
 * counted, never raised; ignore predicates count apart from matches;
 * percentage 0/100 and run_if gate the candidate; publish runs exactly once
 * per tried run; both orders happen; raise_on_mismatch turns a mismatch
 * into an error for tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailer-real/experiment.h"
#include "common/util.h"

struct probe {
	int control_value;
	int candidate_value;
	int candidate_raises;
	int control_raises;
	int run_if;
	int control_calls, candidate_calls;
	int order[2];		/* 1 = control, 2 = candidate, in call order */
	int ncalls;
	int publishes;
	struct experiment_result last;
	char last_control_clean[64], last_candidate_clean[64];
	double last_control_wall, last_candidate_wall;
};

static int
control_fn(void *ctx, void **value, char *err, size_t errlen)
{
	struct probe *p = ctx;
	int *v;

	p->control_calls++;
	if (p->ncalls < 2)
		p->order[p->ncalls++] = 1;
	if (p->control_raises) {
		snprintf(err, errlen, "control broke");
		return -1;
	}
	v = xmalloc(sizeof(*v));
	*v = p->control_value;
	*value = v;
	return 0;
}

static int
candidate_fn(void *ctx, void **value, char *err, size_t errlen)
{
	struct probe *p = ctx;
	int *v;

	p->candidate_calls++;
	if (p->ncalls < 2)
		p->order[p->ncalls++] = 2;
	if (p->candidate_raises) {
		snprintf(err, errlen, "candidate broke");
		return -1;
	}
	v = xmalloc(sizeof(*v));
	*v = p->candidate_value;
	*value = v;
	return 0;
}

static unsigned
compare_ints(const void *a, const void *b, void *arg)
{
	(void)arg;
	return *(const int *)a == *(const int *)b ? 0 : 1;
}

/* Accepts a candidate that is exactly one more than the control. */
static int
ignore_off_by_one(const void *a, const void *b, unsigned diff, void *arg)
{
	(void)arg;
	(void)diff;
	return *(const int *)b == *(const int *)a + 1;
}

static char *
clean_int(const void *v, void *arg)
{
	(void)arg;
	return xasprintf("value=%d", *(const int *)v);
}

static void
publish(const struct experiment_result *r, void *arg)
{
	struct probe *p = arg;

	p->publishes++;
	p->last = *r;
	snprintf(p->last_control_clean, sizeof(p->last_control_clean), "%s",
	    r->control_clean ? r->control_clean : "");
	snprintf(p->last_candidate_clean, sizeof(p->last_candidate_clean), "%s",
	    r->candidate_clean ? r->candidate_clean : "");
	p->last_control_wall = r->control->wall_s;
	p->last_candidate_wall = r->candidate->wall_s;
	/* the observations are only valid during publish */
	p->last.control = NULL;
	p->last.candidate = NULL;
}

static int
run_if_fn(void *ctx, void *arg)
{
	(void)arg;
	return ((struct probe *)ctx)->run_if;
}

static struct experiment *
make(struct probe *p, unsigned percent, int raise)
{
	struct experiment_config cfg = {
		.name = "test",
		.compare = compare_ints,
		.ignore = { ignore_off_by_one },
		.clean = clean_int,
		.run_if = run_if_fn,
		.publish = publish,
		.percent = percent,
		.raise_on_mismatch = raise,
		.arg = p,
	};
	memset(p, 0, sizeof(*p));
	p->run_if = 1;
	return experiment_new(&cfg);
}

static int
run(struct experiment *e, struct probe *p, int *out, char *err, size_t errlen)
{
	void *v = NULL;
	int rc;

	p->ncalls = 0;
	rc = experiment_run(e, control_fn, candidate_fn, p, "ctx-1", &v, err,
	    errlen);
	*out = v ? *(int *)v : -1;
	free(v);
	return rc;
}

static void
test_control_value_returned_on_mismatch(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 0);
	struct experiment_stats s;
	char err[256] = "";
	int out;

	(void)state;
	p.control_value = 7;
	p.candidate_value = 42;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(out, 7);
	assert_int_equal(p.publishes, 1);
	assert_int_equal(p.last.outcome, EXPERIMENT_MISMATCHED);
	assert_int_equal(p.last.diff, 1);
	assert_string_equal(p.last.context, "ctx-1");
	assert_string_equal(p.last_control_clean, "value=7");
	assert_string_equal(p.last_candidate_clean, "value=42");
	assert_true(p.last_control_wall >= 0 && p.last_candidate_wall >= 0);
	experiment_stats(e, &s);
	assert_int_equal(s.runs, 1);
	assert_int_equal(s.mismatched, 1);
	assert_int_equal(s.matched, 0);
	experiment_free(e);
}

static void
test_match_counted(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 1);
	struct experiment_stats s;
	char err[256] = "";
	int out;

	(void)state;
	p.control_value = p.candidate_value = 5;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(out, 5);
	assert_int_equal(p.last.outcome, EXPERIMENT_MATCHED);
	experiment_stats(e, &s);
	assert_int_equal(s.matched, 1);
	assert_int_equal(s.mismatched + s.ignored + s.candidate_errors, 0);
	experiment_free(e);
}

static void
test_raising_candidate_is_caught(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 1);
	struct experiment_stats s;
	char err[256] = "";
	int out;

	(void)state;
	p.control_value = 3;
	p.candidate_raises = 1;
	/* even with raise_on_mismatch, a candidate error never reaches the caller */
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(out, 3);
	assert_int_equal(p.publishes, 1);
	assert_int_equal(p.last.outcome, EXPERIMENT_CANDIDATE_ERROR);
	experiment_stats(e, &s);
	assert_int_equal(s.candidate_errors, 1);
	assert_int_equal(s.mismatched, 0);
	experiment_free(e);
}

static void
test_raising_control_is_callers_error(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 0);
	char err[256] = "";
	int out;

	(void)state;
	p.control_raises = 1;
	p.candidate_value = 1;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), -1);
	assert_string_equal(err, "control broke");
	assert_int_equal(out, -1);
	assert_int_equal(p.last.outcome, EXPERIMENT_MISMATCHED);
	assert_int_equal(p.last.diff, EXPERIMENT_DIFF_RAISED);
	experiment_free(e);
}

static void
test_ignore_counted_apart(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 1);
	struct experiment_stats s;
	char err[256] = "";
	int out;

	(void)state;
	p.control_value = 10;
	p.candidate_value = 11;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(out, 10);
	assert_int_equal(p.last.outcome, EXPERIMENT_IGNORED);
	experiment_stats(e, &s);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(s.matched, 0);
	assert_int_equal(s.mismatched, 0);
	experiment_free(e);
}

static void
test_percent_zero_never_tries(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 0, 0);
	struct experiment_stats s;
	char err[256] = "";
	int i, out;

	(void)state;
	p.control_value = 1;
	p.candidate_value = 2;
	for (i = 0; i < 200; i++)
		assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(p.control_calls, 200);
	assert_int_equal(p.candidate_calls, 0);
	assert_int_equal(p.publishes, 0);
	experiment_stats(e, &s);
	assert_int_equal(s.skipped, 200);
	experiment_free(e);
}

static void
test_percent_hundred_always_tries_both_orders(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 0);
	char err[256] = "";
	int i, out, control_first = 0, candidate_first = 0;

	(void)state;
	p.control_value = p.candidate_value = 4;
	for (i = 0; i < 200; i++) {
		assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
		assert_int_equal(p.ncalls, 2);
		if (p.order[0] == 1)
			control_first++;
		else
			candidate_first++;
		assert_int_equal(p.last.candidate_first, p.order[0] == 2);
	}
	assert_int_equal(p.candidate_calls, 200);
	assert_int_equal(p.publishes, 200);
	/* random order: 200 fair coin flips all landing one way is 2^-199 */
	assert_true(control_first > 0);
	assert_true(candidate_first > 0);
	experiment_free(e);
}

static void
test_run_if_false_skips(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 1);
	char err[256] = "";
	int out;

	(void)state;
	p.run_if = 0;
	p.control_value = 1;
	p.candidate_value = 99;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), 0);
	assert_int_equal(out, 1);
	assert_int_equal(p.candidate_calls, 0);
	assert_int_equal(p.publishes, 0);
	experiment_free(e);
}

static void
test_raise_on_mismatch(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 1);
	char err[256] = "";
	int out;

	(void)state;
	p.control_value = 1;
	p.candidate_value = 50;
	assert_int_equal(run(e, &p, &out, err, sizeof(err)), EXPERIMENT_MISMATCH);
	assert_int_equal(out, 1);	/* the control's value still comes back */
	assert_non_null(strstr(err, "mismatched"));
	assert_non_null(strstr(err, "ctx-1"));
	experiment_free(e);
}

static void
test_observed_candidate(void **state)
{
	struct probe p;
	struct experiment *e = make(&p, 100, 0);
	struct experiment_observation ko;
	void *v = NULL;
	char err[256] = "";
	int *kv = xmalloc(sizeof(*kv));

	(void)state;
	p.control_value = 8;
	*kv = 8;
	memset(&ko, 0, sizeof(ko));
	ko.value = kv;
	ko.wall_s = 0.25;
	assert_int_equal(experiment_run_observed(e, control_fn, &ko, &p, "c",
	    &v, err, sizeof(err)), 0);
	assert_int_equal(*(int *)v, 8);
	free(v);
	assert_null(ko.value);		/* handed over and freed */
	assert_int_equal(p.publishes, 1);
	assert_int_equal(p.last.outcome, EXPERIMENT_MATCHED);
	assert_true(p.last_candidate_wall == 0.25);

	memset(&ko, 0, sizeof(ko));
	ko.raised = 1;
	snprintf(ko.error, sizeof(ko.error), "timeout");
	v = NULL;
	assert_int_equal(experiment_run_observed(e, control_fn, &ko, &p, "c",
	    &v, err, sizeof(err)), 0);
	assert_int_equal(*(int *)v, 8);
	free(v);
	assert_int_equal(p.publishes, 2);
	assert_int_equal(p.last.outcome, EXPERIMENT_CANDIDATE_ERROR);
	experiment_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_value_returned_on_mismatch),
		cmocka_unit_test(test_match_counted),
		cmocka_unit_test(test_raising_candidate_is_caught),
		cmocka_unit_test(test_raising_control_is_callers_error),
		cmocka_unit_test(test_ignore_counted_apart),
		cmocka_unit_test(test_percent_zero_never_tries),
		cmocka_unit_test(test_percent_hundred_always_tries_both_orders),
		cmocka_unit_test(test_run_if_false_skips),
		cmocka_unit_test(test_raise_on_mismatch),
		cmocka_unit_test(test_observed_candidate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
