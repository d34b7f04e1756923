/*
 * outbox: see outbox.h. Batches travel to PostgreSQL as arrays (text
 * literals built here, unnest()ed by the server), so a group commit of a
 * hundred payrolls costs three statements, not two hundred.
 */
#include "outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"
#include "legacy_render.h"

/* A PostgreSQL array literal under construction: {"a","b",NULL}. */
struct arr {
	char *p;
	size_t len, cap;
	int n;
};

static void
arr_raw(struct arr *a, const char *s, size_t n)
{
	if (a->len + n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		while (cap < a->len + n + 2)
			cap *= 2;
		a->p = xrealloc(a->p, cap);
		a->cap = cap;
	}
	memcpy(a->p + a->len, s, n);
	a->len += n;
	a->p[a->len] = '\0';
}

static void
arr_sep(struct arr *a)
{
	arr_raw(a, a->n++ == 0 ? "{" : ",", 1);
}

static void
arr_text(struct arr *a, const char *s)
{
	const char *p;

	arr_sep(a);
	if (s == NULL) {
		arr_raw(a, "NULL", 4);
		return;
	}
	arr_raw(a, "\"", 1);
	for (p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			arr_raw(a, "\\", 1);
		arr_raw(a, p, 1);
	}
	arr_raw(a, "\"", 1);
}

static void
arr_int(struct arr *a, int64_t v)
{
	char num[32];

	arr_sep(a);
	snprintf(num, sizeof(num), "%" PRId64, v);
	arr_raw(a, num, strlen(num));
}

static const char *
arr_done(struct arr *a)
{
	if (a->n == 0)
		arr_raw(a, "{", 1);
	arr_raw(a, "}", 1);
	return a->p;
}

static void
arr_free(struct arr *a)
{
	free(a->p);
	memset(a, 0, sizeof(*a));
}

void
outbox_request_hash(const char *ship_to, int64_t cents, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char num[32];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	snprintf(num, sizeof(num), "%" PRId64, cents);
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, ship_to, strlen(ship_to) + 1);
	EVP_DigestUpdate(ctx, num, strlen(num));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

void
outbox_item_free(struct outbox_item *it)
{
	if (it == NULL)
		return;
	free(it->ship_to);
	free(it->idem_key);
	free(it->destination);
	free(it->status);
	free(it);
}

static const char insert_sql[] =
    "WITH input AS ("
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[],"
    "  $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::text[])"
    "  AS t(id, ship_to, cents, ikey, rhash, cid, dest, subj, body)"
    "), p AS ("
    " INSERT INTO payroll (id, ship_to, total, idempotency_key, request_hash)"
    " OVERRIDING SYSTEM VALUE"
    " SELECT id, ship_to, cents::numeric / 100, ikey, rhash FROM input"
    " ORDER BY id"
    " ON CONFLICT (idempotency_key) DO NOTHING"
    " RETURNING id"
    ")"
    " INSERT INTO sent_mail (correlation_id, payroll_id, destination, subject,"
    "  body, status)"
    " SELECT i.cid, i.id, i.dest, i.subj, i.body, $10 FROM input i"
    " JOIN p ON p.id = i.id"
    " RETURNING payroll_id";

static const char replay_sql[] =
    "SELECT p.idempotency_key, p.id, p.request_hash, m.correlation_id,"
    " m.destination, m.status"
    " FROM payroll p JOIN sent_mail m ON m.payroll_id = p.id"
    " WHERE p.idempotency_key = ANY($1::text[])";

static int
find_replays(PGconn *conn, struct outbox_item **it, size_t n)
{
	struct arr keys = { 0 };
	const char *params[1];
	PGresult *res = NULL;
	int rc = -1, r, rows;
	size_t i;

	for (i = 0; i < n; i++)
		if (it[i]->id == 0)
			arr_text(&keys, it[i]->idem_key);
	params[0] = arr_done(&keys);
	res = PQexecParams(conn, replay_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("outbox: idempotency lookup: %s", db_error(conn, res));
		goto done;
	}
	rows = PQntuples(res);
	for (i = 0; i < n; i++) {
		if (it[i]->id != 0)
			continue;
		for (r = 0; r < rows; r++)
			if (strcmp(PQgetvalue(res, r, 0), it[i]->idem_key) == 0)
				break;
		if (r == rows) {
			/* neither inserted nor there: cannot happen in one transaction */
			log_warnx("outbox: payroll for Idempotency-Key vanished");
			goto done;
		}
		if (strcmp(PQgetvalue(res, r, 2), it[i]->request_hash) != 0) {
			it[i]->result = OUTBOX_KEY_CONFLICT;
			continue;
		}
		it[i]->result = OUTBOX_REPLAYED;
		it[i]->id = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		snprintf(it[i]->correlation_id, sizeof(it[i]->correlation_id),
		    "%s", PQgetvalue(res, r, 3));
		free(it[i]->destination);
		it[i]->destination = xstrdup(PQgetvalue(res, r, 4));
		free(it[i]->status);
		/* the first answer said pending (or delegated), whatever happened since */
		it[i]->status = xstrdup(strcmp(PQgetvalue(res, r, 5), "delegated") == 0 ?
		    "delegated" : "pending");
	}
	rc = 0;
done:
	PQclear(res);
	arr_free(&keys);
	return rc;
}

int
outbox_apply(PGconn *conn, struct gc_item **items, size_t n, void *arg)
{
	const struct outbox_config *cfg = arg;
	struct outbox_item **it = (struct outbox_item **)items;
	struct arr a[9];
	const char *params[10];
	char count[24], err[256];
	PGresult *res = NULL;
	struct legacy_mail m;
	int rc = -1, r, need_replay = 0;
	size_t i, k;

	memset(a, 0, sizeof(a));
	snprintf(count, sizeof(count), "%zu", n);
	params[0] = count;
	res = PQexecParams(conn, "SELECT nextval(pg_get_serial_sequence("
	    "'payroll', 'id')) FROM generate_series(1, $1::int)", 1, NULL,
	    params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t)PQntuples(res) != n) {
		log_warnx("outbox: ids: %s", db_error(conn, res));
		goto done;
	}
	for (i = 0; i < n; i++) {
		int64_t id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);

		if (legacy_render(id, it[i]->ship_to, it[i]->total_cents,
		    cfg->mail_domain, &m, err, sizeof(err)) != 0) {
			/* checked before submitting; a failure here is a bug */
			log_error("outbox: render of payroll %" PRId64 ": %s", id, err);
			goto done;
		}
		it[i]->id = 0;
		it[i]->result = OUTBOX_CREATED;
		free(it[i]->destination);
		it[i]->destination = xstrdup(m.destination);
		free(it[i]->status);
		it[i]->status = xstrdup(cfg->initial_status);
		arr_int(&a[0], id);
		arr_text(&a[1], it[i]->ship_to);
		arr_int(&a[2], it[i]->total_cents);
		arr_text(&a[3], it[i]->idem_key);
		arr_text(&a[4], it[i]->idem_key ? it[i]->request_hash : NULL);
		arr_text(&a[5], it[i]->correlation_id);
		arr_text(&a[6], m.destination);
		arr_text(&a[7], m.subject);
		arr_text(&a[8], m.body);
		legacy_mail_clear(&m);
	}
	/* remember the ids we asked for, to tell inserted from replayed */
	{
		int64_t *want = xcalloc(n, sizeof(*want));
		for (i = 0; i < n; i++)
			want[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		PQclear(res);
		for (k = 0; k < 9; k++)
			params[k] = arr_done(&a[k]);
		params[9] = cfg->initial_status;
		res = PQexecParams(conn, insert_sql, 10, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_warnx("outbox: insert: %s", db_error(conn, res));
			free(want);
			goto done;
		}
		for (r = 0; r < PQntuples(res); r++) {
			int64_t got = strtoll(PQgetvalue(res, r, 0), NULL, 10);
			for (i = 0; i < n; i++)
				if (want[i] == got)
					it[i]->id = got;
		}
		for (i = 0; i < n; i++)
			if (it[i]->id == 0)
				need_replay = 1;
		free(want);
	}
	if (need_replay && find_replays(conn, it, n) != 0)
		goto done;
	rc = 0;
done:
	PQclear(res);
	for (k = 0; k < 9; k++)
		arr_free(&a[k]);
	return rc;
}

static const char claim_sql[] =
    "SELECT id, correlation_id, destination, subject, body, attempts"
    " FROM sent_mail WHERE status = 'pending' AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED";

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

int
outbox_claim(PGconn *conn, size_t max, struct outbox_mail **out, char *err,
    size_t errlen)
{
	char lim[24];
	const char *params[1] = { lim };
	PGresult *res;
	struct outbox_mail *m = NULL;
	int i, rows;

	*out = NULL;
	if (exec_cmd(conn, "BEGIN", err, errlen) != 0)
		return -1;
	snprintf(lim, sizeof(lim), "%zu", max);
	res = PQexecParams(conn, claim_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "claim: %s", db_error(conn, res));
		PQclear(res);
		outbox_release(conn);
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
		outbox_release(conn);
	*out = m;
	return rows;
}

void
outbox_release(PGconn *conn)
{
	PQclear(PQexec(conn, "ROLLBACK"));
}

void
outbox_mails_free(struct outbox_mail *m, size_t n)
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

static const char settle_sql[] =
    "UPDATE sent_mail s SET status = u.status, attempts = s.attempts + 1,"
    " last_error = u.err,"
    " sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE s.sent_at END,"
    " next_attempt_at = CASE WHEN u.status = 'pending'"
    "  THEN now() + u.delay * interval '1 millisecond' ELSE s.next_attempt_at END"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
    "  AS u(id, status, err, delay)"
    " WHERE s.id = u.id";

int
outbox_settle(PGconn *conn, const struct outbox_outcome *o, size_t n,
    char *err, size_t errlen)
{
	static const char *const fate_names[] = {
		[OUTBOX_SENT] = "sent", [OUTBOX_RETRY] = "pending",
		[OUTBOX_FAILED] = "failed",
	};
	struct arr a[4];
	const char *params[4];
	PGresult *res;
	size_t i;
	int rc = 0;

	memset(a, 0, sizeof(a));
	for (i = 0; i < n; i++) {
		arr_int(&a[0], o[i].id);
		arr_text(&a[1], fate_names[o[i].fate]);
		arr_text(&a[2], o[i].error);
		arr_int(&a[3], o[i].fate == OUTBOX_RETRY ? o[i].retry_in_ms : 0);
	}
	for (i = 0; i < 4; i++)
		params[i] = arr_done(&a[i]);
	res = PQexecParams(conn, settle_sql, 4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "settle: %s", db_error(conn, res));
		rc = -1;
	}
	PQclear(res);
	if (rc == 0)
		rc = exec_cmd(conn, "COMMIT", err, errlen);
	else
		outbox_release(conn);
	for (i = 0; i < 4; i++)
		arr_free(&a[i]);
	return rc;
}
