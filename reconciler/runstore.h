/*
 * runstore: the reconciler's history in postgresMono (sql/reconciler.sql):
 * opening and closing a run, reading a run and its mismatches back for the
 * reports, and acknowledging a mismatch by hand.
 */
#ifndef RECONCILER_RUNSTORE_H
#define RECONCILER_RUNSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "reconciler/result.h"
#include "reconciler/rules.h"
#include "reconciler/shard.h"

/* The run's cutoff (now() - grace on postgresMono) as epoch seconds text,
 * usable in SQL on either server as to_timestamp(cutoff). */
int runstore_cutoff(PGconn *mono, long grace, char *out, size_t outlen,
    char *err, size_t errlen);

/*
 * Marks runs of this shard left 'running' by a killed process as
 * 'aborted' (the caller holds the shard's lock, so none is alive) and
 * opens a new run. 0 with *run_id, or -1.
 */
int runstore_begin(PGconn *mono, const struct shard *sh, long grace,
    const char *cutoff, const char *rules_file, int64_t *run_id, char *err,
    size_t errlen);

/* Closes a run: status done or failed, its counts and rule hits. */
int runstore_finish(PGconn *mono, int64_t run_id, const char *status,
    const struct run_counts *c, const struct rules *rules,
    const uint64_t *hits, const char *error, char *err, size_t errlen);

/* Loads run id (0: the latest). 1 found, 0 no such run, -1 error. */
int runstore_load(PGconn *mono, int64_t id, struct run_summary *s, char *err,
    size_t errlen);

enum runstore_filter { RUNSTORE_RUN, RUNSTORE_OPEN, RUNSTORE_ALL,
	RUNSTORE_CLUSTER_OPEN, RUNSTORE_CLUSTER_ALL };

/*
 * Streams mismatches (of run_id, open ones, all, or cluster run_id's open
 * or all) in id order, one row
 * at a time (single-row mode). The iterator uses conn until it is freed.
 */
int runstore_mismatches(PGconn *mono, enum runstore_filter f, int64_t run_id,
    struct mismatch_iter *it, char *err, size_t errlen);
/*
 * One page (keyset): at most limit mismatches of the filter with an id
 * above after, in id order; NULL with err. Read rows with runstore_row.
 */
PGresult *runstore_page(PGconn *mono, enum runstore_filter f, int64_t id,
    int64_t after, int limit, char *err, size_t errlen);
void runstore_row(const PGresult *res, int row, struct mismatch *m);
/* After the iterator ended or failed: the error, or "" when it was clean. */
const char *runstore_iter_error(const struct mismatch_iter *it);
void runstore_iter_free(struct mismatch_iter *it);

/*
 * Resolves mismatch id by hand and consumes its rows (micro first, then
 * mono with the resolution in one transaction, so a kill in between
 * leaves the mismatch open and ack can simply be run again).
 * 0 done, 1 no such open mismatch (err says which), -1 database error.
 */
int runstore_ack(PGconn *mono, PGconn *micro, int64_t id, const char *note,
    char *err, size_t errlen);

#endif
