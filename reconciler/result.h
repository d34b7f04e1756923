/*
 * result: what a run found, as every part of the reconciler passes it
 * around: a run's counters and summary (runstore reads and writes them),
 * one mismatch (mark and spool make them, runstore and the console read
 * them) and an iterator over mismatches (what the report writers take).
 * Only types and their destructors: no database, no output, so the
 * stores, the writers and the reports all depend on this header and not
 * on one another.
 */
#ifndef RECONCILER_RESULT_H
#define RECONCILER_RESULT_H

#include <stddef.h>
#include <stdint.h>

struct run_counts {
	int64_t mono_rows, micro_rows;
	int64_t matched, ignored, healed, late, deferred, skipped_open;
	int64_t content, missing_in_micro, missing_in_mono, new_mismatches;
};

/* The counters by name, in report order (also the reconciliation_run
 * column names). */
struct count_field {
	const char *name;
	size_t offset;
};
extern const struct count_field run_count_fields[];
extern const size_t run_ncount_fields;
/* The counter run_count_fields[i] names, inside c. */
int64_t *run_count(struct run_counts *c, size_t i);

struct rule_hit {
	char *name;
	int64_t count;
};

struct run_summary {
	int64_t id;		/* 0 for a dry run */
	int dry_run;
	char *status, *started_at, *finished_at, *cutoff, *rules_file, *error;
	long grace;
	int shard_k, shard_n;
	struct run_counts c;
	struct rule_hit *rules;
	size_t nrules;
};

/* Frees what s owns and zeroes it; a zeroed summary is a no-op. */
void run_summary_clear(struct run_summary *s);

struct mismatch {
	int64_t id, run_id;	/* 0 in a dry run */
	char *cid, *kind, *fields;	/* fields: "destination,body" */
	char *mono[3], *micro[3];	/* by enum mail_field; NULL: side absent */
	char *found_at, *resolved_at, *resolution, *note;	/* NULL when unset */
	int64_t cluster_id;	/* 0: none yet (a dry run's, or not clustered) */
};

/* Frees what m owns and zeroes it; a zeroed mismatch is a no-op. */
void mismatch_clear(struct mismatch *m);

struct cluster_list;

/* 1 with *m filled (owned by the iterator until the next call), 0 at the
 * end, -1 on error (the iterator's owner knows why). clusters, when set,
 * are the clusters of what is listed: the report opens with them
 * (clusterstore.h). */
struct mismatch_iter {
	int (*next)(void *ctx, struct mismatch *m);
	void *ctx;
	const struct cluster_list *clusters;
};

#endif
