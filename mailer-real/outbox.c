/*
 * outbox: see outbox.h. Batches travel to PostgreSQL as arrays
 * (common/pg_array.h, unnest()ed by the server), so a group commit of a
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
#include "common/pg_array.h"
#include "common/util.h"
#include "legacy_render.h"

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

/*
 * The payrolls and their mails in one statement, prepared once a session
 * (outbox_setup). Where the schema has the reconciler's queue
 * (sql/queue.sql) the statement queues the new mails itself, set-based,
 * and the session says so (reconcile_queue.caller_keeps), so the queue's
 * row trigger, a PL/pgSQL call and an INSERT per mail, stays out: about a
 * sixth of the statement's server time.
 */
#define INSERT_PAYROLLS \
    "WITH input AS (" \
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]," \
    "  $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::text[])" \
    "  AS t(id, ship_to, cents, ikey, rhash, cid, dest, subj, body)" \
    "), p AS (" \
    " INSERT INTO payroll (id, ship_to, total, idempotency_key, request_hash)" \
    " OVERRIDING SYSTEM VALUE" \
    " SELECT id, ship_to, cents::numeric / 100, ikey, rhash FROM input" \
    " ORDER BY id" \
    " ON CONFLICT (idempotency_key) DO NOTHING" \
    " RETURNING id" \
    ")"
#define INSERT_MAILS \
    " INSERT INTO sent_mail (correlation_id, payroll_id, destination, subject," \
    "  body, status)" \
    " SELECT i.cid, i.id, i.dest, i.subj, i.body, $10::text FROM input i" \
    " JOIN p ON p.id = i.id"
static const char insert_sql[] =
    INSERT_PAYROLLS INSERT_MAILS " RETURNING payroll_id";
static const char insert_queued_sql[] =
    INSERT_PAYROLLS ", m AS (" INSERT_MAILS
    " RETURNING payroll_id, correlation_id"
    "), q AS ("
    " INSERT INTO reconcile_queue (correlation_id)"
    " SELECT correlation_id FROM m ON CONFLICT DO NOTHING"
    ")"
    " SELECT payroll_id FROM m";

static const char ids_sql[] =
    "SELECT nextval(pg_get_serial_sequence('payroll', 'id'))"
    " FROM generate_series(1, $1::int)";

static int
exec_ok(PGconn *conn, const char *what, PGresult *res, ExecStatusType want)
{
	int ok = PQresultStatus(res) == want;

	if (!ok)
		log_warnx("outbox: %s: %s", what, db_error(conn, res));
	PQclear(res);
	return ok;
}

int
outbox_setup(PGconn *conn, void *arg)
{
	PGresult *res;
	int queued;

	(void)arg;
	/*
	 * DB_KEY_PLANS: the foreign key's check of each new mail against
	 * payroll is planned once a session, and planned on the statistics
	 * of a payroll table analyzed while (nearly) empty it was a
	 * sequential scan per mail, slower with every payroll accepted (over
	 * 400 us of server time a payroll after 19,200 of them).
	 */
	if (!exec_ok(conn, "session settings", PQexec(conn, DB_KEY_PLANS),
	    PGRES_COMMAND_OK))
		return -1;
	res = PQexec(conn, "SELECT to_regclass('reconcile_queue') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		exec_ok(conn, "schema", res, PGRES_TUPLES_OK);
		return -1;
	}
	queued = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (queued && !exec_ok(conn, "reconcile_queue.caller_keeps", PQexec(conn,
	    "SET reconcile_queue.caller_keeps = on"), PGRES_COMMAND_OK))
		return -1;
	if (!exec_ok(conn, "prepare", PQprepare(conn, "outbox_ids", ids_sql, 1,
	    NULL), PGRES_COMMAND_OK))
		return -1;
	if (!exec_ok(conn, "prepare", PQprepare(conn, "outbox_insert", queued ?
	    insert_queued_sql : insert_sql, 10, NULL), PGRES_COMMAND_OK))
		return -1;
	return 0;
}

static const char replay_sql[] =
    "SELECT p.idempotency_key, p.id, p.request_hash, m.correlation_id,"
    " m.destination, m.status"
    " FROM payroll p JOIN sent_mail m ON m.payroll_id = p.id"
    " WHERE p.idempotency_key = ANY($1::text[])";

static int
find_replays(PGconn *conn, struct outbox_item **it, size_t n)
{
	static const int formats[1] = { 1 };
	struct pg_array keys;
	const char *params[1];
	int lengths[1];
	PGresult *res = NULL;
	int rc = -1, r, rows;
	size_t i;

	pg_array_init(&keys, PG_OID_TEXT);
	for (i = 0; i < n; i++)
		if (it[i]->id == 0)
			pg_array_add_text(&keys, it[i]->idem_key);
	params[0] = pg_array_value(&keys, &lengths[0]);
	res = PQexecParams(conn, replay_sql, 1, NULL, params, lengths, formats, 0);
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
	pg_array_free(&keys);
	return rc;
}

int
outbox_apply(PGconn *conn, struct gc_item **items, size_t n, void *arg)
{
	const struct outbox_config *cfg = arg;
	struct outbox_item **it = (struct outbox_item **)items;
	/* bigint, text, bigint, text, text, uuid, text, text, text; then $10 */
	static const uint32_t types[9] = { PG_OID_INT8, PG_OID_TEXT, PG_OID_INT8,
		PG_OID_TEXT, PG_OID_TEXT, PG_OID_UUID, PG_OID_TEXT, PG_OID_TEXT,
		PG_OID_TEXT };
	static const int formats[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 };
	struct pg_array a[9];
	const char *params[10];
	int lengths[10] = { 0 };
	char count[24], err[256];
	PGresult *res = NULL;
	struct legacy_mail m;
	int rc = -1, r, need_replay = 0;
	size_t i, k;

	for (k = 0; k < 9; k++)
		pg_array_init(&a[k], types[k]);
	snprintf(count, sizeof(count), "%zu", n);
	params[0] = count;
	res = PQexecPrepared(conn, "outbox_ids", 1, params, NULL, NULL, 0);
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
		pg_array_add_int8(&a[0], id);
		pg_array_add_text(&a[1], it[i]->ship_to);
		pg_array_add_int8(&a[2], it[i]->total_cents);
		pg_array_add_text(&a[3], it[i]->idem_key);
		pg_array_add_text(&a[4], it[i]->idem_key ? it[i]->request_hash : NULL);
		if (pg_array_add_uuid(&a[5], it[i]->correlation_id) == -1) {
			/* made by ids_uuid; anything else is a bug */
			log_error("outbox: correlation id %s is not a UUID",
			    it[i]->correlation_id);
			legacy_mail_clear(&m);
			goto done;
		}
		pg_array_add_text(&a[6], m.destination);
		pg_array_add_text(&a[7], m.subject);
		pg_array_add_text(&a[8], m.body);
		legacy_mail_clear(&m);
	}
	/* remember the ids we asked for, to tell inserted from replayed */
	{
		int64_t *want = xcalloc(n, sizeof(*want));
		for (i = 0; i < n; i++)
			want[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		PQclear(res);
		for (k = 0; k < 9; k++)
			params[k] = pg_array_value(&a[k], &lengths[k]);
		params[9] = cfg->initial_status;
		res = PQexecPrepared(conn, "outbox_insert", 10, params, lengths,
		    formats, 0);
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
		pg_array_free(&a[k]);
	return rc;
}
