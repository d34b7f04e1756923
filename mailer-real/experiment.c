/*
 * experiment: see experiment.h. The rules follow github/scientist: the
 * control's outcome is the caller's outcome, the candidate can never hurt
 * the caller, and every run that tried the candidate is published once.
 */
#include "experiment.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

struct experiment {
	struct experiment_config cfg;
	char *name;
	atomic_uint_fast64_t runs, skipped, matched, mismatched, ignored,
	    candidate_errors;
};

static _Thread_local uint64_t rng_state;

/* xorshift64*: cheap, per thread, good enough to pick an order or a sample. */
static uint64_t
rng_next(void)
{
	if (rng_state == 0) {
		int local;
		rng_state = now_ns() ^ (uint64_t)(uintptr_t)&local ^
		    0x9e3779b97f4a7c15ULL;
		if (rng_state == 0)
			rng_state = 1;
	}
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static double
thread_cpu_s(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct experiment *
experiment_new(const struct experiment_config *cfg)
{
	struct experiment *e = xcalloc(1, sizeof(*e));

	e->cfg = *cfg;
	e->name = xstrdup(cfg->name ? cfg->name : "experiment");
	e->cfg.name = e->name;
	if (e->cfg.percent > 100)
		e->cfg.percent = 100;
	return e;
}

void
experiment_free(struct experiment *e)
{
	if (e == NULL)
		return;
	free(e->name);
	free(e);
}

static void
observe(experiment_fn fn, void *ctx, struct experiment_observation *o)
{
	uint64_t t0;
	double c0;

	memset(o, 0, sizeof(*o));
	t0 = now_ns();
	c0 = thread_cpu_s();
	if (fn(ctx, &o->value, o->error, sizeof(o->error)) != 0) {
		o->raised = 1;
		o->value = NULL;
		if (o->error[0] == '\0')
			snprintf(o->error, sizeof(o->error), "raised");
	}
	o->cpu_s = thread_cpu_s() - c0;
	o->wall_s = (double)(now_ns() - t0) / 1e9;
}

static int
should_try(struct experiment *e, void *ctx)
{
	if (e->cfg.percent == 0)
		return 0;
	if (e->cfg.percent < 100 && rng_next() % 100 >= e->cfg.percent)
		return 0;
	if (e->cfg.run_if != NULL && !e->cfg.run_if(ctx, e->cfg.arg))
		return 0;
	return 1;
}

static void
free_value(struct experiment *e, void *v)
{
	if (v == NULL)
		return;
	if (e->cfg.free_value != NULL)
		e->cfg.free_value(v);
	else
		free(v);
}

/*
 * Classifies, counts and publishes one run where both sides have an
 * observation; returns the outcome (and diff in *diffp).
 */
static enum experiment_outcome
settle(struct experiment *e, const struct experiment_observation *control,
    const struct experiment_observation *candidate, const char *context,
    int candidate_first, unsigned *diffp)
{
	struct experiment_result r;
	char *cclean = NULL, *kclean = NULL;
	unsigned diff = 0;
	size_t i;

	memset(&r, 0, sizeof(r));
	r.name = e->name;
	r.context = context;
	r.control = control;
	r.candidate = candidate;
	r.candidate_first = candidate_first;

	if (candidate->raised) {
		r.outcome = EXPERIMENT_CANDIDATE_ERROR;
		diff = control->raised ? 0 : EXPERIMENT_DIFF_RAISED;
	} else if (control->raised) {
		diff = EXPERIMENT_DIFF_RAISED;
		r.outcome = EXPERIMENT_MISMATCHED;
	} else {
		diff = e->cfg.compare(control->value, candidate->value, e->cfg.arg);
		r.outcome = diff == 0 ? EXPERIMENT_MATCHED : EXPERIMENT_MISMATCHED;
	}
	if (r.outcome == EXPERIMENT_MISMATCHED && !control->raised) {
		for (i = 0; i < EXPERIMENT_MAX_IGNORES && e->cfg.ignore[i]; i++) {
			if (e->cfg.ignore[i](control->value, candidate->value, diff,
			    e->cfg.arg)) {
				r.outcome = EXPERIMENT_IGNORED;
				break;
			}
		}
	}
	r.diff = diff;

	switch (r.outcome) {
	case EXPERIMENT_MATCHED: atomic_fetch_add(&e->matched, 1); break;
	case EXPERIMENT_MISMATCHED: atomic_fetch_add(&e->mismatched, 1); break;
	case EXPERIMENT_IGNORED: atomic_fetch_add(&e->ignored, 1); break;
	case EXPERIMENT_CANDIDATE_ERROR:
		atomic_fetch_add(&e->candidate_errors, 1);
		break;
	case EXPERIMENT_SKIPPED: break;
	}

	if (e->cfg.publish != NULL) {
		if (e->cfg.clean != NULL) {
			if (!control->raised)
				cclean = e->cfg.clean(control->value, e->cfg.arg);
			if (!candidate->raised)
				kclean = e->cfg.clean(candidate->value, e->cfg.arg);
		}
		r.control_clean = cclean;
		r.candidate_clean = kclean;
		e->cfg.publish(&r, e->cfg.arg);
		free(cclean);
		free(kclean);
	}
	*diffp = diff;
	return r.outcome;
}

static int
finish(struct experiment *e, enum experiment_outcome outcome, unsigned diff,
    struct experiment_observation *control, const char *context,
    void **value, char *err, size_t errlen)
{
	*value = control->value;
	if (control->raised) {
		snprintf(err, errlen, "%s", control->error);
		return -1;
	}
	if (e->cfg.raise_on_mismatch && outcome == EXPERIMENT_MISMATCHED) {
		snprintf(err, errlen, "experiment %s mismatched (diff 0x%x)%s%s",
		    e->name, diff, context ? " for " : "", context ? context : "");
		return EXPERIMENT_MISMATCH;
	}
	return 0;
}

int
experiment_run(struct experiment *e, experiment_fn control,
    experiment_fn candidate, void *ctx, const char *context, void **value,
    char *err, size_t errlen)
{
	struct experiment_observation co, ko;
	enum experiment_outcome outcome;
	unsigned diff = 0;
	int candidate_first;

	atomic_fetch_add(&e->runs, 1);
	if (!should_try(e, ctx)) {
		atomic_fetch_add(&e->skipped, 1);
		observe(control, ctx, &co);
		return finish(e, EXPERIMENT_SKIPPED, 0, &co, context, value, err,
		    errlen);
	}
	candidate_first = (int)(rng_next() >> 63);
	if (candidate_first) {
		observe(candidate, ctx, &ko);
		observe(control, ctx, &co);
	} else {
		observe(control, ctx, &co);
		observe(candidate, ctx, &ko);
	}
	outcome = settle(e, &co, &ko, context, candidate_first, &diff);
	free_value(e, ko.value);
	return finish(e, outcome, diff, &co, context, value, err, errlen);
}

int
experiment_run_observed(struct experiment *e, experiment_fn control,
    struct experiment_observation *candidate, void *ctx, const char *context,
    void **value, char *err, size_t errlen)
{
	struct experiment_observation co;
	enum experiment_outcome outcome = EXPERIMENT_SKIPPED;
	unsigned diff = 0;

	atomic_fetch_add(&e->runs, 1);
	observe(control, ctx, &co);
	if (!should_try(e, ctx)) {
		atomic_fetch_add(&e->skipped, 1);
	} else {
		if (candidate->raised)
			candidate->value = NULL;
		outcome = settle(e, &co, candidate, context, 0, &diff);
	}
	free_value(e, candidate->value);
	candidate->value = NULL;
	return finish(e, outcome, diff, &co, context, value, err, errlen);
}

void
experiment_stats(const struct experiment *e, struct experiment_stats *out)
{
	out->runs = atomic_load(&e->runs);
	out->skipped = atomic_load(&e->skipped);
	out->matched = atomic_load(&e->matched);
	out->mismatched = atomic_load(&e->mismatched);
	out->ignored = atomic_load(&e->ignored);
	out->candidate_errors = atomic_load(&e->candidate_errors);
}
