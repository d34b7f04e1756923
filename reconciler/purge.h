/*
 * purge: retention for both stores (`reconciler purge --older-than DAYS
 * [--dry-run]`). Deletes what no later run needs: mail rows consumed more
 * than DAYS ago and done delivering (sent_mail sent, failed, or delegated
 * and handed over; spied_mail recorded only, sent or failed), and
 * mismatches resolved more than DAYS ago. Never an unconsumed row, a row
 * still pending delivery, or an open mismatch.
 *
 * Each table is deleted in keyset batches of PURGE_BATCH rows by id, one
 * short transaction per batch, so no lock is held for long and a purge
 * stopped at any point leaves nothing half done (rerun it). One purge at
 * a time (its own advisory lock on both databases); purge and run touch
 * disjoint rows, so they do not exclude each other.
 */
#ifndef RECONCILER_PURGE_H
#define RECONCILER_PURGE_H

#include "reconciler/cli.h"

#define PURGE_BATCH 5000
/* Second key of purge's advisory lock: below every shard's key (> 1025). */
#define PURGE_LOCK_KEY 1

/* Returns the exit code: EXIT_CLEAN, EXIT_DB or EXIT_LOCKED. */
int purge_run(const struct cli *c);

#endif
