/*
 * group_commit: durable and fast at once. Requests hand their row to a
 * committer thread and wait (their HTTP connection suspended); the
 * committer takes everything that arrived while the previous transaction
 * was committing and writes it in one transaction, then calls each item's
 * done callback. One fsync is shared by every row of a batch.
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
 * Writes items[0..n) on conn, inside a transaction the committer opened.
 * Returns 0 to commit, -1 to roll back (every item then fails). It may
 * store per-item results (inserted vs. already there) in the items.
 */
typedef int (*gc_apply_fn)(PGconn *conn, struct gc_item **items, size_t n,
    void *arg);
/* Called on the committer thread once the batch is settled; must not block. */
typedef void (*gc_done_fn)(struct gc_item *item, enum gc_outcome outcome,
    void *arg);

struct group_commit *group_commit_start(const char *conninfo,
    const char *dbname_for_messages, size_t max_batch, gc_apply_fn apply,
    gc_done_fn done, void *arg);
void group_commit_submit(struct group_commit *gc, struct gc_item *item);
/* Items waiting or being written (for metrics and back-pressure). */
size_t group_commit_pending(const struct group_commit *gc);
/* Any thread: the store answers again; stop waiting out the reconnect backoff. */
void group_commit_retry_now(struct group_commit *gc);
/* Writes what was submitted, then stops the thread and frees. */
void group_commit_stop(struct group_commit *gc);

#endif
