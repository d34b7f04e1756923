/*
 * experiment: a small Scientist (github/scientist) for C. An experiment
 * runs a trusted behaviour (the control) and a new one (the candidate),
 * hands the caller the control's result every time, and reports how the
 * candidate did: matched, mismatched, ignored (a known, accepted
 * difference) or raised (a candidate error, caught and counted, never
 * passed to the caller).
 *
 *   struct experiment *e = experiment_new(&(struct experiment_config){
 *       .name = "mail-render", .compare = cmp, .publish = pub, ... });
 *   rc = experiment_run(e, legacy_fn, new_fn, ctx, &value, err, sizeof(err));
 *
 * In-process pairs run in a random order (so an order dependency shows up
 * as a mismatch, not as a constant bias) and both are timed (wall clock and
 * the calling thread's CPU time). A candidate that ran elsewhere (another
 * service answering later) is given to experiment_run_observed() as a
 * finished observation.
 *
 * An experiment is safe to use from several threads at once: its
 * configuration is read-only after experiment_new() and its counters are
 * atomic.
 */
#ifndef COMMON_EXPERIMENT_H
#define COMMON_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

/* experiment_run's return when raise_on_mismatch is set and they differ. */
#define EXPERIMENT_MISMATCH (-2)

/* compare()'s answer when exactly one side raised. */
#define EXPERIMENT_DIFF_RAISED (1u << 31)

enum experiment_outcome {
	EXPERIMENT_SKIPPED = 0,		/* run_if false or not sampled: only the control ran */
	EXPERIMENT_MATCHED,
	EXPERIMENT_MISMATCHED,
	EXPERIMENT_IGNORED,		/* differed, but an ignore predicate accepted it */
	EXPERIMENT_CANDIDATE_ERROR,	/* the candidate raised */
};

/*
 * A behaviour: 0 with *value set (owned by whoever receives it), or -1
 * ("raised") with err filled.
 */
typedef int (*experiment_fn)(void *ctx, void **value, char *err,
    size_t errlen);

struct experiment_observation {
	void *value;		/* NULL when raised */
	int raised;
	char error[256];
	double wall_s;		/* elapsed wall-clock time */
	double cpu_s;		/* CPU time of the running thread; 0 when unknown */
};

/*
 * 0 when control and candidate values are equal; otherwise any non-zero
 * description of the difference (a bit per field, say), passed on to the
 * ignore predicates and the publisher.
 */
typedef unsigned (*experiment_compare_fn)(const void *control,
    const void *candidate, void *arg);
/* 1 when a difference is known and accepted. */
typedef int (*experiment_ignore_fn)(const void *control,
    const void *candidate, unsigned diff, void *arg);
/* What gets published of a value: a string the experiment frees. */
typedef char *(*experiment_clean_fn)(const void *value, void *arg);
typedef int (*experiment_run_if_fn)(void *ctx, void *arg);

struct experiment_result {
	const char *name;
	const char *context;		/* the caller's label, e.g. a correlation id */
	enum experiment_outcome outcome;
	unsigned diff;			/* compare()'s answer; 0 when matched */
	int candidate_first;		/* in-process order; 0 for observed runs */
	const struct experiment_observation *control;
	const struct experiment_observation *candidate;
	const char *control_clean;	/* cleaner's output; NULL without a cleaner */
	const char *candidate_clean;
};

/* Called once per run that was not skipped, on the running thread. */
typedef void (*experiment_publish_fn)(const struct experiment_result *r,
    void *arg);

#define EXPERIMENT_MAX_IGNORES 8

struct experiment_config {
	const char *name;
	experiment_compare_fn compare;		/* required */
	experiment_ignore_fn ignore[EXPERIMENT_MAX_IGNORES];	/* NULL-terminated if fewer */
	experiment_clean_fn clean;		/* optional */
	experiment_run_if_fn run_if;		/* optional: 0 = control only */
	experiment_publish_fn publish;		/* optional */
	void (*free_value)(void *value);	/* frees candidate values; NULL = free() */
	unsigned percent;			/* 0..100 of runs that try the candidate */
	int raise_on_mismatch;			/* for tests: mismatches become errors */
	void *arg;				/* passed to every callback above */
};

struct experiment_stats {
	uint64_t runs, skipped, matched, mismatched, ignored, candidate_errors;
};

struct experiment *experiment_new(const struct experiment_config *cfg);
void experiment_free(struct experiment *e);

/*
 * Runs control (always) and candidate (when run_if and the percentage
 * allow), in a random order, then compares and publishes. Returns the
 * control's return code with *value the control's value (the caller owns
 * it); a control error is the caller's error, as if no experiment ran.
 * With raise_on_mismatch, a mismatch returns EXPERIMENT_MISMATCH (err
 * says why) and *value is still the control's.
 */
int experiment_run(struct experiment *e, experiment_fn control,
    experiment_fn candidate, void *ctx, const char *context, void **value,
    char *err, size_t errlen);

/*
 * The same, for a candidate that already ran somewhere else: *candidate
 * is its finished observation (its value is freed with free_value after
 * publishing, so the caller hands it over). run_if and the percentage
 * still apply (a skipped run frees the candidate value unseen).
 */
int experiment_run_observed(struct experiment *e, experiment_fn control,
    struct experiment_observation *candidate, void *ctx, const char *context,
    void **value, char *err, size_t errlen);

void experiment_stats(const struct experiment *e, struct experiment_stats *out);

#endif
