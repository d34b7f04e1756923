/*
 * store: see store.h. A batch is written in one of two ways:
 *
 * - the fast path, for a batch of ids that are all new (the usual case),
 *   one statement outside any transaction, which commits itself (one
 *   round trip to the server instead of three: BEGIN, the INSERT, COMMIT):
 *     WITH ins AS (INSERT ... SELECT * FROM unnest(five arrays)
 *       RETURNING correlation_id) INSERT INTO reconcile_queue SELECT ins
 *   plain INSERTs, each index entry found and written in one descent;
 * - the careful path, when the batch repeats an id, or the fast path met
 *   an id already stored (unique_violation: nothing of it was written),
 *   in a transaction of the committer's:
 *     WITH ins AS (INSERT ... ON CONFLICT (correlation_id) DO NOTHING
 *       RETURNING correlation_id) (the new ids into reconcile_queue)
 *     SELECT the new ids
 *   then one SELECT of the stored rows for the ids not inserted.
 *
 * A batch whose connection was lost is tried again (group_commit.h): if
 * the lost fast INSERT had committed, the second try meets its ids and
 * answers them the careful way, with the rows stored.
 *
 * ON CONFLICT costs a speculative insertion per row: a lookup in each
 * unique index before the insert, a speculative lock and a second descent
 * to insert; it was a sixth of the server's time per spy row. Repeated
 * ids are a client's retries: rare, and the careful path answers them.
 *
 * The batch is sorted by correlation id first (arrival order among equal
 * ids), so that concurrent committers take their index entries in one
 * order and cannot deadlock (both paths write an id's spied_mail entry,
 * the one that can be contended, before its reconcile_queue entry, as the
 * queue's rows come out of ins); within a batch the first request with an id
 * is the one inserted, as unnest() hands PostgreSQL the rows in array
 * order. In live mode the row goes in as 'pending' (due now): the record
 * and its place in the delivery outbox commit together, so an accepted
 * mail is never lost.
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/log.h"
#include "common/pg_array.h"
#include "common/util.h"

#define COLS 5

struct store {
	struct group_commit *gc;
	int live;
	store_done_fn done;
	void *arg;
};

static struct spy_record *
rec_of(struct gc_item *it)
{
	return (struct spy_record *)(void *)it;
}

/* The batch as five arrays, unnest()ed by the server: one statement
 * whatever the batch size, prepared once per connection, so the server
 * neither parses nor plans it per batch. The statement queues its new rows
 * for the reconciler itself (reconcile_queue, sql/queue.sql, version 4): the
 * session says so with reconcile_queue.caller_keeps, and the table's row
 * trigger, which would queue them one by one, stays out. */
#define INSERT_STMT "spy_insert"
#define INSERT_FAST_STMT "spy_insert_fast"
#define MAIL_COLS "INSERT INTO spied_mail (correlation_id, payroll_id," \
	" destination, subject, body"
#define UNNEST " unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]," \
	" $5::text[])"
#define LIVE_COLS ", status, next_attempt_at) SELECT c, p, d, s, b," \
	" 'pending', now() FROM" UNNEST " AS t(c, p, d, s, b)"
#define QUEUE_NEW_ROWS \
	" RETURNING correlation_id), queued AS (INSERT INTO reconcile_queue" \
	" (correlation_id) SELECT correlation_id FROM ins" \
	" ON CONFLICT DO NOTHING) SELECT correlation_id::text FROM ins"
#define QUEUE_ALL_ROWS \
	" RETURNING correlation_id) INSERT INTO reconcile_queue" \
	" (correlation_id) SELECT correlation_id FROM ins"
static const char insert_sql[] =
    "WITH ins AS (" MAIL_COLS ") SELECT * FROM" UNNEST
    " ON CONFLICT (correlation_id) DO NOTHING" QUEUE_NEW_ROWS;
static const char insert_live_sql[] =
    "WITH ins AS (" MAIL_COLS LIVE_COLS
    " ON CONFLICT (correlation_id) DO NOTHING" QUEUE_NEW_ROWS;
static const char insert_fast_sql[] =
    "WITH ins AS (" MAIL_COLS ") SELECT * FROM" UNNEST QUEUE_ALL_ROWS;
static const char insert_fast_live_sql[] =
    "WITH ins AS (" MAIL_COLS LIVE_COLS QUEUE_ALL_ROWS;

static int
prepare(PGconn *conn, const char *name, const char *sql)
{
	PGresult *res = PQprepare(conn, name, sql, COLS, NULL);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		log_warnx("prepare %s: %s", name, db_error(conn, res));
	PQclear(res);
	return ok ? 0 : -1;
}

/* Each committer connection prepares both INSERTs once (gc_setup_fn). */
static int
setup(PGconn *conn, void *arg)
{
	struct store *st = arg;
	PGresult *res;
	int ok;

	res = PQexec(conn, "SET reconcile_queue.caller_keeps = on");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_warnx("set reconcile_queue.caller_keeps: %s",
		    db_error(conn, res));
	PQclear(res);
	if (!ok || prepare(conn, INSERT_STMT, st->live ? insert_live_sql :
	    insert_sql) == -1)
		return -1;
	return prepare(conn, INSERT_FAST_STMT, st->live ?
	    insert_fast_live_sql : insert_fast_sql);
}

/* The first item of the sorted batch with this id, or NULL. */
static struct spy_record *
find_sorted(struct gc_item **items, size_t n, const char *id)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp(rec_of(items[mid])->correlation_id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && strcmp(rec_of(items[lo])->correlation_id, id) == 0)
		return rec_of(items[lo]);
	return NULL;
}

/*
 * Writes the batch (sorted by id, sort_by_id) by the fast path or the
 * careful one. 0 written; 1 the fast path met an id already stored (its
 * statement wrote nothing); -1 failed. The five arrays go in PostgreSQL's
 * binary format: the server copies each element where it would parse a
 * literal (quotes and escapes through every body), and the spy builds
 * them without escaping.
 */
static int
insert_rows(PGconn *conn, struct gc_item **items, size_t n, int fast)
{
	static const uint32_t types[COLS] = { PG_OID_UUID, PG_OID_INT8,
	    PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT };
	static const int formats[COLS] = { 1, 1, 1, 1, 1 };
	struct pg_array a[COLS];
	const char *params[COLS];
	int lengths[COLS];
	PGresult *res = NULL;
	struct spy_record *r;
	size_t i;
	int rc = -1, j;

	for (j = 0; j < COLS; j++)
		pg_array_init(&a[j], types[j]);
	for (i = 0; i < n; i++) {
		r = rec_of(items[i]);
		r->inserted = 0;
		if (pg_array_add_uuid(&a[0], r->correlation_id) == -1) {
			/* validate_object let it through: a bug, not input */
			log_warnx("correlation id '%s' is not a UUID",
			    r->correlation_id);
			goto out;
		}
		pg_array_add_int8(&a[1], r->payroll_id);
		pg_array_add_text(&a[2], r->mail.destination);
		pg_array_add_text(&a[3], r->mail.subject);
		pg_array_add_text(&a[4], r->mail.body);
	}
	for (j = 0; j < COLS; j++)
		params[j] = pg_array_value(&a[j], &lengths[j]);
	res = PQexecPrepared(conn, fast ? INSERT_FAST_STMT : INSERT_STMT, COLS,
	    params, lengths, formats, 0);
	if (fast && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : "", "23505") == 0) {
		rc = 1;
		goto out;
	}
	if (PQresultStatus(res) != (fast ? PGRES_COMMAND_OK :
	    PGRES_TUPLES_OK)) {
		log_warnx("insert spied_mail: %s", db_error(conn, res));
		goto out;
	}
	if (fast) {
		for (i = 0; i < n; i++)
			rec_of(items[i])->inserted = 1;
		rc = 0;
		goto out;
	}
	for (j = 0; j < PQntuples(res); j++) {
		if ((r = find_sorted(items, n, PQgetvalue(res, j, 0))) == NULL) {
			log_warnx("insert spied_mail returned an id not sent");
			goto out;
		}
		r->inserted = 1;
	}
	rc = 0;
out:
	PQclear(res);
	for (j = 0; j < COLS; j++)
		pg_array_free(&a[j]);
	return rc;
}

static int
fetch_first(PGconn *conn, struct gc_item **items, size_t n)
{
	struct spy_record *r;
	const char *param[1];
	PGresult *res = NULL;
	char *arr = NULL, *p;
	size_t i, missing = 0;
	int rc = -1, j;

	arr = xmalloc(n * 38 + 3);
	p = arr;
	*p++ = '{';
	for (i = 0; i < n; i++) {
		r = rec_of(items[i]);
		if (r->inserted)
			continue;
		if (missing++)
			*p++ = ',';
		memcpy(p, r->correlation_id, 36);
		p += 36;
	}
	*p++ = '}';
	*p = '\0';
	if (missing == 0) {
		rc = 0;
		goto out;
	}
	param[0] = arr;
	res = PQexecParams(conn, "SELECT correlation_id::text, destination, "
	    "subject, body FROM spied_mail WHERE correlation_id = ANY($1::uuid[])",
	    1, NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("select spied_mail: %s", db_error(conn, res));
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = rec_of(items[i]);
		if (r->inserted)
			continue;
		render_mail_clear(&r->first);	/* from an attempt that failed */
		for (j = 0; j < PQntuples(res); j++) {
			if (strcmp(PQgetvalue(res, j, 0), r->correlation_id) != 0)
				continue;
			r->first.destination = xstrdup(PQgetvalue(res, j, 1));
			r->first.subject = xstrdup(PQgetvalue(res, j, 2));
			r->first.body = xstrdup(PQgetvalue(res, j, 3));
			break;
		}
		if (r->first.destination == NULL) {
			log_warnx("spied_mail %s neither inserted nor found",
			    r->correlation_id);
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	free(arr);
	return rc;
}

struct by_id {
	struct gc_item *item;
	size_t arrival;
};

static int
cmp_by_id(const void *a, const void *b)
{
	const struct by_id *x = a, *y = b;
	int c = strcmp(rec_of(x->item)->correlation_id,
	    rec_of(y->item)->correlation_id);

	if (c != 0)
		return c;
	return (x->arrival > y->arrival) - (x->arrival < y->arrival);
}

/*
 * Orders the batch by correlation id, arrival order among equal ids. Every
 * committer's INSERT then takes its unique-index entries in one global
 * order, so two batches in flight at once that share ids wait for each
 * other but cannot deadlock; and the first request with an id still comes
 * first (it is the one inserted).
 */
static void
sort_by_id(struct gc_item **items, size_t n)
{
	struct by_id *v;
	size_t i;

	for (i = 1; i < n; i++)
		if (strcmp(rec_of(items[i - 1])->correlation_id,
		    rec_of(items[i])->correlation_id) > 0)
			break;
	if (i >= n)
		return;		/* already in order (one item, or by chance) */
	v = xcalloc(n, sizeof(*v));
	for (i = 0; i < n; i++) {
		v[i].item = items[i];
		v[i].arrival = i;
	}
	qsort(v, n, sizeof(*v), cmp_by_id);
	for (i = 0; i < n; i++)
		items[i] = v[i].item;
	free(v);
}

/* 1 when the sorted batch holds an id twice. */
static int
repeats(struct gc_item **items, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (strcmp(rec_of(items[i - 1])->correlation_id,
		    rec_of(items[i])->correlation_id) == 0)
			return 1;
	return 0;
}

/* The fast path (gc_commit_one_fn): outside a transaction, the INSERT
 * commits itself. 1 (the careful path) for repeats or a stored id. */
static int
commit_one(PGconn *conn, struct gc_item **items, size_t n, void *arg)
{
	int rc;

	(void)arg;
	sort_by_id(items, n);
	if (repeats(items, n))
		return 1;
	rc = insert_rows(conn, items, n, 1);
	if (rc == 1)
		log_debug("batch of %zu: an id is already stored, written "
		    "again with ON CONFLICT", n);
	return rc;
}

/* The careful path (gc_apply_fn), in the committer's transaction. */
static int
apply(PGconn *conn, struct gc_item **items, size_t n, void *arg)
{
	(void)arg;
	sort_by_id(items, n);
	if (insert_rows(conn, items, n, 0) == -1)
		return -1;
	return fetch_first(conn, items, n);
}

static void
done(struct gc_item *item, enum gc_outcome outcome, void *arg)
{
	struct store *st = arg;

	st->done(rec_of(item), outcome, st->arg);
}

struct store *
store_start(const char *conninfo, size_t max_batch, unsigned committers,
    int live, store_done_fn done_fn, void *arg)
{
	struct store *st = xcalloc(1, sizeof(*st));
	struct gc_config cfg;

	st->live = live;
	st->done = done_fn;
	st->arg = arg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.conninfo = conninfo;
	cfg.name = "postgresMicro";
	cfg.max_batch = max_batch;
	cfg.committers = committers;
	cfg.setup = setup;
	cfg.commit_one = commit_one;
	cfg.apply = apply;
	cfg.done = done;
	cfg.arg = st;
	st->gc = group_commit_start(&cfg);
	return st;
}

int
store_schema_ok(const char *conninfo, int live, char *err, size_t errlen)
{
	PGconn *conn = PQconnectdb(conninfo);
	PGresult *res = NULL;
	int rc = -1;

	if (errlen > 0)
		err[0] = '\0';
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "postgresMicro: %s", db_error(conn, NULL));
		goto out;
	}
	res = PQexec(conn, "SELECT to_regclass('reconcile_queue') IS NOT NULL,"
	    " (SELECT count(*) FROM information_schema.columns"
	    " WHERE table_schema = current_schema() AND table_name = 'spied_mail'"
	    " AND column_name IN ('status', 'attempts', 'last_error',"
	    " 'next_attempt_at', 'sent_at'))");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgresMicro: %s", db_error(conn, res));
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		snprintf(err, errlen, "postgresMicro has no reconcile_queue; apply "
		    "sql/micro.sql and sql/queue.sql (schema version 3 or later) "
		    "to postgresMicro first");
		rc = 0;
	} else if (live && strcmp(PQgetvalue(res, 0, 1), "5") != 0) {
		snprintf(err, errlen, "spied_mail has no delivery columns; apply "
		    "sql/micro.sql (schema version 2) to postgresMicro first");
		rc = 0;
	} else
		rc = 1;
out:
	err[strcspn(err, "\n")] = '\0';
	PQclear(res);
	PQfinish(conn);
	return rc;
}

void
store_submit(struct store *st, struct spy_record *rec)
{
	render_mail_clear(&rec->first);
	rec->inserted = 0;
	group_commit_submit(st->gc, &rec->gc);
}

size_t
store_pending(const struct store *st)
{
	return group_commit_pending(st->gc);
}

void
store_retry_now(struct store *st)
{
	group_commit_retry_now(st->gc);
}

void
store_stop(struct store *st)
{
	if (st == NULL)
		return;
	group_commit_stop(st->gc);
	free(st);
}

void
spy_record_free(struct spy_record *rec)
{
	if (rec == NULL)
		return;
	render_mail_clear(&rec->mail);
	render_mail_clear(&rec->first);
	free(rec->created);
	free(rec);
}
