/*
 * run: see run.h. A run uses eight connections: two that only hold the
 * advisory locks (one per database, idle all run long), two for the
 * writers (mark.c) and the run row, one for the writer's lookups in micro,
 * and three that stream with COPY (unconsumed mono rows, unconsumed micro
 * rows, open mismatches), all in correlation-id order, into merge_run.
 *
 * The locks live on sessions that never run a long statement so that a
 * run that dies, however it dies, frees them as soon as its sockets close:
 * an idle backend reads the end of its connection at once, while one
 * running a statement only notices between statements or at its next
 * client_connection_check_interval (pg.c), which some long statements
 * reach late. A run checks both lock sessions before each batch it
 * writes and every LOCK_CHECK_ROWS rows it reads, and stops (exit 3) if
 * one was cut: going on unlocked would let a second run in beside it.
 *
 * SIGTERM and SIGINT are taken by a thread of their own (sigwait): it
 * sets the run's stop flag and cancels whatever statement the run's
 * connections are executing, every STOP_CANCEL_MS until the run has
 * wound down, so the run ends within a second or two, exit 3, its row
 * 'aborted'. What it committed before is consistent (mark.h).
 *
 * Any database failure ends the run with EXIT_DB before the streams' tails
 * are classified: a stream that broke is never mistaken for a stream that
 * ended, so a failure never produces a false "missing".
 */
#include "reconciler/run.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/copy_stream.h"
#include "reconciler/mark.h"
#include "reconciler/merge.h"
#include "reconciler/pg.h"
#include "reconciler/report.h"
#include "reconciler/runstore.h"
#include "reconciler/spool.h"

#define LOCK_CHECK_ROWS 65536
#define STOP_CANCEL_MS 100
#define NCANCEL 8

/* The stop signal thread and what it cancels. */
struct stopper {
	pthread_t thread;
	int started;
	sigset_t sigs;
	atomic_int signo;		/* the signal that stops the run, or 0 */
	pthread_mutex_t mu;
	PGcancel *cancel[NCANCEL];	/* the run's busy connections */
	int ncancel;
	int quiet;			/* winding down: cancel nothing more */
};

struct run {
	const struct cli *cli;
	size_t read_chunk;
	const struct rules *rules;
	PGconn *mono_lock, *micro_lock;
	pthread_mutex_t lock_mu;	/* the lock sessions: one user at a time */
	long rows_seen;
	struct stopper stop;
	PGconn *mono_w, *micro_w, *micro_lk, *mono_r, *micro_r, *open_r;
	struct copy_stream *s_mono, *s_micro, *s_open;
	struct mark *mark;
	FILE *spool;
	int64_t run_id;
	char cutoff[64];
	struct run_counts c;
	uint64_t *hits;
	char err[1024];
	char check_err[512];	/* why run_check stopped the merge */
};

static int
rows_next(struct copy_stream *cs, struct merge_row *row)
{
	const char *f[5];
	int len[5], rc, i;
	const unsigned char *t;

	if ((rc = copy_stream_next(cs, f, len)) != 1)
		return rc;
	if (len[0] != 16 || len[4] != 6)
		return -1;
	memcpy(row->cid, f[0], 16);
	for (i = 0; i < FIELD_COUNT; i++) {
		row->mail.v[i] = f[1 + i] ? f[1 + i] : "";
		row->mail.len[i] = len[1 + i] > 0 ? (size_t)len[1 + i] : 0;
	}
	/* tid in binary COPY: the page (4 bytes), the line pointer (2),
	 * both big-endian. */
	t = (const unsigned char *)f[4];
	row->blk = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 |
	    (uint32_t)t[2] << 8 | t[3];
	row->off = (uint16_t)(t[4] << 8 | t[5]);
	return 1;
}

static int
mono_next(void *ctx, struct merge_row *row)
{
	return rows_next(((struct run *)ctx)->s_mono, row);
}

static int
micro_next(void *ctx, struct merge_row *row)
{
	return rows_next(((struct run *)ctx)->s_micro, row);
}

static int
open_next(void *ctx, struct merge_open *o)
{
	struct run *r = ctx;
	const char *f[3];
	int len[3], rc;

	if ((rc = copy_stream_next(r->s_open, f, len)) != 1)
		return rc;
	if (len[0] != 16 || len[1] != 8 || len[2] < 0)
		return -1;
	memcpy(o->cid, f[0], 16);
	o->id = (int64_t)pg_get_u64(f[1]);
	o->kind = mismatch_kind_parse(f[2], (size_t)len[2]);
	return 1;
}

static void *
stopper_main(void *arg)
{
	struct stopper *st = arg;
	struct timespec pause = { 0, STOP_CANCEL_MS * 1000000L };
	char buf[256];
	int sig, i, quiet;

	if (sigwait(&st->sigs, &sig) != 0 || sig == SIGUSR1)
		return NULL;
	atomic_store(&st->signo, sig);
	log_warnx("%s: stopping the run", sig == SIGTERM ? "SIGTERM" :
	    "SIGINT");
	/* Again and again: a thread may start a statement just after it
	 * looked at the flag. */
	for (;;) {
		pthread_mutex_lock(&st->mu);
		quiet = st->quiet;
		for (i = 0; i < st->ncancel && !quiet; i++)
			PQcancel(st->cancel[i], buf, sizeof(buf));
		pthread_mutex_unlock(&st->mu);
		if (quiet)
			return NULL;
		nanosleep(&pause, NULL);
	}
}

/*
 * SIGTERM and SIGINT are blocked in every thread of the process (the
 * writers inherit the mask) and taken by the stopper's sigwait; SIGUSR1
 * only ends the stopper when the run is over.
 */
static void
stopper_start(struct stopper *st)
{
	sigemptyset(&st->sigs);
	sigaddset(&st->sigs, SIGTERM);
	sigaddset(&st->sigs, SIGINT);
	sigaddset(&st->sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &st->sigs, NULL);
	pthread_mutex_init(&st->mu, NULL);
	if (pthread_create(&st->thread, NULL, stopper_main, st) != 0)
		fatal("pthread_create");
	st->started = 1;
}

static void
stopper_watch(struct stopper *st, PGconn *conn)
{
	pthread_mutex_lock(&st->mu);
	if (st->ncancel < NCANCEL)
		st->cancel[st->ncancel++] = PQgetCancel(conn);
	pthread_mutex_unlock(&st->mu);
}

/* From here on the run's own statements (closing its row) go through. */
static void
stopper_quiet(struct stopper *st)
{
	if (!st->started)
		return;
	pthread_mutex_lock(&st->mu);
	st->quiet = 1;
	pthread_mutex_unlock(&st->mu);
}

static void
stopper_end(struct stopper *st)
{
	int i;

	if (!st->started)
		return;
	stopper_quiet(st);
	pthread_kill(st->thread, SIGUSR1);
	pthread_join(st->thread, NULL);
	for (i = 0; i < st->ncancel; i++)
		PQfreeCancel(st->cancel[i]);
	pthread_mutex_destroy(&st->mu);
	st->started = 0;
}

static int
stopping(struct run *r)
{
	return atomic_load(&r->stop.signo) != 0;
}

/*
 * Whether the run may go on: not stopped by a signal, both locks still
 * held (a session lock lasts as long as its session: a lock session that
 * answers still holds it). 0, or -1 with err set. Called by the merge and
 * the mono writer, hence the mutex.
 */
static int
run_check(struct run *r, char *err, size_t errlen)
{
	PGconn *conns[2] = { r->mono_lock, r->micro_lock };
	const char *names[2] = { "postgresMono", "postgresMicro" };
	char e[512];
	PGresult *res;
	int i, rc = 0;

	if (stopping(r)) {
		snprintf(err, errlen, "stopped by %s", atomic_load(
		    &r->stop.signo) == SIGTERM ? "SIGTERM" : "SIGINT");
		return -1;
	}
	if (r->cli->dry_run)
		return 0;
	pthread_mutex_lock(&r->lock_mu);
	for (i = 0; i < 2 && rc == 0; i++) {
		res = PQexec(conns[i], "select 1");
		if (pg_ok(conns[i], res, PGRES_TUPLES_OK, "lock session", e,
		    sizeof(e)) == -1) {
			snprintf(err, errlen, "lost the lock of shard %d/%d on "
			    "%s, stopping: %s", r->cli->shard.k,
			    r->cli->shard.n, names[i], e);
			rc = -1;
		} else {
			PQclear(res);
		}
	}
	pthread_mutex_unlock(&r->lock_mu);
	return rc;
}

static int
mark_check(void *ctx, char *err, size_t errlen)
{
	return run_check(ctx, err, errlen);
}

static int
sink(void *ctx, const struct merge_row *mono, const struct merge_row *micro,
    const struct merge_open *open, const struct verdict *v)
{
	struct run *r = ctx;
	int rc = 0;

	(void)open;
	if (++r->rows_seen % LOCK_CHECK_ROWS == 0 &&
	    run_check(r, r->check_err, sizeof(r->check_err)) == -1)
		return -1;
	switch (v->kind) {
	case VERDICT_MATCH:
		if (v->ignored)
			r->c.ignored++;
		else
			r->c.matched++;
		rc = mark_match(r->mark, mono, micro, v->resolve_id);
		break;
	case VERDICT_CONTENT:
		rc = mark_mismatch(r->mark, KIND_CONTENT, v->fields, mono, micro,
		    v->resolve_id);
		break;
	case VERDICT_ONLY_MONO:
		rc = mark_candidate(r->mark, 1, mono);
		break;
	case VERDICT_ONLY_MICRO:
		rc = mark_candidate(r->mark, 0, micro);
		break;
	case VERDICT_SKIP_OPEN:
		r->c.skipped_open++;
		break;
	case VERDICT_NOTHING:
		break;
	}
	return rc == 0 ? 0 : 1;
}

/*
 * A writer's statements touch one batch of rows by key (the batch's ids,
 * and in the queue triggers of sql/mono.sql and micro.sql the same ids): a
 * few percent of the table at most. The planner, costing pages as if read
 * from disk, prefers a hash join over a scan of the whole table for each
 * batch (40 scans of a million rows for a million pairs); the tables are
 * read by key instead (DB_KEY_PLANS), which is what a batch of keys needs
 * whatever the sizes. The marks take their rows out of
 * reconcile_queue in the same statement, a set at a time, so the per-row
 * trigger of sql/mono.sql and micro.sql is told to stay out.
 */
static void
writer_plans(PGconn *conn)
{
	PQclear(PQexec(conn, DB_KEY_PLANS "; "
	    "SET reconcile_queue.caller_keeps = on"));
}

/*
 * Readers (and the lookups in micro): no plan they may choose can grow
 * faster than the rows a chunk returns, whatever the statistics say. The
 * mail streams (mail_stream) are written so that each queued id is looked
 * up in the mail table by its unique index: that part leaves the planner
 * no choice. What is left to choose is how to read the queue (or the open
 * mismatches) in key order from a bound up to a LIMIT: the index in
 * order, or a scan of everything after the bound that is then sorted,
 * once per chunk. The second is what statistics saying "empty" (a bulk
 * load since the last ANALYZE: pg_class says 0 rows) may make look as
 * cheap as the first, and it is quadratic in the number of chunks; so
 * sequential and bitmap scans, sorts and the hash, merge and materialised
 * joins are switched off (PostgreSQL then only takes them where nothing
 * else can run the query). JIT's compile time and parallel workers only
 * take cores.
 */
static void
reader_plans(PGconn *conn)
{
	PQclear(PQexec(conn, "SET enable_seqscan = off; "
	    "SET enable_bitmapscan = off; SET enable_sort = off; "
	    "SET enable_hashjoin = off; SET enable_mergejoin = off; "
	    "SET enable_material = off; SET jit = off; "
	    "SET max_parallel_workers_per_gather = 0"));
}

/*
 * A lock session only takes its lock and answers run_check's "select 1":
 * idle otherwise, its backend sees the end of the connection the moment
 * the run's process dies. The server's keepalives (seconds, not the
 * default two hours) also end it when the run's host vanishes without
 * closing anything.
 */
static PGconn *
lock_session(const char *url, const char *name, char *err, size_t errlen)
{
	PGconn *conn = pg_connect(url, name, err, errlen);

	if (conn != NULL)
		PQclear(PQexec(conn, "SET tcp_keepalives_idle = 10; "
		    "SET tcp_keepalives_interval = 5; "
		    "SET tcp_keepalives_count = 3"));
	return conn;
}

static int
connect_all(struct run *r)
{
	const struct cli *c = r->cli;

	if ((r->mono_w = pg_connect(c->mono_url, "postgresMono", r->err,
	    sizeof(r->err))) == NULL ||
	    (r->micro_w = pg_connect(c->micro_url, "postgresMicro", r->err,
	    sizeof(r->err))) == NULL)
		return -1;
	writer_plans(r->mono_w);
	writer_plans(r->micro_w);
	stopper_watch(&r->stop, r->mono_w);
	stopper_watch(&r->stop, r->micro_w);
	if (c->dry_run)
		return 0;
	if ((r->mono_lock = lock_session(c->mono_url, "postgresMono", r->err,
	    sizeof(r->err))) == NULL ||
	    (r->micro_lock = lock_session(c->micro_url, "postgresMicro",
	    r->err, sizeof(r->err))) == NULL)
		return -1;
	return 0;
}

/*
 * The streams read reconcile_queue (schema version 3): a database that
 * sql/mono.sql or sql/micro.sql of this version has not been loaded into gets a message saying so
 * rather than a relation error. 0, or -1 with r->err set.
 */
static int
check_schema(struct run *r)
{
	static const char *const files[2] = { "sql/mono.sql", "sql/micro.sql" };
	static const char *const names[2] = { "postgresMono", "postgresMicro" };
	PGconn *conns[2] = { r->mono_w, r->micro_w };
	PGresult *res;
	int i, ok;

	for (i = 0; i < 2; i++) {
		res = PQexec(conns[i], "select to_regclass('reconcile_queue') "
		    "is not null");
		if (pg_ok(conns[i], res, PGRES_TUPLES_OK, names[i], r->err,
		    sizeof(r->err)) == -1)
			return -1;
		ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (!ok) {
			snprintf(r->err, sizeof(r->err), "%s has no "
			    "reconcile_queue (schema version 3): load %s into "
			    "it first (it migrates in place)", names[i],
			    files[i]);
			return -1;
		}
	}
	return 0;
}

/* 0 locked, EXIT_LOCKED or EXIT_DB. */
static int
lock_both(struct run *r)
{
	int32_t key = shard_lock_key(&r->cli->shard);
	PGconn *conns[2] = { r->mono_lock, r->micro_lock };
	const char *names[2] = { "postgresMono", "postgresMicro" };
	int i, got;

	for (i = 0; i < 2; i++) {
		got = pg_try_lock(conns[i], SHARD_LOCK_CLASS, key, r->err,
		    sizeof(r->err));
		if (got == -1)
			return EXIT_DB;
		if (got == 0) {
			snprintf(r->err, sizeof(r->err), "another run holds the "
			    "lock of shard %d/%d on %s", r->cli->shard.k,
			    r->cli->shard.n, names[i]);
			return EXIT_LOCKED;
		}
	}
	return 0;
}

/*
 * Makes sure no writer of an earlier run of the shard is still at work on
 * one database, then makes this run's writer the one. A run that died may
 * leave its writer's backend executing a last statement for a moment (it
 * notices the lost client at its next check; a COMMIT already sent even
 * completes), and a commit landing after this run's streams took their
 * snapshots would show them half of it: a pair whose mono row is consumed
 * while its late mismatch still looks open is skipped rather than healed,
 * and the run would not leave the state an uninterrupted one leaves.
 *
 * Every writer session holds the shard's writer lock (SHARD_WRITER_CLASS)
 * for its run's life. Once the run lock is ours, a holder of the writer
 * lock can only be such a leftover: it is terminated (where this role may;
 * otherwise it is waited for) and this run's writer takes the lock as soon
 * as the leftover's backend is gone, before anything is read. 0,
 * EXIT_LOCKED (still there after FENCE_WAIT) or EXIT_DB.
 */
#define FENCE_WAIT "30s"

static int
fence(struct run *r, PGconn *lockc, PGconn *writer, const char *name)
{
	char k1[16], k2[16];
	const char *vals[2] = { k1, k2 };
	PGresult *res;
	char e[512];

	snprintf(k1, sizeof(k1), "%d", SHARD_WRITER_CLASS);
	snprintf(k2, sizeof(k2), "%d", (int)shard_lock_key(&r->cli->shard));
	PQclear(PQexecParams(lockc, "select pg_terminate_backend(pid) from "
	    "pg_locks where locktype = 'advisory' and granted and database = "
	    "(select oid from pg_database where datname = current_database()) "
	    "and classid = $1::int8::oid and objid = $2::int8::oid and "
	    "objsubid = 2 and pid <> pg_backend_pid()", 2, NULL, vals, NULL,
	    NULL, 0));
	if (pg_command(writer, "set lock_timeout = '" FENCE_WAIT "'", name, e,
	    sizeof(e)) == -1)
		goto fail;
	res = PQexecParams(writer, "select pg_advisory_lock($1::int4, "
	    "$2::int4)", 2, NULL, vals, NULL, NULL, 0);
	if (pg_ok(writer, res, PGRES_TUPLES_OK, name, e, sizeof(e)) == -1) {
		if (PQstatus(writer) == CONNECTION_OK) {
			snprintf(r->err, sizeof(r->err), "a session of an earlier "
			    "run of shard %d/%d on %s is still writing after "
			    FENCE_WAIT ": %s", r->cli->shard.k, r->cli->shard.n,
			    name, e);
			return EXIT_LOCKED;
		}
		goto fail;
	}
	PQclear(res);
	if (pg_command(writer, "set lock_timeout = 0", name, e,
	    sizeof(e)) == -1)
		goto fail;
	return 0;
fail:
	snprintf(r->err, sizeof(r->err), "%s", e);
	return EXIT_DB;
}

static int
fence_both(struct run *r)
{
	int rc;

	if ((rc = fence(r, r->mono_lock, r->mono_w, "postgresMono")) != 0)
		return rc;
	return fence(r, r->micro_lock, r->micro_w, "postgresMicro");
}

/*
 * Unconsumed rows older than the cutoff, found through reconcile_queue: the
 * queue in key order, and for each queued id its row, looked up by the
 * unique index of correlation_id (a LATERAL subquery that OFFSET 0 keeps
 * from being flattened into a join, so each lookup is one index probe
 * whatever the statistics say). As a join, statistics saying both tables
 * were empty made the planner rescan one side for every row of the other:
 * 100,000 rows took minutes instead of seconds.
 */
static struct copy_stream *
mail_stream(struct run *r, PGconn *conn, const char *name, const char *table,
    const char *shard)
{
	struct copy_stream *cs;
	char *sql;

	sql = xasprintf("select q.correlation_id, m.destination, m.subject, "
	    "m.body, m.ctid from reconcile_queue q cross join lateral (select "
	    "destination, subject, body, ctid from %s m where "
	    "m.correlation_id = q.correlation_id and m.consumed_at is null "
	    "and m.created_at <= to_timestamp(%s) offset 0) m where true%s",
	    table, r->cutoff, shard);
	cs = copy_stream_open(conn, name, sql, "q.correlation_id",
	    r->read_chunk, 5, r->err, sizeof(r->err));
	free(sql);
	return cs;
}

static int
open_streams(struct run *r)
{
	const struct cli *c = r->cli;
	char *sh = shard_sql(&c->shard, "correlation_id"), *sql;
	char *shq = shard_sql(&c->shard, "q.correlation_id");
	int rc = -1;

	if ((r->mono_r = pg_connect(c->mono_url, "postgresMono", r->err,
	    sizeof(r->err))) == NULL ||
	    (r->micro_r = pg_connect(c->micro_url, "postgresMicro", r->err,
	    sizeof(r->err))) == NULL ||
	    (r->open_r = pg_connect(c->mono_url, "postgresMono", r->err,
	    sizeof(r->err))) == NULL ||
	    (r->micro_lk = pg_connect(c->micro_url, "postgresMicro", r->err,
	    sizeof(r->err))) == NULL)
		goto out;
	reader_plans(r->mono_r);
	reader_plans(r->micro_r);
	reader_plans(r->open_r);
	reader_plans(r->micro_lk);
	stopper_watch(&r->stop, r->mono_r);
	stopper_watch(&r->stop, r->micro_r);
	stopper_watch(&r->stop, r->open_r);
	stopper_watch(&r->stop, r->micro_lk);
	if ((r->s_mono = mail_stream(r, r->mono_r, "postgresMono", "sent_mail",
	    shq)) == NULL ||
	    (r->s_micro = mail_stream(r, r->micro_r, "postgresMicro",
	    "spied_mail", shq)) == NULL)
		goto out;
	sql = xasprintf("select correlation_id, id, kind from "
	    "reconciliation_mismatch where resolved_at is null%s", sh);
	r->s_open = copy_stream_open(r->open_r, "postgresMono (open "
	    "mismatches)", sql, "correlation_id", r->read_chunk, 3, r->err,
	    sizeof(r->err));
	free(sql);
	if (r->s_open == NULL)
		goto out;
	rc = 0;
out:
	free(sh);
	free(shq);
	return rc;
}

static void
close_all(struct run *r)
{
	copy_stream_free(r->s_mono);
	copy_stream_free(r->s_micro);
	copy_stream_free(r->s_open);
	PQfinish(r->mono_r);
	PQfinish(r->micro_r);
	PQfinish(r->open_r);
	PQfinish(r->mono_w);
	PQfinish(r->micro_w);
	PQfinish(r->micro_lk);
	/* Last: the locks are held until everything else is closed. */
	PQfinish(r->mono_lock);
	PQfinish(r->micro_lock);
	if (r->spool != NULL)
		fclose(r->spool);
	free(r->hits);
}

/* The first stream error, for the message of a failed merge. */
static const char *
stream_error(struct run *r)
{
	struct copy_stream *s[3] = { r->s_mono, r->s_micro, r->s_open };
	int i;

	for (i = 0; i < 3; i++)
		if (s[i] != NULL && copy_stream_error(s[i])[0])
			return copy_stream_error(s[i]);
	return NULL;
}

static int
print_report(struct run *r, int new_mismatches)
{
	const struct cli *c = r->cli;
	struct run_summary s;
	struct mismatch_iter it = { 0 };
	struct cluster_list cl = { 0 };
	char err[512];
	int rc;

	if (c->quiet && new_mismatches == 0)
		return 0;
	memset(&s, 0, sizeof(s));
	if (c->dry_run) {
		s.dry_run = 1;
		s.grace = c->grace;
		s.shard_k = c->shard.k;
		s.shard_n = c->shard.n;
		s.c = r->c;
		s.nrules = rules_count(r->rules);
		s.rules = xcalloc(s.nrules + 1, sizeof(*s.rules));
		for (size_t i = 0; i < s.nrules; i++) {
			s.rules[i].name = xstrdup(rules_name(r->rules, i));
			s.rules[i].count = (int64_t)r->hits[i];
		}
		s.rules_file = c->rules_file ? xstrdup(c->rules_file) : NULL;
		/* Its mismatches are not stored: clusters from the spool. */
		spool_iter_init(&it, r->spool);
		rc = cluster_list_of(&it, REPORT_CLUSTERS, &cl);
		spool_iter_free(&it);
		spool_iter_init(&it, r->spool);
		it.clusters = rc == 0 ? &cl : NULL;
		rc = report_write(stdout, c->format, &s, &it, err, sizeof(err));
		spool_iter_free(&it);
	} else {
		if (runstore_load(r->mono_w, r->run_id, &s, err, sizeof(err)) != 1)
			goto fail;
		if (clusterstore_list(r->mono_w, CLUSTERS_RUN, r->run_id,
		    REPORT_CLUSTERS, &cl, err, sizeof(err)) == -1)
			goto fail;
		if (runstore_mismatches(r->mono_w, RUNSTORE_RUN, r->run_id, &it,
		    err, sizeof(err)) == -1)
			goto fail;
		it.clusters = &cl;
		rc = report_write(stdout, c->format, &s, &it, err, sizeof(err));
		if (rc == -1 && runstore_iter_error(&it)[0])
			snprintf(err, sizeof(err), "%s", runstore_iter_error(&it));
		runstore_iter_free(&it);
	}
	run_summary_clear(&s);
	cluster_list_clear(&cl);
	if (rc == -1)
		log_error("report: %s", err);
	return rc;
fail:
	run_summary_clear(&s);
	cluster_list_clear(&cl);
	log_error("report: %s", err);
	return -1;
}

/* Why a run that did not finish failed, into r->err; its status. */
static const char *
failure(struct run *r, int writer_failed, const char *merr)
{
	if (stopping(r)) {
		snprintf(r->err, sizeof(r->err), "stopped by %s",
		    atomic_load(&r->stop.signo) == SIGTERM ? "SIGTERM" :
		    "SIGINT");
		return "aborted";
	}
	if (writer_failed)
		return "failed";	/* r->err has the writer's error */
	if (r->check_err[0])
		snprintf(r->err, sizeof(r->err), "%s", r->check_err);
	else if (stream_error(r) != NULL)
		snprintf(r->err, sizeof(r->err), "%s", stream_error(r));
	else if (merr != NULL && merr[0])
		snprintf(r->err, sizeof(r->err), "%s", merr);
	return "failed";
}

int
run_reconcile(const struct cli *c, const struct rules *rules)
{
	struct run r;
	struct mark_config mc;
	struct merge_rows mono = { mono_next, &r }, micro = { micro_next, &r };
	struct merge_opens open = { open_next, &r };
	char merr[512] = "", idbuf[32];
	const char *status = "failed";
	uint64_t t0 = now_ns(), t1;
	int rc, code = EXIT_DB, wfail = 0;

	memset(&r, 0, sizeof(r));
	r.cli = c;
	r.read_chunk = (size_t)c->knobs.read_chunk;
	r.rules = rules;
	r.hits = xcalloc(rules_count(rules) + 1, sizeof(*r.hits));
	pthread_mutex_init(&r.lock_mu, NULL);
	stopper_start(&r.stop);
	if (connect_all(&r) == -1 || check_schema(&r) == -1)
		goto out;
	if (!c->dry_run && ((code = lock_both(&r)) != 0 ||
	    (code = fence_both(&r)) != 0)) {
		if (stopping(&r))
			code = EXIT_DB;	/* the signal cut the wait */
		goto out;
	}
	code = EXIT_DB;
	if (runstore_cutoff(r.mono_w, c->grace, r.cutoff, sizeof(r.cutoff),
	    r.err, sizeof(r.err)) == -1)
		goto out;
	if (!c->dry_run) {
		if (runstore_begin(r.mono_w, &c->shard, c->grace, r.cutoff,
		    c->rules_file, &r.run_id, r.err, sizeof(r.err)) == -1)
			goto out;
		snprintf(idbuf, sizeof(idbuf), "run-%lld", (long long)r.run_id);
		log_set_id(idbuf);
	} else if ((r.spool = tmpfile()) == NULL) {
		snprintf(r.err, sizeof(r.err), "dry run: no temporary file");
		code = EXIT_USAGE;
		goto out;
	}
	if (open_streams(&r) == -1 || run_check(&r, r.check_err,
	    sizeof(r.check_err)) == -1)
		goto fail_run;

	memset(&mc, 0, sizeof(mc));
	mc.mono = r.mono_w;
	mc.micro = r.micro_w;
	mc.micro_lookup = r.micro_lk;
	mc.run_id = r.run_id;
	mc.dry_run = c->dry_run;
	mc.spool = r.spool;
	mc.rules = rules;
	mc.check = mark_check;
	mc.check_ctx = &r;
	mc.batch_rows = (size_t)c->knobs.batch_rows;
	mc.crash_batch = c->knobs.crash_batch;
	mc.crash_stage = c->knobs.crash_stage;
	mc.spill_all = c->knobs.spill_all;
	mc.overlap = c->knobs.overlap;
	r.mark = mark_start(&mc);
	rc = merge_run(&mono, &micro, &open, rules, r.hits, sink, &r, merr,
	    sizeof(merr));
	if (rc != 0) {
		/* Stop the writer first: its error, if any, is the cause. */
		wfail = mark_finish(r.mark, 0, &r.c, r.hits, r.err,
		    sizeof(r.err)) == -1;
		r.mark = NULL;
		goto fail_run;
	}
	log_debug("streams read in %.3fs", (double)(now_ns() - t0) / 1e9);
	wfail = mark_finish(r.mark, 1, &r.c, r.hits, r.err, sizeof(r.err)) == -1;
	r.mark = NULL;
	if (wfail)
		goto fail_run;
	r.c.mono_rows = copy_stream_rows(r.s_mono);
	r.c.micro_rows = copy_stream_rows(r.s_micro);
	/* Every mismatch without a cluster gets one (this run's, and any a
	 * killed run left), before the run counts as done. A stop signal
	 * still cancels it: the marks are committed, and the next run
	 * clusters what this one did not. */
	t1 = now_ns();
	if (!c->dry_run && clusterstore_assign(r.mono_w, r.err,
	    sizeof(r.err)) == -1) {
		wfail = 1;	/* r.err says why */
		goto fail_run;
	}
	log_info("clustering took %.3fs", (double)(now_ns() - t1) / 1e9);
	/* From here on a stop signal lets the run close as done; one that
	 * came before this point makes it aborted (exit 3). */
	stopper_quiet(&r.stop);
	if (stopping(&r))
		goto fail_run;
	if (!c->dry_run && runstore_finish(r.mono_w, r.run_id, "done", &r.c,
	    rules, r.hits, NULL, r.err, sizeof(r.err)) == -1)
		goto out;
	log_info("%s: %lld mono and %lld micro rows, %lld matched, %lld "
	    "ignored, %lld healed, %lld late, %lld new mismatches in %.2fs",
	    c->dry_run ? "dry run" : "run", (long long)r.c.mono_rows,
	    (long long)r.c.micro_rows, (long long)r.c.matched,
	    (long long)r.c.ignored, (long long)r.c.healed, (long long)r.c.late,
	    (long long)r.c.new_mismatches, (double)(now_ns() - t0) / 1e9);
	code = r.c.new_mismatches > 0 ? EXIT_MISMATCH : EXIT_CLEAN;
	if (print_report(&r, r.c.new_mismatches > 0) == -1)
		code = EXIT_DB;
	goto done;

fail_run:
	status = failure(&r, wfail, merr);
	stopper_quiet(&r.stop);
	if (!c->dry_run && r.run_id > 0 && PQstatus(r.mono_w) == CONNECTION_OK) {
		char e2[256];
		PGresult *res = PQexec(r.mono_w, "rollback");
		PQclear(res);
		runstore_finish(r.mono_w, r.run_id, status, &r.c, rules, r.hits,
		    r.err, e2, sizeof(e2));
	}
out:
	if (code != EXIT_LOCKED && stopping(&r) && strcmp(status, "aborted"))
		(void)failure(&r, 0, NULL);
	if (code == EXIT_LOCKED)
		log_warnx("%s", r.err);
	else
		log_error("%s", r.err);
done:
	stopper_end(&r.stop);
	close_all(&r);
	pthread_mutex_destroy(&r.lock_mu);
	return code;
}
