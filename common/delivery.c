/*
 * delivery: see delivery.h. A row stays locked in the worker's transaction
 * during the SMTP session and is settled by the commit after it; a crash
 * in between rolls the transaction back and the row goes again (the
 * Message-Id, derived from the correlation id, lets a receiver spot the
 * duplicate). The claim and settle statements are built once at start for
 * the configured table; a batch travels as arrays (common/pg_array.h).
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

struct worker {
	struct delivery *d;
	pthread_t thread;
	unsigned index;
	struct db *db;
	struct smtp_sender *smtp;
};

struct delivery {
	struct delivery_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long wakes;
	int stopping;
	struct worker *workers;
	char *claim_sql, *settle_sql;
	struct metric *m_sent, *m_retry, *m_failed, *m_refused;
	struct metric *m_session_ok, *m_session_fail, *m_batch, *m_session_s;
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
exec_cmd(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;

	if (rc != 0)
		snprintf(err, errlen, "%s: %s", sql, db_error(conn, res));
	PQclear(res);
	return rc;
}

/* Rolls back a claim: the rows are due again at once, for anyone. */
static void
release(PGconn *conn)
{
	PQclear(PQexec(conn, "ROLLBACK"));
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
 * Opens a transaction and locks up to max due pending rows in it. Returns
 * the count (rows in *out), or -1 with err. With rows, the transaction
 * stays open until settle commits it or release rolls it back; with none
 * it is already closed.
 */
static int
claim(struct delivery *d, PGconn *conn, struct queued_mail **out, char *err,
    size_t errlen)
{
	char lim[24];
	const char *params[1] = { lim };
	PGresult *res;
	struct queued_mail *m = NULL;
	int i, rows;

	*out = NULL;
	/* never claim inside a transaction something else left open */
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		release(conn);
	if (exec_cmd(conn, "BEGIN", err, errlen) != 0)
		return -1;
	snprintf(lim, sizeof(lim), "%zu", d->cfg.batch);
	res = PQexecParams(conn, d->claim_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "claim from %s: %s", d->cfg.table,
		    db_error(conn, res));
		PQclear(res);
		release(conn);
		return -1;
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
	if (rows == 0)
		release(conn);
	*out = m;
	return rows;
}

/* Records the outcomes in one statement and commits the claim. */
static int
settle(struct delivery *d, PGconn *conn, const struct outcome *o, size_t n,
    char *err, size_t errlen)
{
	static const char *const fate_names[] = {
		[FATE_SENT] = "sent", [FATE_RETRY] = "pending",
		[FATE_FAILED] = "failed",
	};
	static const uint32_t types[4] = { PG_OID_INT8, PG_OID_TEXT, PG_OID_TEXT,
		PG_OID_INT8 };
	static const int formats[4] = { 1, 1, 1, 1 };
	struct pg_array a[4];
	const char *params[4];
	int lengths[4];
	PGresult *res;
	size_t i;
	int rc = 0;

	for (i = 0; i < 4; i++)
		pg_array_init(&a[i], types[i]);
	for (i = 0; i < n; i++) {
		pg_array_add_int8(&a[0], o[i].id);
		pg_array_add_text(&a[1], fate_names[o[i].fate]);
		pg_array_add_text(&a[2], o[i].error);
		pg_array_add_int8(&a[3], o[i].fate == FATE_RETRY ? o[i].retry_in_ms : 0);
	}
	for (i = 0; i < 4; i++)
		params[i] = pg_array_value(&a[i], &lengths[i]);
	res = PQexecParams(conn, d->settle_sql, 4, NULL, params, lengths, formats, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "settle in %s: %s", d->cfg.table,
		    db_error(conn, res));
		rc = -1;
	}
	PQclear(res);
	if (rc == 0)
		rc = exec_cmd(conn, "COMMIT", err, errlen);
	else
		release(conn);
	for (i = 0; i < 4; i++)
		pg_array_free(&a[i]);
	return rc;
}

/* One claim-send-settle round. Returns the number of rows handled, -1 on a store problem. */
static int
deliver_once(struct worker *w)
{
	struct delivery *d = w->d;
	const struct delivery_config *cfg = &d->cfg;
	struct queued_mail *rows = NULL;
	struct smtp_mail *mails = NULL;
	struct outcome *out = NULL;
	char **ids = NULL;
	char err[512] = "";
	PGconn *conn;
	double t0, tc = now_s(), ts;
	int n, i, session_ok, rc = -1;

	conn = db_get(w->db, err, sizeof(err));
	if (conn == NULL)
		return -1;
	n = claim(d, conn, &rows, err, sizeof(err));
	if (n < 0) {
		log_warnx("delivery %u: %s", w->index, err);
		db_check_lost(w->db);
		return -1;
	}
	if (n == 0)
		return 0;

	mails = xcalloc((size_t)n, sizeof(*mails));
	out = xcalloc((size_t)n, sizeof(*out));
	ids = xcalloc((size_t)n, sizeof(*ids));
	for (i = 0; i < n; i++) {
		ids[i] = xasprintf("%s@%s", rows[i].correlation_id, cfg->mail_domain);
		mails[i].message_id = ids[i];
		mails[i].from = cfg->mail_from;
		mails[i].to = rows[i].destination;
		mails[i].subject = rows[i].subject;
		mails[i].body = rows[i].body;
	}
	t0 = now_s();
	session_ok = smtp_send_batch(w->smtp, mails, (size_t)n, NULL, err,
	    sizeof(err)) == 0;
	if (!session_ok) {
		metrics_inc(d->m_session_fail, 1);
		log_warnx("delivery %u: %d mail(s) not sent: %s", w->index, n, err);
	} else {
		metrics_inc(d->m_session_ok, 1);
	}
	metrics_observe(d->m_session_s, now_s() - t0);
	metrics_observe(d->m_batch, (double)n);

	for (i = 0; i < n; i++) {
		out[i].id = rows[i].id;
		out[i].error = mails[i].reply;
		switch (mails[i].status) {
		case SMTP_MAIL_SENT:
			out[i].fate = FATE_SENT;
			out[i].error = NULL;
			metrics_inc(d->m_sent, 1);
			log_debug("delivery: %s sent to %s", rows[i].correlation_id,
			    rows[i].destination);
			break;
		case SMTP_MAIL_PERMFAIL:
		case SMTP_MAIL_REFUSED:
			out[i].fate = FATE_FAILED;
			metrics_inc(mails[i].status == SMTP_MAIL_REFUSED ?
			    d->m_refused : d->m_failed, 1);
			log_warnx("delivery: %s to %s failed: %s",
			    rows[i].correlation_id, rows[i].destination,
			    mails[i].reply);
			break;
		case SMTP_MAIL_TEMPFAIL:
		case SMTP_MAIL_UNTRIED:	/* no ready hook here: never */
			if ((unsigned)rows[i].attempts + 1 >= cfg->max_attempts) {
				out[i].fate = FATE_FAILED;
				metrics_inc(d->m_failed, 1);
				log_warnx("delivery: %s to %s failed after %d "
				    "attempts: %s", rows[i].correlation_id,
				    rows[i].destination, rows[i].attempts + 1,
				    mails[i].reply);
			} else {
				out[i].fate = FATE_RETRY;
				out[i].retry_in_ms = backoff_ms(cfg, rows[i].attempts);
				metrics_inc(d->m_retry, 1);
				/* a session that failed whole was logged once above */
				if (session_ok)
					log_info("delivery: %s to %s not sent (attempt "
					    "%d), again in %ld ms: %s",
					    rows[i].correlation_id, rows[i].destination,
					    rows[i].attempts + 1, out[i].retry_in_ms,
					    mails[i].reply[0] ? mails[i].reply :
					    "no answer");
			}
			break;
		}
	}
	ts = now_s();
	if (settle(d, conn, out, (size_t)n, err, sizeof(err)) != 0) {
		/* rolled back: the rows go again, at least once */
		log_warnx("delivery %u: outcome of %d mail(s) not recorded: %s",
		    w->index, n, err);
		db_check_lost(w->db);
		goto done;
	}
	rc = n;
	log_debug("delivery %u: %d mail(s): claim %.1f ms, SMTP %.1f ms, "
	    "settle %.1f ms", w->index, n, (t0 - tc) * 1e3, (ts - t0) * 1e3,
	    (now_s() - ts) * 1e3);
done:
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(out);
	free(mails);
	mails_free(rows, (size_t)n);
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
	d->claim_sql = xasprintf(
	    "SELECT id, correlation_id, destination, subject, body, attempts"
	    " FROM %s WHERE status = 'pending' AND next_attempt_at <= now()"
	    " ORDER BY next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
	    cfg->table);
	/*
	 * clock_timestamp(), not now(): the transaction began at the claim,
	 * before the SMTP session, and a retry's delay counts from the
	 * attempt's end.
	 */
	d->settle_sql = xasprintf(
	    "UPDATE %s s SET status = u.status, attempts = s.attempts + 1,"
	    " last_error = u.err,"
	    " sent_at = CASE WHEN u.status = 'sent' THEN clock_timestamp()"
	    "  ELSE s.sent_at END,"
	    " next_attempt_at = CASE WHEN u.status = 'pending'"
	    "  THEN clock_timestamp() + u.delay * interval '1 millisecond'"
	    "  ELSE s.next_attempt_at END"
	    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
	    "  AS u(id, status, err, delay)"
	    " WHERE s.id = u.id", cfg->table);
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
