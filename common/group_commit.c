/*
 * group_commit: see group_commit.h. K committer threads, each with a
 * connection of its own, share one queue. While the committers' transactions
 * commit, new items pile up in the queue; the first committer free takes
 * them all (up to max_batch) into one transaction, so under load many
 * requests share one commit and its fsync, and K commits are in flight.
 *
 * A lost connection fails the batch fast with GC_STORE_DOWN; db_get()
 * brings the connection back when the server returns, with no restart.
 * Each committer notices the loss of its own connection.
 * A batch that lost its connection before COMMIT was sent is retried once
 * on a fresh connection: nothing of it can have been written.
 *
 * A user may first try its batch as one statement outside a transaction
 * (commit_one): its implicit commit saves the BEGIN and COMMIT round trips,
 * which under a moderate load, where batches are a few rows, were most of
 * a batch's trips to the server.
 */
#include "group_commit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

struct committer {
	struct group_commit *gc;
	pthread_t thread;
	struct db *db;
	unsigned long set_up;	/* db_connects() when setup last ran */
	struct gc_item **batch;	/* max_batch slots */
};

struct group_commit {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct gc_item *head, *tail;
	_Atomic size_t pending;
	int stopping;
	char *name;
	size_t max_batch;
	gc_setup_fn setup;
	gc_commit_one_fn commit_one;
	gc_apply_fn apply;
	gc_done_fn done;
	gc_batch_done_fn batch_done;
	void *arg;
	struct metric *m_batch, *m_commit, *m_pending, *m_busy, *m_outcome[3];
	unsigned ncommitters;
	struct committer *committers;
};

static const double batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 };

static int
exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		snprintf(err, errlen, "%s: %s", sql, db_error(conn, res));
	PQclear(res);
	return ok;
}

/* One attempt. Returns GC_OK/GC_FAILED/GC_STORE_DOWN; *before_commit is 1
 * when the failure happened before COMMIT was sent. */
static enum gc_outcome
attempt(struct committer *c, struct gc_item **items, size_t n,
    int *before_commit)
{
	struct group_commit *gc = c->gc;
	char err[512] = "";
	PGconn *conn;

	*before_commit = 1;
	conn = db_get(c->db, err, sizeof(err));
	if (conn == NULL)
		return GC_STORE_DOWN;
	if (gc->setup != NULL && c->set_up != db_connects(c->db)) {
		if (gc->setup(conn, gc->arg) == -1) {
			snprintf(err, sizeof(err), "setup: %s", PQerrorMessage(conn));
			goto fail;
		}
		c->set_up = db_connects(c->db);
	}
	if (gc->commit_one != NULL) {
		switch (gc->commit_one(conn, items, n, gc->arg)) {
		case 0:
			*before_commit = 0;
			return GC_OK;
		case 1:
			break;
		default:
			/* Retried like a batch that never reached COMMIT:
			 * commit_one finds what a first try committed. */
			snprintf(err, sizeof(err), "commit_one: %s",
			    PQerrorMessage(conn));
			goto fail;
		}
	}
	if (!exec_ok(conn, "BEGIN", err, sizeof(err)))
		goto fail;
	if (gc->apply(conn, items, n, gc->arg) == -1) {
		snprintf(err, sizeof(err), "apply: %s", PQerrorMessage(conn));
		goto fail;
	}
	*before_commit = 0;
	if (!exec_ok(conn, "COMMIT", err, sizeof(err)))
		goto fail;
	return GC_OK;
fail:
	if (db_check_lost(c->db)) {
		log_warnx("%s: batch of %zu not written, store down: %s", gc->name,
		    n, err);
		return GC_STORE_DOWN;
	}
	log_warnx("%s: batch of %zu failed: %s", gc->name, n, err);
	PQclear(PQexec(conn, "ROLLBACK"));
	return GC_FAILED;
}

static void
run_batch(struct committer *c, struct gc_item **items, size_t n)
{
	struct group_commit *gc = c->gc;
	enum gc_outcome out;
	double t0 = now_s();
	int before_commit;
	size_t i;

	metrics_add(gc->m_busy, 1);
	out = attempt(c, items, n, &before_commit);
	if (out == GC_STORE_DOWN && before_commit && db_is_up(c->db) == 0) {
		/* A restarted server shows up as a dead connection on first use. */
		out = attempt(c, items, n, &before_commit);
	}
	metrics_add(gc->m_busy, -1);
	if (out == GC_OK) {
		metrics_observe(gc->m_batch, (double)n);
		metrics_observe(gc->m_commit, now_s() - t0);
	}
	metrics_inc(gc->m_outcome[out], n);
	for (i = 0; i < n; i++) {
		atomic_fetch_sub(&gc->pending, 1);
		metrics_add(gc->m_pending, -1);
		gc->done(items[i], out, gc->arg);
	}
	if (gc->batch_done != NULL)
		gc->batch_done(gc->arg);
}

static void *
committer(void *p)
{
	struct committer *c = p;
	struct group_commit *gc = c->gc;
	size_t n;

	prctl(PR_SET_NAME, "committer");	/* for ps, top, perf */
	for (;;) {
		pthread_mutex_lock(&gc->lock);
		while (gc->head == NULL && !gc->stopping)
			pthread_cond_wait(&gc->cond, &gc->lock);
		if (gc->head == NULL && gc->stopping) {
			pthread_mutex_unlock(&gc->lock);
			break;
		}
		for (n = 0; n < gc->max_batch && gc->head != NULL; n++) {
			c->batch[n] = gc->head;
			gc->head = gc->head->next;
			c->batch[n]->next = NULL;
		}
		if (gc->head == NULL)
			gc->tail = NULL;
		else
			pthread_cond_signal(&gc->cond);	/* more than a batch: wake another */
		pthread_mutex_unlock(&gc->lock);
		run_batch(c, c->batch, n);
	}
	return NULL;
}

struct group_commit *
group_commit_start(const struct gc_config *cfg)
{
	static const char *const outcome_names[] = { "ok", "store_down", "failed" };
	struct group_commit *gc = xcalloc(1, sizeof(*gc));
	char labels[160];
	size_t i;

	pthread_mutex_init(&gc->lock, NULL);
	pthread_cond_init(&gc->cond, NULL);
	atomic_init(&gc->pending, 0);
	gc->name = xstrdup(cfg->name ? cfg->name : "database");
	gc->max_batch = cfg->max_batch ? cfg->max_batch : 256;
	gc->ncommitters = cfg->committers ? cfg->committers : 1;
	gc->committers = xcalloc(gc->ncommitters, sizeof(*gc->committers));
	for (i = 0; i < gc->ncommitters; i++) {
		gc->committers[i].gc = gc;
		gc->committers[i].db = db_new(cfg->conninfo, gc->name);
		gc->committers[i].batch = xcalloc(gc->max_batch,
		    sizeof(*gc->committers[i].batch));
	}
	gc->setup = cfg->setup;
	gc->commit_one = cfg->commit_one;
	gc->apply = cfg->apply;
	gc->done = cfg->done;
	gc->batch_done = cfg->batch_done;
	gc->arg = cfg->arg;
	snprintf(labels, sizeof(labels), "db=\"%s\"", gc->name);
	gc->m_batch = metrics_histogram("group_commit_batch_rows",
	    "Items written per committed transaction", labels, batch_bounds,
	    nitems(batch_bounds));
	gc->m_commit = metrics_histogram("group_commit_duration_seconds",
	    "Time to write and commit one batch", labels, NULL, 0);
	gc->m_pending = metrics_gauge("group_commit_pending",
	    "Items submitted and not yet settled (their requests wait)", labels);
	gc->m_busy = metrics_gauge("group_commit_busy_committers",
	    "Committers writing a batch now (transactions in flight)", labels);
	metrics_set(metrics_gauge("group_commit_committers",
	    "Committer threads, each with a connection of its own", labels),
	    (double)gc->ncommitters);
	for (i = 0; i < 3; i++) {
		snprintf(labels, sizeof(labels), "db=\"%s\",outcome=\"%s\"",
		    gc->name, outcome_names[i]);
		gc->m_outcome[i] = metrics_counter("group_commit_items_total",
		    "Items settled by the committer, by outcome", labels);
	}

	for (i = 0; i < gc->ncommitters; i++)
		thread_start(&gc->committers[i].thread, committer,
		    &gc->committers[i]);
	return gc;
}

void
group_commit_submit(struct group_commit *gc, struct gc_item *item)
{
	item->next = NULL;
	atomic_fetch_add(&gc->pending, 1);
	metrics_add(gc->m_pending, 1);
	pthread_mutex_lock(&gc->lock);
	if (gc->tail != NULL)
		gc->tail->next = item;
	else
		gc->head = item;
	gc->tail = item;
	pthread_cond_signal(&gc->cond);
	pthread_mutex_unlock(&gc->lock);
}

size_t
group_commit_pending(const struct group_commit *gc)
{
	return atomic_load(&gc->pending);
}

void
group_commit_retry_now(struct group_commit *gc)
{
	unsigned i;

	for (i = 0; i < gc->ncommitters; i++)
		db_retry_now(gc->committers[i].db);
}

void
group_commit_stop(struct group_commit *gc)
{
	unsigned i;

	if (gc == NULL)
		return;
	pthread_mutex_lock(&gc->lock);
	gc->stopping = 1;
	pthread_cond_broadcast(&gc->cond);
	pthread_mutex_unlock(&gc->lock);
	for (i = 0; i < gc->ncommitters; i++) {
		pthread_join(gc->committers[i].thread, NULL);
		db_free(gc->committers[i].db);
		free(gc->committers[i].batch);
	}
	free(gc->committers);
	pthread_mutex_destroy(&gc->lock);
	pthread_cond_destroy(&gc->cond);
	free(gc->name);
	free(gc);
}
