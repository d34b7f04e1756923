/*
 * handoff: see handoff.h. One thread, one PostgreSQL connection of its
 * own. Acknowledgements wait in memory only until the next round (at most
 * poll_ms): losing them in a crash costs a harmless resend, never a mail.
 */
#include "handoff.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/db.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg_array.h"
#include "common/util.h"

struct handoff {
	struct handoff_config cfg;
	struct dispatch *dispatch;
	struct db *db;
	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stopping;
	char (*acks)[IDS_UUID_LEN + 1];	/* acknowledged, not yet recorded */
	size_t nacks, capacity;
	struct metric *m_acked, *m_resent, *m_unacked;
};

/*
 * Due rows: delegated, never acknowledged, written (or last handed over)
 * more than after_ms ago. Each is pushed forward by its backoff before it
 * is handed over again, so a second process or the next sweep skips it.
 */
static const char sweep_sql[] =
    "UPDATE sent_mail s SET attempts = s.attempts + 1,"
    "  next_attempt_at = now() + least($3::bigint,"
    "   $2::bigint * (2::bigint ^ least(s.attempts, 30))::bigint)"
    "   * interval '1 millisecond'"
    " FROM payroll p"
    " WHERE p.id = s.payroll_id AND s.id IN (SELECT id FROM sent_mail"
    "  WHERE status = 'delegated' AND handed_off_at IS NULL"
    "  AND next_attempt_at <= now() - $4::bigint * interval '1 millisecond'"
    "  ORDER BY next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
    " RETURNING s.correlation_id, s.payroll_id, p.ship_to,"
    "  (p.total * 100)::bigint";

static const char ack_sql[] =
    "UPDATE sent_mail SET handed_off_at = now()"
    " WHERE correlation_id = ANY($1::uuid[]) AND handed_off_at IS NULL";

static const char unacked_sql[] =
    "SELECT count(*) FROM sent_mail"
    " WHERE status = 'delegated' AND handed_off_at IS NULL";

void
handoff_acknowledged(const char *correlation_id, void *arg)
{
	struct handoff *h = arg;

	pthread_mutex_lock(&h->lock);
	if (h->nacks == h->capacity) {
		h->capacity = h->capacity ? h->capacity * 2 : 256;
		h->acks = xrealloc(h->acks, h->capacity * sizeof(*h->acks));
	}
	snprintf(h->acks[h->nacks], sizeof(h->acks[0]), "%s", correlation_id);
	h->nacks++;
	pthread_mutex_unlock(&h->lock);
}

/* Records the acknowledgements taken from memory; puts them back on failure. */
static void
record_acks(struct handoff *h, PGconn *conn)
{
	char (*acks)[IDS_UUID_LEN + 1];
	static const int formats[1] = { 1 };
	struct pg_array arr;
	size_t n, i;
	const char *params[1];
	int lengths[1];
	PGresult *res;

	pthread_mutex_lock(&h->lock);
	acks = h->acks;
	n = h->nacks;
	h->acks = NULL;
	h->nacks = h->capacity = 0;
	pthread_mutex_unlock(&h->lock);
	if (n == 0)
		return;

	pg_array_init(&arr, PG_OID_UUID);
	for (i = 0; i < n; i++)
		if (pg_array_add_uuid(&arr, acks[i]) == -1)	/* the spy's answer */
			log_warnx("handoff: acknowledgement for %s: not a UUID", acks[i]);
	params[0] = pg_array_value(&arr, &lengths[0]);
	res = PQexecParams(conn, ack_sql, 1, NULL, params, lengths, formats, 0);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		metrics_inc(h->m_acked, (double)n);
		free(acks);
	} else {
		log_warnx("handoff: recording %zu acknowledgement(s): %s", n,
		    db_error(conn, res));
		db_check_lost(h->db);
		/* back in the list: the next round tries again */
		for (i = 0; i < n; i++)
			handoff_acknowledged(acks[i], h);
		free(acks);
	}
	PQclear(res);
	pg_array_free(&arr);
}

/* Hands the due rows to the spy again. Returns how many, -1 on a store problem. */
static int
sweep(struct handoff *h, PGconn *conn)
{
	char lim[24], base[24], cap[24], after[24];
	const char *params[4] = { lim, base, cap, after };
	PGresult *res;
	int i, n;

	snprintf(lim, sizeof(lim), "%u", h->cfg.batch);
	snprintf(base, sizeof(base), "%u", h->cfg.retry_base_ms);
	snprintf(cap, sizeof(cap), "%u", h->cfg.retry_max_ms);
	snprintf(after, sizeof(after), "%u", h->cfg.after_ms);
	res = PQexecParams(conn, sweep_sql, 4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("handoff: sweep: %s", db_error(conn, res));
		PQclear(res);
		db_check_lost(h->db);
		return -1;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *cid = PQgetvalue(res, i, 0);
		int64_t payroll = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		int64_t cents = strtoll(PQgetvalue(res, i, 3), NULL, 10);

		log_info("handoff: %s not acknowledged by mailer-spy, handing it "
		    "over again", cid);
		dispatch_submit(h->dispatch, cid, payroll, PQgetvalue(res, i, 2),
		    cents);
	}
	PQclear(res);
	metrics_inc(h->m_resent, n);
	return n;
}

static void
count_unacked(struct handoff *h, PGconn *conn)
{
	PGresult *res = PQexec(conn, unacked_sql);

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		metrics_set(h->m_unacked, strtod(PQgetvalue(res, 0, 0), NULL));
	else
		db_check_lost(h->db);
	PQclear(res);
}

static void *
handoff_main(void *arg)
{
	struct handoff *h = arg;
	char err[256];
	PGconn *conn;
	struct timespec ts;
	int stopping, n;

	log_set_id("handoff");
	for (;;) {
		pthread_mutex_lock(&h->lock);
		stopping = h->stopping;
		pthread_mutex_unlock(&h->lock);

		n = 0;
		conn = db_get(h->db, err, sizeof(err));
		if (conn != NULL) {
			record_acks(h, conn);
			if (!stopping && db_is_up(h->db)) {
				n = sweep(h, conn);
				count_unacked(h, conn);
			}
		}
		if (stopping)
			break;
		if (n > 0 && (unsigned)n == h->cfg.batch)
			continue;	/* more are due */

		pthread_mutex_lock(&h->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += h->cfg.poll_ms / 1000;
		ts.tv_nsec += (long)(h->cfg.poll_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!h->stopping)
			pthread_cond_timedwait(&h->wake, &h->lock, &ts);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

struct handoff *
handoff_new(const struct handoff_config *cfg)
{
	struct handoff *h = xcalloc(1, sizeof(*h));

	h->cfg = *cfg;
	if (h->cfg.batch == 0)
		h->cfg.batch = 500;
	if (h->cfg.poll_ms == 0)
		h->cfg.poll_ms = 1000;
	h->db = db_new(cfg->conninfo, "postgresMono");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	h->m_acked = metrics_counter("handoff_acknowledged_total",
	    "Delegated payrolls the spy acknowledged (NOTIFIER=remote)", "");
	h->m_resent = metrics_counter("handoff_resent_total",
	    "Delegated payrolls handed to the spy again after no acknowledgement",
	    "");
	h->m_unacked = metrics_gauge("handoff_unacknowledged",
	    "Delegated payrolls the spy has not acknowledged yet", "");
	return h;
}

void
handoff_start(struct handoff *h, struct dispatch *d)
{
	h->dispatch = d;
	thread_start(&h->thread, handoff_main, h);
	h->started = 1;
}

void
handoff_halt(struct handoff *h)
{
	if (h == NULL || !h->started)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = 1;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	h->started = 0;
}

void
handoff_stop(struct handoff *h)
{
	char err[256];
	PGconn *conn;

	if (h == NULL)
		return;
	handoff_halt(h);
	/* the thread is gone: acknowledgements that came in since are
	 * recorded here, on this thread */
	conn = db_get(h->db, err, sizeof(err));
	if (conn != NULL)
		record_acks(h, conn);
	db_free(h->db);
	free(h->acks);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
