/*
 * store: see store.h. One batch is one multi-row
 *   INSERT ... ON CONFLICT (correlation_id) DO NOTHING RETURNING correlation_id
 * and, when some rows were not inserted (ids already stored, or repeated
 * inside the batch), one SELECT of the stored rows for those ids, both in
 * the committer's transaction. Within a batch the first request with an id
 * is the one inserted, as PostgreSQL inserts VALUES rows in order. In live
 * mode the row goes in as 'pending' (due now): the record and its place
 * in the delivery outbox commit together, so an accepted mail is never lost.
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/log.h"
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

static int
insert_rows(PGconn *conn, struct gc_item **items, size_t n, int live)
{
	const char **vals = xcalloc(n * COLS, sizeof(*vals));
	char (*ids)[24] = xcalloc(n, sizeof(*ids));
	struct { char *p; size_t len; } sql = { NULL, 0 };
	PGresult *res = NULL;
	size_t i, j, k;
	int rc = -1, rows;
	char *part;

	sql.p = xasprintf("INSERT INTO spied_mail (correlation_id, payroll_id, "
	    "destination, subject, body%s) VALUES ",
	    live ? ", status, next_attempt_at" : "");
	sql.len = strlen(sql.p);
	for (i = 0; i < n; i++) {
		struct spy_record *r = rec_of(items[i]);

		snprintf(ids[i], sizeof(ids[i]), "%" PRId64, r->payroll_id);
		vals[i * COLS + 0] = r->correlation_id;
		vals[i * COLS + 1] = ids[i];
		vals[i * COLS + 2] = r->mail.destination;
		vals[i * COLS + 3] = r->mail.subject;
		vals[i * COLS + 4] = r->mail.body;
		r->inserted = 0;
		k = i * COLS;
		part = xasprintf("%s($%zu::uuid, $%zu::bigint, $%zu, $%zu, $%zu%s)",
		    i ? ", " : "", k + 1, k + 2, k + 3, k + 4, k + 5,
		    live ? ", 'pending', now()" : "");
		sql.p = xrealloc(sql.p, sql.len + strlen(part) + 1);
		memcpy(sql.p + sql.len, part, strlen(part) + 1);
		sql.len += strlen(part);
		free(part);
	}
	part = xasprintf("%s ON CONFLICT (correlation_id) DO NOTHING "
	    "RETURNING correlation_id::text", sql.p);
	free(sql.p);
	sql.p = part;

	res = PQexecParams(conn, sql.p, (int)(n * COLS), NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("insert spied_mail: %s", db_error(conn, res));
		goto out;
	}
	rows = PQntuples(res);
	for (j = 0; j < (size_t)rows; j++) {
		const char *id = PQgetvalue(res, (int)j, 0);

		for (i = 0; i < n; i++) {
			struct spy_record *r = rec_of(items[i]);

			if (strcmp(r->correlation_id, id) == 0) {
				r->inserted = 1;
				break;
			}
		}
	}
	rc = 0;
out:
	PQclear(res);
	free(sql.p);
	free(vals);
	free(ids);
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

static int
apply(PGconn *conn, struct gc_item **items, size_t n, void *arg)
{
	struct store *st = arg;

	if (insert_rows(conn, items, n, st->live) == -1)
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
store_start(const char *conninfo, size_t max_batch, int live,
    store_done_fn done_fn, void *arg)
{
	struct store *st = xcalloc(1, sizeof(*st));

	st->live = live;
	st->done = done_fn;
	st->arg = arg;
	st->gc = group_commit_start(conninfo, "postgresMicro", max_batch, apply,
	    done, st);
	return st;
}

int
store_live_schema_ok(const char *conninfo, char *err, size_t errlen)
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
	res = PQexec(conn, "SELECT count(*) FROM information_schema.columns"
	    " WHERE table_schema = current_schema() AND table_name = 'spied_mail'"
	    " AND column_name IN ('status', 'attempts', 'last_error',"
	    " 'next_attempt_at', 'sent_at')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgresMicro: %s", db_error(conn, res));
		goto out;
	}
	rc = strcmp(PQgetvalue(res, 0, 0), "5") == 0;
	if (!rc)
		snprintf(err, errlen, "spied_mail has no delivery columns; apply "
		    "sql/micro.sql (schema version 2) to postgresMicro first");
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
	free(rec);
}
