/*
 * mark: everything a run writes, done by a writer thread on two
 * connections of its own while the merge keeps streaming.
 *
 * The merge fills a batch (matched ids, new mismatches, one-sided
 * candidates); a full batch goes to the writer, which:
 *   1. looks each candidate's partner up in the other database:
 *      absent -> a "missing" mismatch; consumed by an earlier run and
 *      equal -> healed (consumed now); consumed but different -> content
 *      mismatch; present and unconsumed -> deferred (still in grace);
 *   2. in one mono transaction: resolves "missing" mismatches answered late,
 *      records the new mismatches, consumes the mono rows;
 *   3. then (the micro writer, overlapping the next batch's step 2)
 *      consumes the micro rows.
 * Because mono commits first, a kill between 2 and 3 leaves micro rows whose
 * partners are consumed and whose mismatches (if any) are resolved: the
 * next run heals them. Any kill point is harmless; docs/RECONCILER.md has
 * the case analysis.
 */
#ifndef RECONCILER_MARK_H
#define RECONCILER_MARK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "reconciler/merge.h"
#include "reconciler/result.h"
#include "reconciler/rules.h"

struct mark_config {
	/* Used by the writer threads only, until mark_finish: mono and
	 * micro_lookup by the mono writer, micro by the micro writer. */
	PGconn *mono, *micro, *micro_lookup;
	int64_t run_id;
	int dry_run;		/* look up, classify, spool; write nothing */
	FILE *spool;		/* dry run: mismatches go here */
	const struct rules *rules;
	size_t batch_rows;	/* matched pairs per batch */
	long crash_batch;	/* testing: _exit at this batch (1-based), 0 never */
	char crash_stage;	/* 'a' before mono, 'b' between mono and micro, 'c' after */
	int spill_all;		/* testing: every batch through the spill file */
	int overlap;		/* mark while the streams are still read */
	/* Called by the mono writer before each batch: 0 to go on, or -1
	 * with err set to stop the run there (a stop signal, a lost lock). */
	int (*check)(void *ctx, char *err, size_t errlen);
	void *check_ctx;
};

struct mark;

struct mark *mark_start(const struct mark_config *cfg);

/* Each returns 0, or -1 once the writer has failed (see mark_finish). */
int mark_match(struct mark *m, const struct merge_row *mono,
    const struct merge_row *micro, int64_t resolve_id);
int mark_mismatch(struct mark *m, enum mismatch_kind kind, unsigned fields,
    const struct merge_row *mono, const struct merge_row *micro,
    int64_t resolve_id);
int mark_candidate(struct mark *m, int is_mono, const struct merge_row *row);

/*
 * Writes what is left, stops the writer and adds its counts (healed,
 * deferred, late, new mismatches by kind) and rule hits to c and hits.
 * With flush 0 the pending batch and those not yet written are dropped
 * (the run failed or is stopping). 0, or -1 with err when any write
 * failed.
 */
int mark_finish(struct mark *m, int flush, struct run_counts *c,
    uint64_t *hits, char *err, size_t errlen);

#endif
