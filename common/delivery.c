/*
 * delivery: see delivery.h. A claimed row is held by a session advisory
 * lock of the worker's connection, not by an open transaction, so that
 * its outcome can commit the moment the SMTP server answers while the
 * rest of the batch stays claimed; a crash closes the connection and frees
 * the rows at once (no lease to wait out). The worker runs the SMTP session
 * and the outcome statements on one thread: smtp_send's hooks hand it
 * each outcome, which goes out asynchronously (PQsendQueryPrepared) with
 * whatever else came while the statement before it ran. The claim and
 * settle statements are built once at start for the configured table; a
 * group travels as binary arrays (common/pg_array.h).
 */
#include "delivery.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/db.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg_array.h"
#include "common/util.h"

/* One claimed row. */
struct queued_mail {
	int64_t id;
	char correlation_id[40];
	char *destination, *subject, *body;
	int attempts;			/* before this one */
};

enum fate { FATE_SENT, FATE_RETRY, FATE_FAILED };

struct outcome {
	int64_t id;
	enum fate fate;
	long retry_in_ms;		/* FATE_RETRY */
	const char *error;		/* last error, NULL when sent */
};

/*
 * At most this many mails of a worker are accepted by the SMTP server and
 * not yet recorded as such: the bound on what a crash sends twice.
 */
#define UNRECORDED_MAX	8

/*
 * While the SMTP server answers faster than one mail every SETTLE_EAGER_S,
 * an outcome waits until SETTLE_GROUP have come (or the session ends, or
 * UNRECORDED_MAX are unrecorded) before a statement takes them: a settle
 * costs the server about as much for one row as for four, and sending each
 * outcome the moment the statement before it committed made groups of two
 * at the delivery's peak. A slower server has each outcome on its way
 * before the next mail goes: a crash or a lost database then sends only
 * that one again.
 */
#define SETTLE_GROUP	(UNRECORDED_MAX / 2)
#define SETTLE_EAGER_S	0.002

/* A claim looks at up to batch x this many due rows for ones nobody holds. */
#define CLAIM_SCAN	16

struct worker {
	struct delivery *d;
	pthread_t thread;
	unsigned index;
	struct db *db;
	struct smtp_sender *smtp;

	unsigned long set_up;	/* db_connects() when the statements were prepared */

	/* the session in hand */
	PGconn *conn;
	struct queued_mail *rows;
	struct smtp_mail *mails;
	/*
	 * Outcomes in the order the server gave them: [0, written) are
	 * committed, [written, sent) are in the statement on the wire,
	 * [sent, count) wait for it.
	 */
	struct outcome *out;
	size_t written, sent, count;
	double last_outcome;		/* now_s() of the last, or of the claim */
	int eager;			/* settle at once: a slow SMTP server */
	int broken;			/* an outcome could not be recorded */
	char err[512];
};

struct delivery {
	struct delivery_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long wakes;
	int stopping;
	struct worker *workers;
	char *claim_sql, *read_sql, *unlock_sql, *settle_sql;
	struct metric *m_sent, *m_retry, *m_failed, *m_refused;
	struct metric *m_session_ok, *m_session_fail, *m_batch, *m_session_s;
	struct metric *m_settles;
};

static const double batch_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500 };

static long
backoff_ms(const struct delivery_config *cfg, int attempts)
{
	long d = cfg->retry_base_ms;
	int i;

	for (i = 0; i < attempts && d < (long)cfg->retry_max_ms; i++)
		d *= 2;
	return d > (long)cfg->retry_max_ms ? (long)cfg->retry_max_ms : d;
}

static int
stopping(struct delivery *d)
{
	int s;

	pthread_mutex_lock(&d->lock);
	s = d->stopping;
	pthread_mutex_unlock(&d->lock);
	return s;
}

static void
mails_free(struct queued_mail *m, size_t n)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(m[i].destination);
		free(m[i].subject);
		free(m[i].body);
	}
	free(m);
}

/*
 * Claims up to batch due pending rows, in two statements. The first
 * takes session advisory locks on the first due rows nobody holds (the
 * candidates are read without row locks; the LIMIT stops the locking
 * once enough are held). The second reads them again, in a new snapshot:
 * a row another worker settled and let go of between the first
 * statement's snapshot and its lock is no longer pending and is let go
 * of at once. Returns the count (rows in *out), or -1 with err.
 */
static int
claim(struct delivery *d, PGconn *conn, struct queued_mail **out, char *err,
    size_t errlen)
{
	static const int formats[1] = { 1 };
	char lim[24], scan[24];
	const char *params[2] = { lim, scan };
	int lengths[1];
	struct pg_array ids, stale;
	PGresult *res = NULL;
	struct queued_mail *m = NULL;
	int64_t *held = NULL;
	int i, j, locked, rows = 0, nstale = 0, rc = -1;

	*out = NULL;
	pg_array_init(&ids, PG_OID_INT8);
	pg_array_init(&stale, PG_OID_INT8);
	snprintf(lim, sizeof(lim), "%zu", d->cfg.batch);
	snprintf(scan, sizeof(scan), "%zu", d->cfg.batch * CLAIM_SCAN);
	res = PQexecPrepared(conn, "delivery_claim", 2, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "claim from %s: %s", d->cfg.table,
		    db_error(conn, res));
		goto done;
	}
	locked = PQntuples(res);
	held = xcalloc((size_t)locked + 1, sizeof(*held));
	for (i = 0; i < locked; i++) {
		held[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		pg_array_add_int8(&ids, held[i]);
	}
	PQclear(res);
	res = NULL;
	if (locked == 0) {
		rc = 0;
		goto done;
	}
	params[0] = pg_array_value(&ids, &lengths[0]);
	res = PQexecPrepared(conn, "delivery_read", 1, params, lengths, formats,
	    0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "claim from %s: %s", d->cfg.table,
		    db_error(conn, res));
		goto done;
	}
	rows = PQntuples(res);
	if (rows > 0)
		m = xcalloc((size_t)rows, sizeof(*m));
	for (i = 0; i < rows; i++) {
		m[i].id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		snprintf(m[i].correlation_id, sizeof(m[i].correlation_id), "%s",
		    PQgetvalue(res, i, 1));
		m[i].destination = xstrdup(PQgetvalue(res, i, 2));
		m[i].subject = xstrdup(PQgetvalue(res, i, 3));
		m[i].body = xstrdup(PQgetvalue(res, i, 4));
		m[i].attempts = atoi(PQgetvalue(res, i, 5));
	}
	PQclear(res);
	res = NULL;
	if (rows < locked) {
		/* let go of what is no longer due */
		for (i = 0; i < locked; i++) {
			for (j = 0; j < rows && m[j].id != held[i]; j++)
				;
			if (j == rows) {
				pg_array_add_int8(&stale, held[i]);
				nstale++;
			}
		}
		params[0] = pg_array_value(&stale, &lengths[0]);
		res = PQexecPrepared(conn, "delivery_unlock", 1, params, lengths,
		    formats, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "claim from %s: %s", d->cfg.table,
			    db_error(conn, res));
			goto done;
		}
		log_debug("delivery: %d claimed row(s) settled meanwhile", nstale);
	}
	*out = m;
	m = NULL;
	rc = rows;
done:
	PQclear(res);
	if (m != NULL)
		mails_free(m, (size_t)rows);
	pg_array_free(&ids);
	pg_array_free(&stale);
	free(held);
	return rc;
}

/* Reads whatever a statement given up on still has to say. */
static void
drain_results(PGconn *conn)
{
	PGresult *res;

	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
}

/* Gives the claimed rows back: whatever was not settled is due again. */
static void
release(PGconn *conn)
{
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock_all()"));
}

/* Puts out[sent, count) on the wire in one statement, not waiting for it. */
static void
send_settle(struct worker *w)
{
	static const char *const fate_names[] = {
		[FATE_SENT] = "sent", [FATE_RETRY] = "pending",
		[FATE_FAILED] = "failed",
	};
	static const uint32_t types[4] = { PG_OID_INT8, PG_OID_TEXT, PG_OID_TEXT,
		PG_OID_INT8 };
	static const int formats[4] = { 1, 1, 1, 1 };
	struct delivery *d = w->d;
	struct pg_array a[4];
	const char *params[4];
	int lengths[4];
	const struct outcome *o;
	size_t i;

	for (i = 0; i < 4; i++)
		pg_array_init(&a[i], types[i]);
	for (i = w->sent; i < w->count; i++) {
		o = &w->out[i];
		pg_array_add_int8(&a[0], o->id);
		pg_array_add_text(&a[1], fate_names[o->fate]);
		pg_array_add_text(&a[2], o->error);
		pg_array_add_int8(&a[3], o->fate == FATE_RETRY ? o->retry_in_ms : 0);
	}
	for (i = 0; i < 4; i++)
		params[i] = pg_array_value(&a[i], &lengths[i]);
	if (PQsendQueryPrepared(w->conn, "delivery_settle", 4, params, lengths,
	    formats, 0) != 1) {
		snprintf(w->err, sizeof(w->err), "settle in %s: %s",
		    d->cfg.table, PQerrorMessage(w->conn));
		w->broken = 1;
	} else {
		w->sent = w->count;
		metrics_inc(d->m_settles, 1);
	}
	for (i = 0; i < 4; i++)
		pg_array_free(&a[i]);
}

/*
 * Moves the outcomes along: collects the answer to the statement on the
 * wire (waiting for it when block, else only if it is there), then sends
 * what has come since: at once when block or eager, else once there are
 * SETTLE_GROUP of them. A failed statement sets broken: nothing more is
 * sent, over SMTP or to the database.
 */
static void
pump(struct worker *w, int block)
{
	PGresult *res;
	int ok = 1;

	if (w->broken)
		return;
	if (w->sent > w->written) {
		if (!block) {
			if (PQconsumeInput(w->conn) != 1) {
				snprintf(w->err, sizeof(w->err), "settle in %s: %s",
				    w->d->cfg.table, PQerrorMessage(w->conn));
				w->broken = 1;
				return;
			}
			if (PQisBusy(w->conn))
				return;
		}
		while ((res = PQgetResult(w->conn)) != NULL) {
			if (PQresultStatus(res) != PGRES_COMMAND_OK && ok) {
				snprintf(w->err, sizeof(w->err), "settle in %s: %s",
				    w->d->cfg.table, db_error(w->conn, res));
				ok = 0;
			}
			PQclear(res);
		}
		if (!ok) {
			w->broken = 1;
			return;
		}
		w->written = w->sent;
	}
	if (w->count > w->sent && (block || w->eager ||
	    w->count - w->sent >= SETTLE_GROUP))
		send_settle(w);
}

/* smtp_batch_hooks.ready: the next mail goes only while outcomes keep up. */
static int
on_ready(void *arg)
{
	struct worker *w = arg;

	pump(w, 0);
	while (!w->broken && w->count - w->written >= UNRECORDED_MAX)
		pump(w, 1);
	return !w->broken && !stopping(w->d);
}

/* smtp_batch_hooks.settled: a mail's fate, queued for the database. */
static void
on_settled(struct smtp_mail *m, void *arg)
{
	struct worker *w = arg;
	struct delivery *d = w->d;
	const struct delivery_config *cfg = &d->cfg;
	const struct queued_mail *row = &w->rows[m - w->mails];
	struct outcome *o = &w->out[w->count];
	double t = now_s();

	w->eager = t - w->last_outcome >= SETTLE_EAGER_S;
	w->last_outcome = t;
	o->id = row->id;
	o->error = m->reply;
	switch (m->status) {
	case SMTP_MAIL_UNTRIED:
		return;		/* not sent: due again once released */
	case SMTP_MAIL_SENT:
		o->fate = FATE_SENT;
		o->error = NULL;
		metrics_inc(d->m_sent, 1);
		log_debug("delivery: %s sent to %s", row->correlation_id,
		    row->destination);
		break;
	case SMTP_MAIL_PERMFAIL:
	case SMTP_MAIL_REFUSED:
		o->fate = FATE_FAILED;
		metrics_inc(m->status == SMTP_MAIL_REFUSED ? d->m_refused :
		    d->m_failed, 1);
		log_warnx("delivery: %s to %s failed: %s", row->correlation_id,
		    row->destination, m->reply);
		break;
	case SMTP_MAIL_TEMPFAIL:
		if ((unsigned)row->attempts + 1 >= cfg->max_attempts) {
			o->fate = FATE_FAILED;
			metrics_inc(d->m_failed, 1);
			log_warnx("delivery: %s to %s failed after %d attempts: %s",
			    row->correlation_id, row->destination,
			    row->attempts + 1, m->reply);
		} else {
			o->fate = FATE_RETRY;
			o->retry_in_ms = backoff_ms(cfg, row->attempts);
			metrics_inc(d->m_retry, 1);
			/* no answer at all: the session's failure is logged once */
			if (m->code != 0)
				log_info("delivery: %s to %s not sent (attempt %d), "
				    "again in %ld ms: %s", row->correlation_id,
				    row->destination, row->attempts + 1,
				    o->retry_in_ms, m->reply);
			else
				log_debug("delivery: %s to %s not sent (attempt %d), "
				    "again in %ld ms: %s", row->correlation_id,
				    row->destination, row->attempts + 1,
				    o->retry_in_ms, m->reply);
		}
		break;
	}
	w->count++;
	pump(w, 0);
}

/*
 * A new session: its settings, and the four statements prepared once (a
 * settle goes out every few mails, and parsing and planning it each time
 * cost the server more than the UPDATE itself).
 */
static int
set_up(struct worker *w, char *err, size_t errlen)
{
	struct delivery *d = w->d;
	const struct {
		const char *name, *sql;
		int nparams;
	} stmts[] = {
		{ "delivery_claim", d->claim_sql, 2 },
		{ "delivery_read", d->read_sql, 1 },
		{ "delivery_unlock", d->unlock_sql, 1 },
		{ "delivery_settle", d->settle_sql, 4 },
	};
	PGresult *res;
	size_t i;

	/*
	 * An outcome's commit does not wait for the WAL flush: only a crash
	 * of the database host can lose the last fraction of a second of
	 * them, and a lost 'sent' sends that mail again (at least once,
	 * never lost). Waiting for the flush after every few mails would
	 * halve the delivery rate (docs/ARCHITECTURE.md).
	 *
	 * DB_KEY_PLANS: the read and the settle reach their rows by key
	 * only (delivery_start says why).
	 */
	res = PQexec(w->conn, "SET synchronous_commit = off; " DB_KEY_PLANS);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "set up a session on %s: %s",
		    d->cfg.store_name, db_error(w->conn, res));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	for (i = 0; i < nitems(stmts); i++) {
		res = PQprepare(w->conn, stmts[i].name, stmts[i].sql,
		    stmts[i].nparams, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "prepare %s on %s: %s",
			    stmts[i].name, d->cfg.store_name,
			    db_error(w->conn, res));
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}

/*
 * One claim-send-settle round. Returns the number of rows claimed, -1 on
 * a store problem (some outcome not recorded).
 */
static int
deliver_once(struct worker *w)
{
	struct delivery *d = w->d;
	const struct delivery_config *cfg = &d->cfg;
	struct smtp_batch_hooks hooks = { on_ready, on_settled, w };
	char **ids = NULL;
	char err[512] = "";
	double t0, tc = now_s(), ts;
	int n, i, rc = -1;

	w->conn = db_get(w->db, err, sizeof(err));
	if (w->conn == NULL)
		return -1;
	if (w->set_up != db_connects(w->db)) {
		if (set_up(w, err, sizeof(err)) != 0) {
			log_warnx("delivery %u: %s", w->index, err);
			db_check_lost(w->db);
			return -1;
		}
		w->set_up = db_connects(w->db);
	}
	n = claim(d, w->conn, &w->rows, err, sizeof(err));
	if (n < 0) {
		log_warnx("delivery %u: %s", w->index, err);
		db_check_lost(w->db);
		return -1;
	}
	if (n == 0)
		return 0;

	w->mails = xcalloc((size_t)n, sizeof(*w->mails));
	w->out = xcalloc((size_t)n, sizeof(*w->out));
	w->written = w->sent = w->count = 0;
	w->last_outcome = now_s();
	w->eager = 1;
	w->broken = 0;
	w->err[0] = '\0';
	ids = xcalloc((size_t)n, sizeof(*ids));
	for (i = 0; i < n; i++) {
		ids[i] = xasprintf("%s@%s", w->rows[i].correlation_id,
		    cfg->mail_domain);
		w->mails[i].message_id = ids[i];
		w->mails[i].from = cfg->mail_from;
		w->mails[i].to = w->rows[i].destination;
		w->mails[i].subject = w->rows[i].subject;
		w->mails[i].body = w->rows[i].body;
	}
	t0 = now_s();
	if (smtp_send_batch(w->smtp, w->mails, (size_t)n, &hooks, err,
	    sizeof(err)) != 0) {
		metrics_inc(d->m_session_fail, 1);
		log_warnx("delivery %u: %d mail(s) not sent: %s", w->index, n, err);
	} else {
		metrics_inc(d->m_session_ok, 1);
	}
	metrics_observe(d->m_session_s, now_s() - t0);
	metrics_observe(d->m_batch, (double)n);

	ts = now_s();
	while (!w->broken && w->written < w->count)
		pump(w, 1);
	if (w->broken) {
		log_warnx("delivery %u: outcome of %zu mail(s) not recorded: %s",
		    w->index, w->count - w->written, w->err);
		drain_results(w->conn);
	} else {
		rc = n;
	}
	release(w->conn);
	db_check_lost(w->db);
	log_debug("delivery %u: %d mail(s): claim %.1f ms, SMTP %.1f ms, "
	    "last settle %.1f ms", w->index, n, (t0 - tc) * 1e3,
	    (ts - t0) * 1e3, (now_s() - ts) * 1e3);
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(w->out);
	free(w->mails);
	mails_free(w->rows, (size_t)n);
	w->out = NULL;
	w->mails = NULL;
	w->rows = NULL;
	w->conn = NULL;
	return rc;
}

/* After a store problem a worker waits this long, doubling up to the cap. */
#define FAIL_FIRST_MS	1000u
#define FAIL_MAX_MS	10000u

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct delivery *d = w->d;
	unsigned long seen;
	struct timespec until;
	unsigned wait_ms, fail_ms = 0;
	int n = 0;

	pthread_mutex_lock(&d->lock);
	seen = d->wakes;
	pthread_mutex_unlock(&d->lock);
	for (;;) {
		n = deliver_once(w);
		/*
		 * A store problem backs off, deaf to wakes: a batch whose
		 * outcome could not be recorded is due again at once, and
		 * sending it again on every commit would flood its recipients.
		 */
		if (n < 0)
			fail_ms = fail_ms == 0 ? FAIL_FIRST_MS :
			    fail_ms * 2 > FAIL_MAX_MS ? FAIL_MAX_MS : fail_ms * 2;
		else
			fail_ms = 0;
		pthread_mutex_lock(&d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		/* a full batch means more may be due: go again at once */
		if (n >= 0 && (n >= (int)d->cfg.batch || d->wakes != seen)) {
			seen = d->wakes;
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		wait_ms = fail_ms != 0 ? fail_ms : d->cfg.poll_ms;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while ((fail_ms != 0 || d->wakes == seen) && !d->stopping) {
			if (pthread_cond_timedwait(&d->cond, &d->lock, &until) ==
			    ETIMEDOUT)
				break;
		}
		seen = d->wakes;
		pthread_mutex_unlock(&d->lock);
	}
	return NULL;
}

/* The table name goes into SQL text: only a plain lower-case identifier. */
static int
table_name_ok(const char *s)
{
	const char *p;

	if (s == NULL || *s == '\0' || strlen(s) > 63 || isdigit((unsigned char)*s))
		return 0;
	for (p = s; *p != '\0'; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
		    *p == '_'))
			return 0;
	return 1;
}

/* Frees d and what its workers hold; their threads are joined or never started. */
static void
delivery_free(struct delivery *d)
{
	unsigned i;

	for (i = 0; i < d->cfg.workers; i++) {
		db_free(d->workers[i].db);
		smtp_sender_free(d->workers[i].smtp);
	}
	free(d->workers);
	free(d->claim_sql);
	free(d->read_sql);
	free(d->unlock_sql);
	free(d->settle_sql);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

struct delivery *
delivery_start(const struct delivery_config *cfg, char *err, size_t errlen)
{
	struct delivery *d;
	unsigned i;

	if (!table_name_ok(cfg->table)) {
		snprintf(err, errlen, "delivery table '%s' is not a plain name",
		    cfg->table ? cfg->table : "(null)");
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->cfg = *cfg;
	if (d->cfg.store_name == NULL)
		d->cfg.store_name = "the database";
	/*
	 * MATERIALIZED, and the LIMIT over it: the advisory lock is tried on
	 * the candidates in order, and no more once batch of them are held,
	 * never on every row a plan might scan. The two-int key space is the
	 * delivery's (the one-bigint space does not overlap it); ids that
	 * share their low 31 bits only wait for each other.
	 */
	d->claim_sql = xasprintf(
	    "WITH c AS MATERIALIZED ("
	    " SELECT id FROM %s WHERE status = 'pending' AND next_attempt_at <= now()"
	    " ORDER BY next_attempt_at LIMIT $2::int)"
	    " SELECT id FROM c WHERE pg_try_advisory_lock(hashtext('delivery %s'),"
	    " (id & 2147483647)::int) LIMIT $1::int",
	    cfg->table, cfg->table);
	/*
	 * The read and the settle reach their rows by primary key and
	 * nothing else, whatever the statistics say. Both are statements on
	 * the table alone (no join the planner could turn around), and they
	 * test the status as (status || '') = 'pending', which is not the
	 * predicate of the partial index of pending rows, so that index,
	 * whose full scan statistics from before a bulk load or a TRUNCATE
	 * make look cheap, is not a way to run them (it was: 20,000 rows
	 * read per settle of a few mails). Sequential scans are off in
	 * these sessions (set_up), so the primary key is what is left.
	 */
	d->read_sql = xasprintf(
	    "SELECT id, correlation_id, destination, subject, body, attempts"
	    " FROM %s WHERE id = ANY($1::bigint[]) AND (status || '') = 'pending'"
	    " AND next_attempt_at <= now() ORDER BY next_attempt_at",
	    cfg->table);
	d->unlock_sql = xasprintf(
	    "SELECT pg_advisory_unlock(hashtext('delivery %s'),"
	    " (id & 2147483647)::int) FROM unnest($1::bigint[]) AS id",
	    cfg->table);
	/*
	 * Each group of outcomes commits on its own; clock_timestamp() is
	 * when it is written, right after the server's answer. Only a row
	 * still pending is settled (nothing else touches a claimed row). A
	 * row's outcome is found in the arrays by the position of its id.
	 */
#define AT "[array_position($1::bigint[], s.id)]"
	d->settle_sql = xasprintf(
	    "UPDATE %s s SET status = ($2::text[])" AT ","
	    " attempts = s.attempts + 1, last_error = ($3::text[])" AT ","
	    " sent_at = CASE WHEN ($2::text[])" AT " = 'sent'"
	    "  THEN clock_timestamp() ELSE s.sent_at END,"
	    " next_attempt_at = CASE WHEN ($2::text[])" AT " = 'pending'"
	    "  THEN clock_timestamp() + ($4::bigint[])" AT
	    "   * interval '1 millisecond'"
	    "  ELSE s.next_attempt_at END"
	    " WHERE s.id = ANY($1::bigint[]) AND (s.status || '') = 'pending'",
	    cfg->table);
#undef AT
	if (d->cfg.workers == 0)
		d->cfg.workers = 1;
	if (d->cfg.batch == 0)
		d->cfg.batch = 100;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->m_sent = metrics_counter("mail_delivery_total",
	    "Outbox mails by delivery outcome", "outcome=\"sent\"");
	d->m_retry = metrics_counter("mail_delivery_total",
	    "Outbox mails by delivery outcome", "outcome=\"retry\"");
	d->m_failed = metrics_counter("mail_delivery_total",
	    "Outbox mails by delivery outcome", "outcome=\"failed\"");
	d->m_refused = metrics_counter("mail_delivery_total",
	    "Outbox mails by delivery outcome", "outcome=\"refused\"");
	d->m_session_ok = metrics_counter("smtp_sessions_total",
	    "SMTP sessions by result", "result=\"ok\"");
	d->m_session_fail = metrics_counter("smtp_sessions_total",
	    "SMTP sessions by result", "result=\"failed\"");
	d->m_batch = metrics_histogram("smtp_session_mails",
	    "Mails per SMTP session", "", batch_bounds, nitems(batch_bounds));
	d->m_session_s = metrics_histogram("smtp_session_duration_seconds",
	    "Duration of an SMTP session", "", NULL, 0);
	d->m_settles = metrics_counter("delivery_settle_statements_total",
	    "Statements that recorded delivery outcomes (each its own commit)",
	    "");

	d->workers = xcalloc(d->cfg.workers, sizeof(*d->workers));
	for (i = 0; i < d->cfg.workers; i++) {
		struct worker *w = &d->workers[i];
		w->d = d;
		w->index = i;
		w->db = db_new(cfg->conninfo, d->cfg.store_name);
		w->smtp = smtp_sender_new(&cfg->smtp, err, errlen);
		if (w->smtp == NULL)
			goto fail;
	}
	for (i = 0; i < d->cfg.workers; i++)
		thread_start(&d->workers[i].thread, worker_main, &d->workers[i]);
	return d;
fail:
	delivery_free(d);
	return NULL;
}

void
delivery_wake(struct delivery *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->wakes++;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void
delivery_stop(struct delivery *d)
{
	unsigned i;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	for (i = 0; i < d->cfg.workers; i++)
		pthread_join(d->workers[i].thread, NULL);
	delivery_free(d);
}
