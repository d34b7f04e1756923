/*
 * runstore: see runstore.h. Timestamps come back as ISO 8601 in UTC so the
 * reports read the same whatever the session's TimeZone.
 */
#include "reconciler/runstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "reconciler/pg.h"

#define ISO(col) "to_char(" col " at time zone 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

int
runstore_cutoff(PGconn *mono, long grace, char *out, size_t outlen, char *err,
    size_t errlen)
{
	char g[24];
	const char *vals[1] = { g };
	PGresult *res;

	snprintf(g, sizeof(g), "%ld", grace);
	res = PQexecParams(mono, "select extract(epoch from now() - "
	    "make_interval(secs => $1::int))::text", 1, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono", err, errlen) == -1)
		return -1;
	strlcpy_(out, PQgetvalue(res, 0, 0), outlen);
	PQclear(res);
	return 0;
}

int
runstore_begin(PGconn *mono, const struct shard *sh, long grace,
    const char *cutoff, const char *rules_file, int64_t *run_id, char *err,
    size_t errlen)
{
	char k[16], n[16], g[24];
	const char *vals[5] = { k, n, g, cutoff, rules_file };
	PGresult *res;

	snprintf(k, sizeof(k), "%d", sh->k);
	snprintf(n, sizeof(n), "%d", sh->n);
	snprintf(g, sizeof(g), "%ld", grace);
	res = PQexecParams(mono, "update reconciliation_run set status = "
	    "'aborted', finished_at = now(), error = 'the process ended before "
	    "the run finished' where status = 'running' and shard_k = $1::int "
	    "and shard_n = $2::int", 2, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: closing "
	    "aborted runs", err, errlen) == -1)
		return -1;
	PQclear(res);
	res = PQexecParams(mono, "insert into reconciliation_run (shard_k, "
	    "shard_n, grace_seconds, cutoff, rules_file) values ($1::int, "
	    "$2::int, $3::int, to_timestamp($4::float8), $5) returning id", 5,
	    NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: opening the run",
	    err, errlen) == -1)
		return -1;
	*run_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int
runstore_finish(PGconn *mono, int64_t run_id, const char *status,
    const struct run_counts *c, const struct rules *rules,
    const uint64_t *hits, const char *error, char *err, size_t errlen)
{
	char *sql = NULL, *p, id[24], *vals[32];
	const char *cvals[32];
	json_t *arr = json_array();
	size_t i, nv = 0;
	int rc = -1;
	PGresult *res;

	for (i = 0; i < rules_count(rules); i++)
		json_array_append_new(arr, json_pack("{s:s, s:I}", "rule",
		    rules_name(rules, i), "absorbed", (json_int_t)hits[i]));
	snprintf(id, sizeof(id), "%lld", (long long)run_id);
	cvals[nv++] = id;
	cvals[nv++] = status;
	cvals[nv++] = error;
	cvals[nv++] = p = json_dumps(arr, JSON_COMPACT);
	sql = xstrdup("update reconciliation_run set finished_at = now(), "
	    "status = $2, error = $3, rule_counts = $4::jsonb");
	for (i = 0; i < run_ncount_fields; i++) {
		char *s = xasprintf("%s, %s = $%zu::int8", sql,
		    run_count_fields[i].name, nv + 1);
		free(sql);
		sql = s;
		vals[i] = xasprintf("%lld", (long long)*run_count(
		    (struct run_counts *)c, i));
		cvals[nv++] = vals[i];
	}
	p = xasprintf("%s where id = $1::int8", sql);
	free(sql);
	sql = p;
	res = PQexecParams(mono, sql, (int)nv, NULL, cvals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: closing the run",
	    err, errlen) == 0) {
		PQclear(res);
		rc = 0;
	}
	free((char *)cvals[3]);
	for (i = 0; i < run_ncount_fields; i++)
		free(vals[i]);
	free(sql);
	json_decref(arr);
	return rc;
}

static char *
dup_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL :
	    xstrdup(PQgetvalue(res, row, col));
}

static void
parse_rules(struct run_summary *s, const char *text)
{
	json_t *arr = json_loads(text, 0, NULL), *o;
	size_t i;

	if (!json_is_array(arr)) {
		json_decref(arr);
		return;
	}
	s->rules = xcalloc(json_array_size(arr) + 1, sizeof(*s->rules));
	json_array_foreach(arr, i, o) {
		const char *name = json_string_value(json_object_get(o, "rule"));
		s->rules[s->nrules].name = xstrdup(name ? name : "?");
		s->rules[s->nrules].count = (int64_t)json_integer_value(
		    json_object_get(o, "absorbed"));
		s->nrules++;
	}
	json_decref(arr);
}

int
runstore_load(PGconn *mono, int64_t id, struct run_summary *s, char *err,
    size_t errlen)
{
	char *sql = xstrdup("select id, status, " ISO("started_at") ", "
	    ISO("finished_at") ", " ISO("cutoff") ", rules_file, error, "
	    "grace_seconds, shard_k, shard_n, rule_counts::text"), *p;
	char idbuf[24];
	const char *vals[1] = { idbuf };
	PGresult *res;
	size_t i;
	int found = 0;

	for (i = 0; i < run_ncount_fields; i++) {
		p = xasprintf("%s, %s", sql, run_count_fields[i].name);
		free(sql);
		sql = p;
	}
	p = xasprintf("%s from reconciliation_run where %s", sql, id > 0 ?
	    "id = $1::int8" : "$1::int8 = 0 order by id desc limit 1");
	free(sql);
	sql = p;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	res = PQexecParams(mono, sql, 1, NULL, vals, NULL, NULL, 0);
	free(sql);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading the run",
	    err, errlen) == -1)
		return -1;
	if (PQntuples(res) == 1) {
		memset(s, 0, sizeof(*s));
		s->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		s->status = dup_or_null(res, 0, 1);
		s->started_at = dup_or_null(res, 0, 2);
		s->finished_at = dup_or_null(res, 0, 3);
		s->cutoff = dup_or_null(res, 0, 4);
		s->rules_file = dup_or_null(res, 0, 5);
		s->error = dup_or_null(res, 0, 6);
		s->grace = strtol(PQgetvalue(res, 0, 7), NULL, 10);
		s->shard_k = (int)strtol(PQgetvalue(res, 0, 8), NULL, 10);
		s->shard_n = (int)strtol(PQgetvalue(res, 0, 9), NULL, 10);
		parse_rules(s, PQgetvalue(res, 0, 10));
		for (i = 0; i < run_ncount_fields; i++)
			*run_count(&s->c, i) = strtoll(PQgetvalue(res, 0,
			    (int)(11 + i)), NULL, 10);
		found = 1;
	}
	PQclear(res);
	return found;
}

struct db_iter {
	PGconn *conn;
	PGresult *res;
	struct mismatch m;
	int done;
	char err[512];
};

void
runstore_row(const PGresult *res, int row, struct mismatch *m)
{
	int f;

	m->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	m->run_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	m->cid = dup_or_null(res, row, 2);
	m->kind = dup_or_null(res, row, 3);
	m->fields = dup_or_null(res, row, 4);
	for (f = 0; f < 3; f++) {
		m->mono[f] = dup_or_null(res, row, 5 + f);
		m->micro[f] = dup_or_null(res, row, 8 + f);
	}
	m->found_at = dup_or_null(res, row, 11);
	m->resolved_at = dup_or_null(res, row, 12);
	m->resolution = dup_or_null(res, row, 13);
	m->note = dup_or_null(res, row, 14);
	m->cluster_id = PQgetisnull(res, row, 15) ? 0 :
	    strtoll(PQgetvalue(res, row, 15), NULL, 10);
}

static int
db_next(void *ctx, struct mismatch *out)
{
	struct db_iter *it = ctx;
	struct mismatch *m = &it->m;
	PGresult *res;

	mismatch_clear(m);
	if (it->done)
		return it->err[0] ? -1 : 0;
	PQclear(it->res);
	it->res = res = PQgetResult(it->conn);
	if (res == NULL || PQresultStatus(res) == PGRES_TUPLES_OK) {
		/* The end: drain what is left (the final NULL). */
		PQclear(it->res);
		it->res = NULL;
		while ((res = PQgetResult(it->conn)) != NULL)
			PQclear(res);
		it->done = 1;
		return 0;
	}
	if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) {
		snprintf(it->err, sizeof(it->err), "postgresMono: reading "
		    "mismatches: %s", PQresultErrorMessage(res));
		it->done = 1;
		return -1;
	}
	runstore_row(res, 0, m);
	*out = *m;
	return 1;
}

static const char *const where[] = {
		[RUNSTORE_RUN] = "run_id = $1::int8",
		[RUNSTORE_OPEN] = "resolved_at is null and $1::int8 = 0",
		[RUNSTORE_ALL] = "$1::int8 = 0",
		[RUNSTORE_CLUSTER_OPEN] = "cluster_id = $1::int8 and "
		    "resolved_at is null",
		[RUNSTORE_CLUSTER_ALL] = "cluster_id = $1::int8",
};

#define MISMATCH_COLUMNS "select id, run_id, correlation_id::text, kind, " \
	"array_to_string(fields, ','), mono_destination, mono_subject, " \
	"mono_body, micro_destination, micro_subject, micro_body, " \
	ISO("found_at") ", " ISO("resolved_at") ", resolution, note, " \
	"cluster_id from reconciliation_mismatch"

PGresult *
runstore_page(PGconn *mono, enum runstore_filter f, int64_t id,
    int64_t after, int limit, char *err, size_t errlen)
{
	char idbuf[24], afterbuf[24], limbuf[16], *sql;
	const char *vals[3] = { idbuf, afterbuf, limbuf };
	PGresult *res;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	snprintf(afterbuf, sizeof(afterbuf), "%lld", (long long)after);
	snprintf(limbuf, sizeof(limbuf), "%d", limit);
	sql = xasprintf(MISMATCH_COLUMNS " where %s and id > $2::int8 order by "
	    "id limit $3::int", where[f]);
	res = PQexecParams(mono, sql, 3, NULL, vals, NULL, NULL, 0);
	free(sql);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading "
	    "mismatches", err, errlen) == -1)
		return NULL;
	return res;
}

int
runstore_mismatches(PGconn *mono, enum runstore_filter f, int64_t run_id,
    struct mismatch_iter *out, char *err, size_t errlen)
{
	char *sql, idbuf[24];
	const char *vals[1] = { idbuf };
	struct db_iter *it;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)run_id);
	sql = xasprintf(MISMATCH_COLUMNS " where %s order by id", where[f]);
	if (!PQsendQueryParams(mono, sql, 1, NULL, vals, NULL, NULL, 0) ||
	    !PQsetSingleRowMode(mono)) {
		snprintf(err, errlen, "postgresMono: reading mismatches: %s",
		    PQerrorMessage(mono));
		free(sql);
		return -1;
	}
	free(sql);
	it = xcalloc(1, sizeof(*it));
	it->conn = mono;
	out->next = db_next;
	out->ctx = it;
	return 0;
}

const char *
runstore_iter_error(const struct mismatch_iter *out)
{
	const struct db_iter *it = out->ctx;

	return it ? it->err : "";
}

void
runstore_iter_free(struct mismatch_iter *out)
{
	struct db_iter *it = out->ctx;
	PGresult *res;

	if (it == NULL)
		return;
	mismatch_clear(&it->m);
	PQclear(it->res);
	if (!it->done)
		while ((res = PQgetResult(it->conn)) != NULL)
			PQclear(res);
	free(it);
	out->ctx = NULL;
}

int
runstore_ack(PGconn *mono, PGconn *micro, int64_t id, const char *note,
    char *err, size_t errlen)
{
	char idbuf[24], cid[40];
	const char *vals[2] = { idbuf, note };
	const char *cvals[1] = { cid };
	PGresult *res;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	res = PQexecParams(mono, "select correlation_id::text, resolved_at is "
	    "not null from reconciliation_mismatch where id = $1::int8", 1,
	    NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono", err, errlen) == -1)
		return -1;
	if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
		snprintf(err, errlen, "mismatch %lld %s", (long long)id,
		    PQntuples(res) == 0 ? "does not exist" : "is already resolved");
		PQclear(res);
		return 1;
	}
	strlcpy_(cid, PQgetvalue(res, 0, 0), sizeof(cid));
	PQclear(res);

	res = PQexecParams(micro, "update spied_mail set consumed_at = now() "
	    "where correlation_id = $1::uuid and consumed_at is null", 1, NULL,
	    cvals, NULL, NULL, 0);
	if (pg_ok(micro, res, PGRES_COMMAND_OK, "postgresMicro: consuming",
	    err, errlen) == -1)
		return -1;
	PQclear(res);
	if (pg_command(mono, "begin", "postgresMono", err, errlen) == -1)
		return -1;
	res = PQexecParams(mono, "update reconciliation_mismatch set "
	    "resolved_at = now(), resolution = 'ack', note = $2 where id = "
	    "$1::int8 and resolved_at is null", 2, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: resolving", err,
	    errlen) == -1)
		return -1;
	if (strcmp(PQcmdTuples(res), "0") == 0) {
		/* A run (late partner) or another ack got there between our
		 * look and this update: theirs stands, and we say so. */
		PQclear(res);
		res = PQexec(mono, "rollback");
		PQclear(res);
		snprintf(err, errlen, "mismatch %lld was resolved meanwhile",
		    (long long)id);
		return 1;
	}
	PQclear(res);
	res = PQexecParams(mono, "update sent_mail set consumed_at = now() "
	    "where correlation_id = $1::uuid and consumed_at is null", 1, NULL,
	    cvals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: consuming", err,
	    errlen) == -1)
		return -1;
	PQclear(res);
	return pg_command(mono, "commit", "postgresMono commit", err, errlen);
}
