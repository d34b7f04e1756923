/*
 * mark: see mark.h. Four batches circulate: the merge fills one, hands it
 * to the mono writer (queue to_mono), which after its commit hands it to
 * the micro writer (queue to_micro), which returns it to the free list.
 * A batch reaches the micro writer only after its mono transaction
 * committed; that order is what makes a kill harmless. Memory is bounded by
 * the batch size, not by the tables.
 *
 * Reads first, then marks: the merge appends each full batch to a spill
 * file (an unlinked temporary file) and the writers start once the merge
 * is done, the mono writer reading the batches back in order. As long as
 * a read snapshot is open, no row version the marks leave behind can be
 * pruned, and without pruning a consume cannot stay on its packed page
 * (HOT) and must add an entry to every index instead; readers running
 * beside the writers also prune pages over and over and compete for the
 * same cores. The spill holds what the batches hold (16 bytes a matched
 * pair, the rows of mismatches and candidates): disk, not memory, gone
 * when the run ends. With overlap (RECONCILER_OVERLAP=1) the writers start
 * at once and take batches in memory, the spill file taking only those the
 * merge cannot hand over, so the merge still never waits.
 */
#include "reconciler/mark.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/util.h"
#include "reconciler/batch.h"
#include "reconciler/pageorder.h"
#include "reconciler/pg.h"
#include "reconciler/spill.h"
#include "reconciler/spool.h"

#define NBATCH 4
/* Copied row data per batch. The plain matches go to the page order, so
 * a batch fills with mismatches and candidates only, up to this: with
 * four batches, their read-back copy and the statements' arrays, 8 MiB
 * made a 10M-pair run (100,165 mismatches) peak at 62.2 MiB, and 2 MiB
 * made a 1M-pair run peak at 21.5 MiB against 13.8 at 100k. A batch held
 * about 250 mismatches (25,000 pairs, 1% of them), 100 KiB, when the
 * matches still filled it. */
#define BATCH_BYTES (256u << 10)
#define RAMP_BATCHES 3		/* smaller batches first: batch_limit */

struct bqueue {
	struct batch *v[NBATCH];
	size_t head, len;
};

struct mark {
	struct mark_config cfg;
	pthread_t mono_thread, micro_thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct batch pool[NBATCH];
	struct bqueue to_mono, to_micro;
	struct batch *free_[NBATCH];
	size_t nfree;
	struct batch *cur;	/* filled by the merge thread */
	/* Spill file: batches the merge wrote and the mono writer has not
	 * read back yet are spilled - unspilled. */
	struct spill spill;
	long spilled, unspilled;
	int spill_all;		/* testing: every batch goes through it */
	int overlap;		/* writers start before the reads end */
	int closing;		/* the merge is done: no more batches */
	int discard;		/* the run failed: write nothing more */
	int mono_done;		/* the mono writer has written every batch */
	int failed;
	long seq;
	char err[512];		/* the first failure */
	char err_mono[512], err_micro[512];	/* each thread's own */
	/* Results, written by the mono writer only. */
	struct run_counts c;
	uint64_t *hits;
	/* Parameter buffers: a_ids_micro is the micro writer's, the rest the
	 * mono writer's. */
	struct pg_array a_ids, a_ids_micro, a_kind, a_fields, a_vals[6], a_i64;
	/* The plain matched pairs (no mismatch to resolve): not in the
	 * batches, consumed in each table's page order once the merge is
	 * done (pages_phase); [0] mono, [1] micro. */
	struct pageorder *pages[2];
	unsigned char (*page_ids[2])[16];
};

static void
own_from_owned(struct owned *dst, const struct owned *src)
{
	struct merge_row r;
	int f;

	memcpy(r.cid, src->cid, 16);
	for (f = 0; f < FIELD_COUNT; f++) {
		r.mail.v[f] = src->v[f];
		r.mail.len[f] = src->len[f];
	}
	batch_own(dst, &r);
}

static void
owned_mail(const struct owned *o, struct mail *m)
{
	int f;

	for (f = 0; f < FIELD_COUNT; f++) {
		m->v[f] = o->v[f];
		m->len[f] = o->len[f];
	}
}

static int64_t *
kind_count(struct run_counts *c, enum mismatch_kind k)
{
	switch (k) {
	case KIND_CONTENT:
		return &c->content;
	case KIND_MISSING_IN_MICRO:
		return &c->missing_in_micro;
	default:
		return &c->missing_in_mono;
	}
}

#ifdef RECONCILER_TEST_HOOKS
/* The test build only (reconciler/build.mk): die like a SIGKILL would,
 * flushing nothing, at the batch and stage RECONCILER_CRASH_AT names. */
static void
crash_point(struct mark *m, long seq, char stage)
{
	if (m->cfg.crash_batch == seq && m->cfg.crash_stage == stage)
		_exit(99);
}
#else
#define crash_point(m, seq, stage) ((void)0)
#endif

/* Keeps a writer thread's error for set_failed; always -1. */
static int
fail(struct mark *m, int micro, const char *msg)
{
	strlcpy_(micro ? m->err_micro : m->err_mono, msg, sizeof(m->err_mono));
	return -1;
}

/*
 * Looks the candidates of one side up in the other database and sorts
 * them into missing, healed, content mismatches and deferred.
 */
static int
lookup(struct mark *m, struct batch *b, int cands_are_mono)
{
	static const char *sql_fmt = "select correlation_id, destination, "
	    "subject, body, consumed_at is not null from %s "
	    "where correlation_id = any($1::uuid[]) order by correlation_id";
	struct owned *cands = cands_are_mono ? b->cand_mono.v : b->cand_micro.v;
	size_t ncand = cands_are_mono ? b->cand_mono.n : b->cand_micro.n;
	PGconn *conn = cands_are_mono ? m->cfg.micro_lookup : m->cfg.mono;
	const char *what = cands_are_mono ? "postgresMicro lookup" :
	    "postgresMono lookup";
	char *sql = NULL, err[512];
	const char *vals[1];
	int lens[1], fmts[1] = { 1 }, nres, r = 0, f;
	PGresult *res;
	size_t i;

	if (ncand == 0)
		return 0;
	pg_array_reset(&m->a_ids);
	for (i = 0; i < ncand; i++)
		pg_array_add(&m->a_ids, cands[i].cid, 16);
	vals[0] = pg_array_value(&m->a_ids, &lens[0]);
	sql = xasprintf(sql_fmt, cands_are_mono ? "spied_mail" : "sent_mail");
	res = PQexecParams(conn, sql, 1, NULL, vals, lens, fmts, 1);
	free(sql);
	if (pg_ok(conn, res, PGRES_TUPLES_OK, what, err, sizeof(err)) == -1)
		return fail(m, 0, err);
	nres = PQntuples(res);
	for (i = 0; i < ncand; i++) {
		struct owned *c = &cands[i];
		struct mail a, pm;
		struct pend *p;
		unsigned mask;
		int absorbed;

		while (r < nres && memcmp(PQgetvalue(res, r, 0), c->cid, 16) < 0)
			r++;
		if (r >= nres || PQgetlength(res, r, 0) != 16 ||
		    memcmp(PQgetvalue(res, r, 0), c->cid, 16) != 0) {
			p = BATCH_PUSH(b->mms);
			memset(p, 0, sizeof(*p));
			memcpy(p->cid, c->cid, 16);
			p->kind = cands_are_mono ? KIND_MISSING_IN_MICRO :
			    KIND_MISSING_IN_MONO;
			own_from_owned(cands_are_mono ? &p->mono : &p->micro, c);
			continue;
		}
		if (PQgetvalue(res, r, 4)[0] == 0) {
			/* Unconsumed partner the streams did not show: it is
			 * younger than the cutoff or arrived meanwhile. */
			m->c.deferred++;
			continue;
		}
		owned_mail(c, &a);
		for (f = 0; f < FIELD_COUNT; f++) {
			pm.v[f] = PQgetvalue(res, r, 1 + f);
			pm.len[f] = (size_t)PQgetlength(res, r, 1 + f);
		}
		mask = cands_are_mono ?
		    rules_compare(m->cfg.rules, &a, &pm, m->hits, &absorbed) :
		    rules_compare(m->cfg.rules, &pm, &a, m->hits, &absorbed);
		if (mask == 0) {
			if (cands_are_mono)
				memcpy(*BATCH_PUSH(b->heal_mono), c->cid, 16);
			else
				memcpy(*BATCH_PUSH(b->heal_micro), c->cid, 16);
			m->c.healed++;
			continue;
		}
		p = BATCH_PUSH(b->mms);
		memset(p, 0, sizeof(*p));
		memcpy(p->cid, c->cid, 16);
		p->kind = KIND_CONTENT;
		p->fields = mask;
		{
			struct merge_row pr;
			memcpy(pr.cid, c->cid, 16);
			pr.mail = pm;
			batch_own(cands_are_mono ? &p->micro : &p->mono, &pr);
		}
		own_from_owned(cands_are_mono ? &p->mono : &p->micro, c);
	}
	PQclear(res);
	return 0;
}

static int
spool_batch(struct mark *m, struct batch *b)
{
	struct mismatch mm;
	char cid[IDS_UUID_LEN + 1], fields[64], now[32];
	time_t t = time(NULL);
	struct tm tm;
	size_t i;
	int f, rc = 0;

	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%d %H:%M:%S+00", &tm);
	for (i = 0; i < b->mms.n && rc == 0; i++) {
		struct pend *p = &b->mms.v[i];
		memset(&mm, 0, sizeof(mm));
		ids_uuid_text(p->cid, cid);
		mm.cid = cid;
		mm.kind = (char *)mismatch_kind_names[p->kind];
		mm.fields = (char *)rules_fields_text(p->fields, fields,
		    sizeof(fields));
		mm.found_at = now;
		for (f = 0; f < FIELD_COUNT; f++) {
			mm.mono[f] = p->mono.v[0] ? p->mono.v[f] : NULL;
			mm.micro[f] = p->micro.v[0] ? p->micro.v[f] : NULL;
		}
		rc = spool_write(m->cfg.spool, &mm);
		(*kind_count(&m->c, p->kind))++;
		m->c.new_mismatches++;
	}
	m->c.late += (int64_t)b->resolve.n;
	return rc == 0 ? 0 : fail(m, 0, "dry run: writing the spool file failed");
}

static int
exec_params(struct mark *m, PGconn *conn, const char *sql, int n,
    const char *const *vals, const int *lens, const int *fmts,
    ExecStatusType want, const char *what, PGresult **out)
{
	char err[512];
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, lens, fmts, 0);

	if (pg_ok(conn, res, want, what, err, sizeof(err)) == -1)
		return fail(m, conn == m->cfg.micro, err);
	if (out != NULL)
		*out = res;
	else
		PQclear(res);
	return 0;
}

/* Consumes the rows whose ids are in the writer's array (a_ids for mono,
 * a_ids_micro for micro). */
static int
consume_ids(struct mark *m, PGconn *conn, const char *table, int mono,
    const char *what)
{
	struct pg_array *a = mono ? &m->a_ids : &m->a_ids_micro;
	char run[24], *sql;
	const char *vals[2];
	int lens[2] = { 0, 0 }, fmts[2] = { 0, 1 }, rc;

	snprintf(run, sizeof(run), "%lld", (long long)m->cfg.run_id);
	vals[0] = run;
	vals[1] = pg_array_value(a, &lens[1]);
	/*
	 * The writer's session keeps reconcile_queue itself (run.c,
	 * writer_plans): the consumed rows leave it in the same statement.
	 * No joins: each side is an index scan for an array of keys. As a
	 * join ("delete ... using c"), statistics older than a bulk load made
	 * the planner rescan the whole CTE for every queued row: one batch of
	 * 25,000 against 60,000 queued rows ran over a minute.
	 */
	sql = xasprintf("with c as (update %s set consumed_at = now(), "
	    "consumed_by = $1 where correlation_id = any ($2::uuid[]) and "
	    "consumed_at is null returning correlation_id) delete from "
	    "reconcile_queue where correlation_id = any (array(select "
	    "correlation_id from c))", table);
	rc = exec_params(m, conn, sql, 2, vals, lens, fmts, PGRES_COMMAND_OK,
	    what, NULL);
	free(sql);
	return rc;
}

static int
consume(struct mark *m, PGconn *conn, const char *table,
    const struct batch *b, int mono, const char *what)
{
	struct pg_array *a = mono ? &m->a_ids : &m->a_ids_micro;
	const struct idvec *heal = mono ? &b->heal_mono : &b->heal_micro;
	size_t i;

	if (b->both.n == 0 && heal->n == 0)
		return 0;
	pg_array_reset(a);
	for (i = 0; i < b->both.n; i++)
		pg_array_add(a, b->both.v[i], 16);
	for (i = 0; i < heal->n; i++)
		pg_array_add(a, heal->v[i], 16);
	return consume_ids(m, conn, table, mono, what);
}

static int
record_mismatches(struct mark *m, const struct batch *b)
{
	static const char *sql = "insert into reconciliation_mismatch "
	    "(run_id, correlation_id, kind, fields, mono_destination, "
	    "mono_subject, mono_body, micro_destination, micro_subject, "
	    "micro_body) select $1::int8, c, k, string_to_array(f, ','), "
	    "md, ms, mb, xd, xs, xb from unnest($2::uuid[], $3::text[], "
	    "$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], "
	    "$9::text[], $10::text[]) as t(c, k, f, md, ms, mb, xd, xs, xb) "
	    "on conflict (correlation_id) where resolved_at is null do nothing "
	    "returning kind";
	const char *vals[10];
	int lens[10], fmts[10], i, f;
	char run[24], fields[64];
	PGresult *res = NULL;
	size_t k;

	if (b->mms.n == 0)
		return 0;
	pg_array_reset(&m->a_ids);
	pg_array_reset(&m->a_kind);
	pg_array_reset(&m->a_fields);
	for (i = 0; i < 6; i++)
		pg_array_reset(&m->a_vals[i]);
	for (k = 0; k < b->mms.n; k++) {
		const struct pend *p = &b->mms.v[k];
		const char *kn = mismatch_kind_names[p->kind];
		pg_array_add(&m->a_ids, p->cid, 16);
		pg_array_add(&m->a_kind, kn, (int)strlen(kn));
		rules_fields_text(p->fields, fields, sizeof(fields));
		pg_array_add(&m->a_fields, fields, (int)strlen(fields));
		for (f = 0; f < FIELD_COUNT; f++) {
			pg_array_add(&m->a_vals[f], p->mono.v[0] ? p->mono.v[f] :
			    NULL, p->mono.v[0] ? (int)p->mono.len[f] : -1);
			pg_array_add(&m->a_vals[3 + f], p->micro.v[0] ?
			    p->micro.v[f] : NULL, p->micro.v[0] ?
			    (int)p->micro.len[f] : -1);
		}
	}
	snprintf(run, sizeof(run), "%lld", (long long)m->cfg.run_id);
	vals[0] = run;
	lens[0] = 0;
	fmts[0] = 0;
	vals[1] = pg_array_value(&m->a_ids, &lens[1]);
	vals[2] = pg_array_value(&m->a_kind, &lens[2]);
	vals[3] = pg_array_value(&m->a_fields, &lens[3]);
	for (i = 0; i < 6; i++)
		vals[4 + i] = pg_array_value(&m->a_vals[i], &lens[4 + i]);
	for (i = 1; i < 10; i++)
		fmts[i] = 1;
	if (exec_params(m, m->cfg.mono, sql, 10, vals, lens, fmts,
	    PGRES_TUPLES_OK, "recording mismatches in postgresMono", &res) == -1)
		return -1;
	for (i = 0; i < PQntuples(res); i++) {
		const char *kn = PQgetvalue(res, i, 0);
		enum mismatch_kind kind = mismatch_kind_parse(kn, strlen(kn));
		if (kind < KIND_COUNT)
			(*kind_count(&m->c, kind))++;
		m->c.new_mismatches++;
	}
	PQclear(res);
	return 0;
}

static int
resolve_late(struct mark *m, const struct batch *b)
{
	static const char *sql = "update reconciliation_mismatch set "
	    "resolved_at = now(), resolved_by = $1, resolution = 'late' "
	    "where id = any($2::int8[]) and resolved_at is null";
	const char *vals[2];
	int lens[2] = { 0, 0 }, fmts[2] = { 0, 1 };
	char run[24];
	PGresult *res = NULL;
	size_t i;

	if (b->resolve.n == 0)
		return 0;
	pg_array_reset(&m->a_i64);
	for (i = 0; i < b->resolve.n; i++) {
		unsigned char be[8];
		uint64_t v = (uint64_t)b->resolve.v[i];
		int k;
		for (k = 7; k >= 0; k--, v >>= 8)
			be[k] = (unsigned char)v;
		pg_array_add(&m->a_i64, be, 8);
	}
	snprintf(run, sizeof(run), "%lld", (long long)m->cfg.run_id);
	vals[0] = run;
	vals[1] = pg_array_value(&m->a_i64, &lens[1]);
	if (exec_params(m, m->cfg.mono, sql, 2, vals, lens, fmts,
	    PGRES_COMMAND_OK, "resolving late mismatches in postgresMono",
	    &res) == -1)
		return -1;
	m->c.late += strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

/* The mono half of a batch: lookups, then one transaction. */
static int
write_mono(struct mark *m, struct batch *b)
{
	char err[512];
	uint64_t t0 = now_ns();

	if (m->cfg.check != NULL && m->cfg.check(m->cfg.check_ctx, err,
	    sizeof(err)) == -1)
		return fail(m, 0, err);
	if (lookup(m, b, 1) == -1 || lookup(m, b, 0) == -1)
		return -1;
	if (m->cfg.dry_run)
		return spool_batch(m, b);
	crash_point(m, b->seq, 'a');
	if (pg_command(m->cfg.mono, "begin", "postgresMono", err,
	    sizeof(err)) == -1)
		return fail(m, 0, err);
	/* Resolve before recording: a late pair that now differs closes
	 * its "missing" mismatch and opens a content one. */
	if (resolve_late(m, b) == -1 || record_mismatches(m, b) == -1 ||
	    consume(m, m->cfg.mono, "sent_mail", b, 1,
	    "consuming rows in postgresMono") == -1)
		return -1;
	if (pg_command(m->cfg.mono, "commit", "postgresMono commit", err,
	    sizeof(err)) == -1)
		return fail(m, 0, err);
	crash_point(m, b->seq, 'b');
	log_debug("batch %ld mono: %zu pairs, %zu+%zu candidates, %zu "
	    "mismatches in %.3fs", b->seq, b->both.n, b->cand_mono.n,
	    b->cand_micro.n, b->mms.n, (double)(now_ns() - t0) / 1e9);
	return 0;
}

/* The micro half, once the mono half has committed. */
static int
write_micro(struct mark *m, struct batch *b)
{
	uint64_t t0 = now_ns();

	if (consume(m, m->cfg.micro, "spied_mail", b, 0,
	    "consuming rows in postgresMicro") == -1)
		return -1;
	crash_point(m, b->seq, 'c');
	log_debug("batch %ld micro: %zu rows in %.3fs", b->seq,
	    b->both.n + b->heal_micro.n, (double)(now_ns() - t0) / 1e9);
	return 0;
}

/*
 * One side's plain matched pairs, in its table's page order (pageorder.h
 * says why), a batch per statement (autocommit). The two sides run at
 * once, each on its own server: a pair consumed on one side only when a
 * run dies is healed by the next run's lookups, whichever side it is. The
 * batches are numbered on from the merge's for the crash hook: stages a
 * and b around each mono batch, c after each micro one.
 */
static int
pages_phase(struct mark *m, int mono)
{
	int side = mono ? 0 : 1;
	struct pageorder *po = m->pages[side];
	struct pg_array *a = mono ? &m->a_ids : &m->a_ids_micro;
	PGconn *conn = mono ? m->cfg.mono : m->cfg.micro;
	const char *table = mono ? "sent_mail" : "spied_mail";
	const char *what = mono ? "consuming rows in postgresMono" :
	    "consuming rows in postgresMicro";
	unsigned char (*ids)[16];
	char err[512];
	uint64_t t0 = now_ns();
	long seq, nb = 0;
	size_t n, i;
	int got, stop, rc = -1;

	if (pageorder_count(po) == 0)
		return 0;
	if (m->page_ids[side] == NULL)
		m->page_ids[side] = xmalloc(m->cfg.batch_rows * 16);
	ids = m->page_ids[side];
	pthread_mutex_lock(&m->mu);
	seq = m->seq;
	pthread_mutex_unlock(&m->mu);
	/* A commit here need not wait for the disk: a batch a server crash
	 * undoes is only rows left unconsumed, which the next run matches
	 * and consumes again. The mismatches and the run's row are written
	 * by other statements, durably. */
	if (pg_command(conn, "set synchronous_commit = off", what, err,
	    sizeof(err)) == -1)
		return fail(m, !mono, err);
	for (;;) {
		pthread_mutex_lock(&m->mu);
		stop = m->failed || m->discard;
		pthread_mutex_unlock(&m->mu);
		if (stop)
			break;
		if ((got = pageorder_next(po, ids, m->cfg.batch_rows, &n, err,
		    sizeof(err))) == 0)
			break;
		if (got == -1 || (m->cfg.check != NULL &&
		    m->cfg.check(m->cfg.check_ctx, err, sizeof(err)) == -1)) {
			fail(m, !mono, err);
			goto out;
		}
		seq++;
		nb++;
		if (mono)
			crash_point(m, seq, 'a');
		pg_array_reset(a);
		for (i = 0; i < n; i++)
			pg_array_add(a, ids[i], 16);
		if (consume_ids(m, conn, table, mono, what) == -1)
			goto out;
		crash_point(m, seq, mono ? 'b' : 'c');
	}
	if (!stop)
		log_info("%s: %lld matched rows consumed in page order, %ld "
		    "batches, %.2fs", table, pageorder_count(po), nb,
		    (double)(now_ns() - t0) / 1e9);
	rc = 0;
out:
	/* The session goes on writing (the run's row): durably again. */
	if (pg_command(conn, "reset synchronous_commit", what, err,
	    sizeof(err)) == -1 && rc == 0)
		rc = fail(m, !mono, err);
	return rc;
}

/* Queues between the merge and the two writer threads; all under m->mu. */
static void
q_push(struct bqueue *q, struct batch *b)
{
	q->v[(q->head + q->len) % NBATCH] = b;
	q->len++;
}

static struct batch *
q_pop(struct bqueue *q)
{
	struct batch *b = q->v[q->head];

	q->head = (q->head + 1) % NBATCH;
	q->len--;
	return b;
}

static void
set_failed(struct mark *m, const char *err)
{
	pthread_mutex_lock(&m->mu);
	if (!m->failed) {
		m->failed = 1;
		strlcpy_(m->err, err, sizeof(m->err));
	}
	pthread_mutex_unlock(&m->mu);
}

/*
 * Takes the next batch of q, or NULL once the merge is done and q is
 * drained (done_flag says when the producer has finished).
 */
static struct batch *
take(struct mark *m, struct bqueue *q, const int *done_flag, int *failed)
{
	struct batch *b = NULL;

	pthread_mutex_lock(&m->mu);
	while (q->len == 0 && !*done_flag)
		pthread_cond_wait(&m->cv, &m->mu);
	if (q->len > 0)
		b = q_pop(q);
	*failed = m->failed || m->discard;
	pthread_mutex_unlock(&m->mu);
	return b;
}

static void
recycle(struct mark *m, struct batch *b)
{
	batch_reset(b);
	pthread_mutex_lock(&m->mu);
	m->free_[m->nfree++] = b;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/*
 * The mono writer's next batch: from the queue, else the oldest spilled
 * one (into a free batch), else NULL once the merge is done.
 */
static struct batch *
take_mono(struct mark *m, int *failed)
{
	struct batch *b = NULL;
	int load = 0;

	pthread_mutex_lock(&m->mu);
	while (!m->overlap && !m->closing)
		pthread_cond_wait(&m->cv, &m->mu);
	for (;;) {
		if (m->to_mono.len > 0) {
			b = q_pop(&m->to_mono);
			break;
		}
		if (m->spilled > m->unspilled && m->nfree > 0) {
			b = m->free_[--m->nfree];
			load = 1;
			break;
		}
		if (m->spilled == m->unspilled && m->closing)
			break;
		pthread_cond_wait(&m->cv, &m->mu);
	}
	*failed = m->failed || m->discard;
	pthread_mutex_unlock(&m->mu);
	if (load && *failed) {
		/* Not worth reading back: it will not be written. */
		pthread_mutex_lock(&m->mu);
		m->unspilled++;
		spill_skip(&m->spill);
		pthread_mutex_unlock(&m->mu);
		load = 0;
	}
	if (load) {
		spill_read(&m->spill, b);
		pthread_mutex_lock(&m->mu);
		m->unspilled++;
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
	}
	return b;
}

/* Lookups, mismatches and mono rows; then hands the batch to micro_writer. */
static void *
mono_writer(void *arg)
{
	struct mark *m = arg;
	struct batch *b;
	int failed;

	while ((b = take_mono(m, &failed)) != NULL) {
		if (!failed && write_mono(m, b) == -1) {
			set_failed(m, m->err_mono);
			failed = 1;
		}
		if (failed || m->cfg.dry_run) {
			recycle(m, b);
			continue;
		}
		pthread_mutex_lock(&m->mu);
		q_push(&m->to_micro, b);
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
	}
	pthread_mutex_lock(&m->mu);
	m->mono_done = 1;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (!m->cfg.dry_run && pages_phase(m, 1) == -1)
		set_failed(m, m->err_mono);
	return NULL;
}

/* Micro rows of batches whose mono transaction has committed. */
static void *
micro_writer(void *arg)
{
	struct mark *m = arg;
	struct batch *b;
	int failed;

	while ((b = take(m, &m->to_micro, &m->mono_done, &failed)) != NULL) {
		if (!failed && write_micro(m, b) == -1)
			set_failed(m, m->err_micro);
		recycle(m, b);
	}
	if (!m->cfg.dry_run && pages_phase(m, 0) == -1)
		set_failed(m, m->err_micro);
	return NULL;
}

struct mark *
mark_start(const struct mark_config *cfg)
{
	struct mark *m = xcalloc(1, sizeof(*m));
	int i;

	m->cfg = *cfg;
	if (m->cfg.batch_rows == 0)
		m->cfg.batch_rows = 25000;
	m->hits = xcalloc(rules_count(cfg->rules) + 1, sizeof(*m->hits));
	pg_array_init(&m->a_ids, PG_OID_UUID);
	pg_array_init(&m->a_ids_micro, PG_OID_UUID);
	pg_array_init(&m->a_kind, PG_OID_TEXT);
	pg_array_init(&m->a_fields, PG_OID_TEXT);
	pg_array_init(&m->a_i64, PG_OID_INT8);
	for (i = 0; i < 6; i++)
		pg_array_init(&m->a_vals[i], PG_OID_TEXT);
	spill_init(&m->spill);
	m->pages[0] = pageorder_new();
	m->pages[1] = pageorder_new();
	m->spill_all = cfg->spill_all;
	m->overlap = cfg->overlap;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	for (i = 1; i < NBATCH; i++)
		m->free_[m->nfree++] = &m->pool[i];
	m->cur = &m->pool[0];
	m->cur->seq = ++m->seq;
	if (pthread_create(&m->mono_thread, NULL, mono_writer, m) != 0 ||
	    pthread_create(&m->micro_thread, NULL, micro_writer, m) != 0)
		fatal("pthread_create");
	return m;
}

/*
 * Hands the current batch to the writers: with overlap, to the queue when
 * a free batch can replace it and nothing waits in the spill file (which
 * keeps the order); else to the spill file. The merge goes on at once.
 */
static int
submit(struct mark *m)
{
	char err[512];
	int failed, to_file;

	pthread_mutex_lock(&m->mu);
	to_file = m->spill_all || !m->overlap || m->spilled > m->unspilled ||
	    m->nfree == 0;
	if (!to_file) {
		q_push(&m->to_mono, m->cur);
		m->cur = m->free_[--m->nfree];
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->mu);
	if (to_file) {
		if (spill_append(&m->spill, m->cur, err, sizeof(err)) == -1) {
			set_failed(m, err);
			return -1;
		}
		batch_reset(m->cur);
		pthread_mutex_lock(&m->mu);
		m->spilled++;
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
	}
	pthread_mutex_lock(&m->mu);
	m->cur->seq = ++m->seq;
	failed = m->failed;
	pthread_mutex_unlock(&m->mu);
	return failed ? -1 : 0;
}

/*
 * The first batches are smaller (1/8, 1/4, 1/2 of batch_rows, then whole):
 * the micro writer can start only once the mono writer has committed a
 * batch, so until then one server works and the other waits. A small
 * first batch keeps that wait short (on 1M pairs the first whole batch
 * took 0.9 s on mono with micro idle); the later batches keep the size
 * that makes the statements cheap per row.
 */
static size_t
batch_limit(const struct mark *m, long seq)
{
	size_t n = m->cfg.batch_rows;

	if (seq < RAMP_BATCHES + 1)
		n >>= RAMP_BATCHES + 1 - seq;
	return n > 0 ? n : 1;
}

static int
maybe_submit(struct mark *m)
{
	struct batch *b = m->cur;
	size_t limit = batch_limit(m, b->seq);

	if (b->both.n >= limit || b->bytes >= BATCH_BYTES ||
	    b->cand_mono.n + b->cand_micro.n + b->mms.n >= limit)
		return submit(m);
	return 0;
}

int
mark_match(struct mark *m, const struct merge_row *mono,
    const struct merge_row *micro, int64_t resolve_id)
{
	char err[512];

	if (resolve_id != 0 || m->cfg.dry_run) {
		/* Its mismatch is resolved in the same mono transaction as
		 * the consume: a batch's. */
		memcpy(*BATCH_PUSH(m->cur->both), mono->cid, 16);
		if (resolve_id != 0)
			*BATCH_PUSH(m->cur->resolve) = resolve_id;
		return maybe_submit(m);
	}
	if (pageorder_add(m->pages[0], mono->cid, mono->blk, mono->off, err,
	    sizeof(err)) == -1 ||
	    pageorder_add(m->pages[1], micro->cid, micro->blk, micro->off, err,
	    sizeof(err)) == -1) {
		set_failed(m, err);
		return -1;
	}
	return 0;
}

static size_t
row_bytes(const struct merge_row *r)
{
	return r ? r->mail.len[0] + r->mail.len[1] + r->mail.len[2] + 64 : 0;
}

int
mark_mismatch(struct mark *m, enum mismatch_kind kind, unsigned fields,
    const struct merge_row *mono, const struct merge_row *micro,
    int64_t resolve_id)
{
	struct pend *p = BATCH_PUSH(m->cur->mms);

	memset(p, 0, sizeof(*p));
	memcpy(p->cid, mono ? mono->cid : micro->cid, 16);
	p->kind = kind;
	p->fields = fields;
	if (mono != NULL)
		batch_own(&p->mono, mono);
	if (micro != NULL)
		batch_own(&p->micro, micro);
	m->cur->bytes += row_bytes(mono) + row_bytes(micro);
	if (resolve_id != 0)
		*BATCH_PUSH(m->cur->resolve) = resolve_id;
	return maybe_submit(m);
}

int
mark_candidate(struct mark *m, int is_mono, const struct merge_row *row)
{
	if (is_mono)
		batch_own(BATCH_PUSH(m->cur->cand_mono), row);
	else
		batch_own(BATCH_PUSH(m->cur->cand_micro), row);
	m->cur->bytes += row_bytes(row);
	return maybe_submit(m);
}

int
mark_finish(struct mark *m, int flush, struct run_counts *c, uint64_t *hits,
    char *err, size_t errlen)
{
	size_t i, n = rules_count(m->cfg.rules);
	int failed, k;

	if (flush)
		submit(m);
	pthread_mutex_lock(&m->mu);
	if (!flush)
		m->discard = 1;
	m->closing = 1;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->mono_thread, NULL);
	pthread_join(m->micro_thread, NULL);
	failed = m->failed;
	if (failed)
		snprintf(err, errlen, "%s", m->err);
	c->healed += m->c.healed;
	c->deferred += m->c.deferred;
	c->late += m->c.late;
	for (k = 0; k < KIND_COUNT; k++)
		*kind_count(c, (enum mismatch_kind)k) +=
		    *kind_count(&m->c, (enum mismatch_kind)k);
	c->new_mismatches += m->c.new_mismatches;
	for (i = 0; i < n && hits != NULL; i++)
		hits[i] += m->hits[i];
	for (k = 0; k < NBATCH; k++)
		batch_free(&m->pool[k]);
	pg_array_free(&m->a_ids);
	pg_array_free(&m->a_ids_micro);
	pg_array_free(&m->a_kind);
	pg_array_free(&m->a_fields);
	pg_array_free(&m->a_i64);
	for (k = 0; k < 6; k++)
		pg_array_free(&m->a_vals[k]);
	spill_close(&m->spill);
	for (k = 0; k < 2; k++) {
		pageorder_free(m->pages[k]);
		free(m->page_ids[k]);
	}
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m->hits);
	free(m);
	return failed ? -1 : 0;
}
