/*
 * group_commit: durable and fast at once. Requests hand their row to a
 * committer thread and wait (their HTTP connection suspended); a free
 * committer takes everything that arrived while the others were committing
 * and writes it in one transaction, then calls each item's done callback.
 * One fsync is shared by every row of a batch.
 *
 * There are one or more committers, each with a connection of its own,
 * taking batches from one queue: with K committers up to K transactions
 * are in flight at once, so throughput is not bounded by one commit's
 * latency. Batches of different committers may then run concurrently, in
 * no particular order: apply must be safe under that (e.g. take row locks
 * in a fixed order, so two batches cannot deadlock).
 *
 * Items are embedded in the caller's own struct (first member or
 * container-of), so the committer allocates nothing per item.
 */
#ifndef COMMON_GROUP_COMMIT_H
#define COMMON_GROUP_COMMIT_H

#include <stddef.h>

#include <libpq-fe.h>

struct group_commit;

enum gc_outcome {
	GC_OK = 0,		/* the batch committed; the item's own result is in the caller's struct */
	GC_STORE_DOWN,		/* connection lost or unavailable: answer 503 */
	GC_FAILED,		/* the batch failed for another reason: answer 500 */
};

struct gc_item {
	struct gc_item *next;	/* owned by the committer while queued */
};

/*
 * Runs once on every new connection of a committer, before its first
 * batch (e.g. to prepare statements); 0 ok, -1 failed (the batch then
 * fails as if the store were down). Optional.
 */
typedef int (*gc_setup_fn)(PGconn *conn, void *arg);
/*
 * Writes items[0..n) on conn, inside a transaction the committer opened.
 * With several committers it runs on several threads at once (each with
 * its own conn), as does done. Returns 0 to commit, -1 to roll back
 * (every item then fails). It may store per-item results (inserted vs.
 * already there) in the items, and may reorder items[].
 */
typedef int (*gc_apply_fn)(PGconn *conn, struct gc_item **items, size_t n,
    void *arg);
/*
 * Optional, tried before apply: writes items[0..n) in one statement
 * outside any transaction, so that the statement's own commit (one round
 * trip) is the batch's. Returns 0 when that statement committed the whole
 * batch; 1 when it wrote nothing and the batch goes the usual way (BEGIN,
 * apply, COMMIT); -1 when it failed. A batch whose connection was lost is
 * tried once more on a fresh one, commit_one first, even though the lost
 * statement may have committed: commit_one and apply must then find the
 * rows already there rather than write them twice. May reorder items[].
 */
typedef int (*gc_commit_one_fn)(PGconn *conn, struct gc_item **items,
    size_t n, void *arg);
/* Called on a committer thread once the batch is settled; must not block. */
typedef void (*gc_done_fn)(struct gc_item *item, enum gc_outcome outcome,
    void *arg);

/* Called on the committer thread after the done() of every item of a batch. */
typedef void (*gc_batch_done_fn)(void *arg);

struct gc_config {
	const char *conninfo;
	const char *name;	/* for messages and metric labels ("postgresMicro") */
	size_t max_batch;	/* items per transaction at most; 0 means 256 */
	unsigned committers;	/* threads, each with a connection; 0 means 1 */
	gc_setup_fn setup;	/* optional */
	gc_commit_one_fn commit_one;	/* optional */
	gc_apply_fn apply;
	gc_done_fn done;
	gc_batch_done_fn batch_done;	/* optional */
	void *arg;		/* passed to setup, apply, done and batch_done */
};

struct group_commit *group_commit_start(const struct gc_config *cfg);
void group_commit_submit(struct group_commit *gc, struct gc_item *item);
/* Items waiting or being written (for metrics and back-pressure). */
size_t group_commit_pending(const struct group_commit *gc);
/* Any thread: the store answers again; every committer stops waiting out
 * its reconnect backoff. */
void group_commit_retry_now(struct group_commit *gc);
/* Writes what was submitted, then stops the threads and frees. */
void group_commit_stop(struct group_commit *gc);

#endif
