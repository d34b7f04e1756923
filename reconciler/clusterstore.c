/*
 * clusterstore: see clusterstore.h. Signatures are computed here in C
 * (cluster.c) and hashed by the server (sha256), so a signature of any
 * length is one fixed-size unique key.
 */
#include "reconciler/clusterstore.h"

#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"
#include "reconciler/cluster.h"
#include "reconciler/pg.h"
#include "reconciler/result.h"

#define ISO(col) "to_char(" col " at time zone 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The advisory lock of the clustering step: the runs' class, key 0 (no
 * shard's key: those are N * 1025 + K). */
#define CLUSTER_LOCK "select pg_advisory_xact_lock(1380270897, 0)"
#define ASSIGN_BATCH_TEXT "2000"
#define BYTEAOID 17

/* What readers see: folded counts plus the changes not folded yet. */
#define CLUSTER_SELECT "select c.id, c.kind, array_to_string(c.fields, ','), " \
	"c.signature, m.correlation_id::text, c.example_id, " \
	ISO("c.first_seen") ", " ISO("c.last_seen") ", " \
	"c.members + coalesce(d.dm, 0), c.open_members + coalesce(d.dopen, 0)"
#define CLUSTER_FROM " from reconciliation_cluster c " \
	"left join reconciliation_mismatch m on m.id = c.example_id " \
	"left join lateral (select sum(d_members) dm, sum(d_open) dopen " \
	"from reconciliation_cluster_delta where cluster_id = c.id) d on true"

/* begin, then the clustering lock. 0 or -1 (rolled back). */
static int
begin_locked(PGconn *mono, char *err, size_t errlen)
{
	PGresult *res;

	if (pg_command(mono, "begin", "postgresMono", err, errlen) == -1)
		return -1;
	res = PQexec(mono, CLUSTER_LOCK);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: cluster lock",
	    err, errlen) == -1) {
		PQclear(PQexec(mono, "rollback"));
		return -1;
	}
	PQclear(res);
	return 0;
}

struct member {
	char *sig;
	int64_t id;
};

static int
member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->sig, y->sig);

	return c != 0 ? c : (x->id > y->id) - (x->id < y->id);
}

int
clusterstore_fold(PGconn *mono, char *err, size_t errlen)
{
	PGresult *res;

	res = PQexec(mono, "with d as (delete from reconciliation_cluster_delta "
	    "returning *), s as (select cluster_id, sum(d_members) dm, "
	    "sum(d_open) dopen from d group by cluster_id) "
	    "update reconciliation_cluster c set members = members + s.dm, "
	    "open_members = open_members + s.dopen from s where c.id = "
	    "s.cluster_id");
	return pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: folding "
	    "cluster counts", err, errlen) == 0 ? (PQclear(res), 0) : -1;
}

/* One group of members sharing a signature: its cluster, their cluster_id,
 * the cluster's counts. */
static int
assign_group(PGconn *mono, const struct member *g, size_t n, const char *kind,
    const char *fields, char *err, size_t errlen)
{
	struct strbuf ids = STRBUF_INIT;
	char *farr = xasprintf("{%s}", fields ? fields : ""), ex[24];
	const char *vals[6];
	int lens[6] = { 0 }, fmts[6] = { 0 };
	Oid types[6] = { BYTEAOID, 0, 0, 0, 0, 0 };
	PGresult *res = NULL;
	size_t i;
	int rc = -1;

	strbuf_str(&ids, "{");
	for (i = 0; i < n; i++)
		strbuf_printf(&ids, "%s%lld", i ? "," : "", (long long)g[i].id);
	strbuf_str(&ids, "}");
	snprintf(ex, sizeof(ex), "%lld", (long long)g[0].id);
	vals[0] = g[0].sig;
	lens[0] = (int)strlen(g[0].sig);
	fmts[0] = 1;
	vals[1] = g[0].sig;
	vals[2] = kind;
	vals[3] = farr;
	vals[4] = ids.p;
	vals[5] = ex;
	res = PQexecParams(mono, "with g as (select min(found_at) f, "
	    "max(found_at) l from reconciliation_mismatch where id = "
	    "any($5::int8[])) insert into reconciliation_cluster "
	    "(signature_hash, signature, kind, fields, example_id, first_seen, "
	    "last_seen) select sha256($1), left($2, 4000), $3, $4::text[], "
	    "$6::int8, g.f, g.l from g on conflict (signature_hash) do update "
	    "set first_seen = least(reconciliation_cluster.first_seen, "
	    "excluded.first_seen), last_seen = greatest("
	    "reconciliation_cluster.last_seen, excluded.last_seen) returning id",
	    6, types, vals, lens, fmts, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: storing a cluster",
	    err, errlen) == -1)
		goto out;
	snprintf(ex, sizeof(ex), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	vals[0] = ex;
	vals[1] = ids.p;
	res = PQexecParams(mono, "with m as (update reconciliation_mismatch set "
	    "cluster_id = $1::int8 where id = any($2::int8[]) and cluster_id is "
	    "null returning resolved_at) update reconciliation_cluster set "
	    "members = members + (select count(*) from m), open_members = "
	    "open_members + (select count(*) from m where resolved_at is null) "
	    "where id = $1::int8", 2, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_COMMAND_OK, "postgresMono: clustering "
	    "mismatches", err, errlen) == -1)
		goto out;
	PQclear(res);
	rc = 0;
out:
	strbuf_free(&ids);
	free(farr);
	return rc;
}

/* One batch: 1 assigned some, 0 nothing left, -1 error. */
static int
assign_batch(PGconn *mono, char *err, size_t errlen)
{
	PGresult *res = NULL;
	struct member *mem = NULL;
	struct mismatch m;
	char **kinds = NULL, **fields = NULL;
	int n = 0, i, j, f, rc = -1;

	if (begin_locked(mono, err, errlen) == -1)
		return -1;
	res = PQexec(mono, "select id, kind, array_to_string(fields, ','), "
	    "mono_destination, mono_subject, mono_body, micro_destination, "
	    "micro_subject, micro_body from reconciliation_mismatch where "
	    "cluster_id is null order by id limit " ASSIGN_BATCH_TEXT);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading "
	    "mismatches to cluster", err, errlen) == -1) {
		res = NULL;
		goto out;
	}
	n = PQntuples(res);
	mem = xcalloc((size_t)n + 1, sizeof(*mem));
	kinds = xcalloc((size_t)n + 1, sizeof(*kinds));
	fields = xcalloc((size_t)n + 1, sizeof(*fields));
	for (i = 0; i < n; i++) {
		memset(&m, 0, sizeof(m));
		m.kind = PQgetvalue(res, i, 1);
		m.fields = PQgetvalue(res, i, 2);
		for (f = 0; f < 3; f++) {
			m.mono[f] = PQgetisnull(res, i, 3 + f) ? NULL :
			    PQgetvalue(res, i, 3 + f);
			m.micro[f] = PQgetisnull(res, i, 6 + f) ? NULL :
			    PQgetvalue(res, i, 6 + f);
		}
		mem[i].sig = cluster_signature(&m);
		mem[i].id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	}
	/* kind and fields of a group: any member's (they are in the
	 * signature). Keep them by id before sorting. */
	for (i = 0; i < n; i++) {
		kinds[i] = PQgetvalue(res, i, 1);
		fields[i] = PQgetvalue(res, i, 2);
	}
	{
		/* Sort members, carrying their row index in id order. */
		struct member *sorted = xcalloc((size_t)n + 1, sizeof(*sorted));
		memcpy(sorted, mem, (size_t)n * sizeof(*mem));
		qsort(sorted, (size_t)n, sizeof(*sorted), member_cmp);
		for (i = 0; i < n; i = j) {
			int row = 0;
			for (j = i + 1; j < n && strcmp(sorted[j].sig,
			    sorted[i].sig) == 0; j++)
				;
			/* The row of the group's first member. */
			for (row = 0; row < n && mem[row].id != sorted[i].id;
			    row++)
				;
			if (assign_group(mono, sorted + i, (size_t)(j - i),
			    kinds[row], fields[row], err, errlen) == -1) {
				free(sorted);
				goto out;
			}
		}
		free(sorted);
	}
	if (clusterstore_fold(mono, err, errlen) == -1)
		goto out;
	if (pg_command(mono, "commit", "postgresMono: commit", err,
	    errlen) == -1)
		goto out;
	rc = n > 0;
out:
	if (rc == -1)
		PQclear(PQexec(mono, "rollback"));
	for (i = 0; i < n; i++)
		free(mem[i].sig);
	free(mem);
	free(kinds);
	free(fields);
	PQclear(res);
	return rc;
}

int
clusterstore_assign(PGconn *mono, char *err, size_t errlen)
{
	int rc;

	while ((rc = assign_batch(mono, err, errlen)) == 1)
		;
	return rc;
}

static char *
dup_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL :
	    xstrdup(PQgetvalue(res, row, col));
}

static void
read_row(const PGresult *res, int i, struct cluster_row *c)
{
	memset(c, 0, sizeof(*c));
	c->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	c->kind = dup_or_null(res, i, 1);
	c->fields = dup_or_null(res, i, 2);
	c->signature = dup_or_null(res, i, 3);
	c->example_cid = dup_or_null(res, i, 4);
	c->example_id = strtoll(PQgetvalue(res, i, 5), NULL, 10);
	c->first_seen = dup_or_null(res, i, 6);
	c->last_seen = dup_or_null(res, i, 7);
	c->count = strtoll(PQgetvalue(res, i, 8), NULL, 10);
	c->open = strtoll(PQgetvalue(res, i, 9), NULL, 10);
	c->in_run = -1;
}

int
clusterstore_list(PGconn *mono, enum cluster_scope scope, int64_t run_id,
    size_t limit, struct cluster_list *l, char *err, size_t errlen)
{
	static const char *const tail[] = {
		[CLUSTERS_RUN] = ", r.n, count(*) over ()" CLUSTER_FROM
		    " join (select cluster_id, count(*) n from "
		    "reconciliation_mismatch where run_id = $1::int8 group by "
		    "cluster_id) r on r.cluster_id = c.id "
		    "order by r.n desc, c.id limit $2::int8",
		[CLUSTERS_OPEN] = ", -1, count(*) over ()" CLUSTER_FROM
		    " where c.open_members + coalesce(d.dopen, 0) > 0 and "
		    "$1::int8 = 0 order by 10 desc, c.id limit $2::int8",
		[CLUSTERS_ALL] = ", -1, count(*) over ()" CLUSTER_FROM
		    " where $1::int8 = 0 order by c.id desc limit $2::int8",
	};
	char idbuf[24], limbuf[24], *sql;
	const char *vals[2] = { idbuf, limbuf };
	PGresult *res;
	int i, n;

	memset(l, 0, sizeof(*l));
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)run_id);
	snprintf(limbuf, sizeof(limbuf), "%zu", limit);
	sql = xasprintf("%s%s", CLUSTER_SELECT, tail[scope]);
	res = PQexecParams(mono, sql, 2, NULL, vals, NULL, NULL, 0);
	free(sql);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading clusters",
	    err, errlen) == -1)
		return -1;
	n = PQntuples(res);
	l->v = xcalloc((size_t)n + 1, sizeof(*l->v));
	for (i = 0; i < n; i++) {
		read_row(res, i, &l->v[i]);
		l->v[i].in_run = strtoll(PQgetvalue(res, i, 10), NULL, 10);
	}
	l->n = (size_t)n;
	if (n > 0)
		l->more = strtoll(PQgetvalue(res, 0, 11), NULL, 10) - n;
	PQclear(res);
	return 0;
}

int
clusterstore_get(PGconn *mono, int64_t id, struct cluster_row *c, char *err,
    size_t errlen)
{
	char idbuf[24];
	const char *vals[1] = { idbuf };
	PGresult *res;
	int found;

	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	res = PQexecParams(mono, CLUSTER_SELECT CLUSTER_FROM
	    " where c.id = $1::int8", 1, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading a "
	    "cluster", err, errlen) == -1)
		return -1;
	found = PQntuples(res) == 1;
	if (found)
		read_row(res, 0, c);
	PQclear(res);
	return found;
}

int
clusterstore_ack(PGconn *mono, PGconn *micro, int64_t id, const char *note,
    int64_t *acked, char *err, size_t errlen)
{
	struct strbuf cids = STRBUF_INIT;
	char idbuf[24];
	const char *vals[3] = { idbuf, NULL, note };
	PGresult *res = NULL;
	int i, n, rc = -1;

	*acked = 0;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	res = PQexecParams(mono, "select exists (select 1 from "
	    "reconciliation_cluster where id = $1::int8)", 1, NULL, vals, NULL,
	    NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono", err, errlen) == -1)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		snprintf(err, errlen, "cluster %lld does not exist",
		    (long long)id);
		PQclear(res);
		return 1;
	}
	PQclear(res);
	res = PQexecParams(mono, "select correlation_id::text from "
	    "reconciliation_mismatch where cluster_id = $1::int8 and "
	    "resolved_at is null order by id", 1, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono", err, errlen) == -1)
		return -1;
	n = PQntuples(res);
	if (n == 0) {
		snprintf(err, errlen, "cluster %lld has no open mismatch",
		    (long long)id);
		PQclear(res);
		return 1;
	}
	strbuf_str(&cids, "{");
	for (i = 0; i < n; i++)
		strbuf_printf(&cids, "%s%s", i ? "," : "", PQgetvalue(res, i, 0));
	strbuf_str(&cids, "}");
	PQclear(res);
	vals[1] = cids.p;

	/* As runstore_ack: micro first; a kill before mono commits leaves
	 * the members open and the ack can be run again. */
	res = PQexecParams(micro, "update spied_mail set consumed_at = now() "
	    "where correlation_id = any($1::uuid[]) and consumed_at is null",
	    1, NULL, vals + 1, NULL, NULL, 0);
	if (pg_ok(micro, res, PGRES_COMMAND_OK, "postgresMicro: consuming", err,
	    errlen) == -1)
		goto out;
	PQclear(res);
	if (pg_command(mono, "begin", "postgresMono", err, errlen) == -1)
		goto out;
	/* Only the members read above: one that joined meanwhile was not
	 * consumed in micro, and stays open. */
	res = PQexecParams(mono, "with r as (update reconciliation_mismatch set "
	    "resolved_at = now(), resolution = 'ack', note = $3 where "
	    "cluster_id = $1::int8 and resolved_at is null and correlation_id "
	    "= any($2::uuid[]) returning correlation_id), s as (update "
	    "sent_mail set consumed_at = now() where correlation_id in "
	    "(select correlation_id from r) and consumed_at is null) "
	    "select count(*) from r", 3, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: resolving", err,
	    errlen) == -1) {
		PQclear(PQexec(mono, "rollback"));
		res = NULL;
		goto out;
	}
	*acked = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	res = NULL;
	if (pg_command(mono, "commit", "postgresMono commit", err, errlen) == -1)
		goto out;
	/* The trigger left one count change per member: fold them now
	 * (best effort: readers add what is not folded). */
	if (begin_locked(mono, err, errlen) == 0) {
		if (clusterstore_fold(mono, err, errlen) == 0)
			pg_command(mono, "commit", "postgresMono", err, errlen);
		else
			PQclear(PQexec(mono, "rollback"));
	}
	if (*acked == 0) {
		snprintf(err, errlen, "cluster %lld: its open mismatches were "
		    "resolved meanwhile", (long long)id);
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	strbuf_free(&cids);
	return rc;
}

int
clusterstore_example(PGconn *mono, int64_t id, struct mismatch *m, char *err,
    size_t errlen)
{
	char idbuf[24];
	const char *vals[1] = { idbuf };
	PGresult *res;
	int f;

	memset(m, 0, sizeof(*m));
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	res = PQexecParams(mono, "select m.id, m.run_id, "
	    "m.correlation_id::text, m.kind, array_to_string(m.fields, ','), "
	    "m.mono_destination, m.mono_subject, m.mono_body, "
	    "m.micro_destination, m.micro_subject, m.micro_body, "
	    ISO("m.found_at") ", " ISO("m.resolved_at") ", m.resolution, "
	    "m.note, m.cluster_id from reconciliation_cluster c join "
	    "reconciliation_mismatch m on m.id = (select coalesce((select "
	    "x.id from reconciliation_mismatch x where x.id = c.example_id), "
	    "(select min(y.id) from reconciliation_mismatch y where "
	    "y.cluster_id = c.id))) where c.id = $1::int8", 1, NULL, vals,
	    NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: reading a "
	    "cluster's example", err, errlen) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		snprintf(err, errlen, "cluster %lld does not exist (or has no "
		    "member left)", (long long)id);
		PQclear(res);
		return 0;
	}
	m->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	m->run_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	m->cid = dup_or_null(res, 0, 2);
	m->kind = dup_or_null(res, 0, 3);
	m->fields = dup_or_null(res, 0, 4);
	for (f = 0; f < 3; f++) {
		m->mono[f] = dup_or_null(res, 0, 5 + f);
		m->micro[f] = dup_or_null(res, 0, 8 + f);
	}
	m->found_at = dup_or_null(res, 0, 11);
	m->resolved_at = dup_or_null(res, 0, 12);
	m->resolution = dup_or_null(res, 0, 13);
	m->note = dup_or_null(res, 0, 14);
	m->cluster_id = id;
	PQclear(res);
	return 1;
}

int
cluster_list_of(struct mismatch_iter *it, size_t limit, struct cluster_list *l)
{
	struct mismatch m;
	char **sigs;
	size_t i;
	int rc;

	memset(l, 0, sizeof(*l));
	l->v = xcalloc(limit + 1, sizeof(*l->v));
	sigs = xcalloc(limit + 1, sizeof(*sigs));
	while ((rc = it->next(it->ctx, &m)) == 1) {
		char *sig = cluster_signature(&m);
		for (i = 0; i < l->n && strcmp(sigs[i], sig) != 0; i++)
			;
		if (i == l->n && l->n == limit) {
			l->more++;
			free(sig);
			continue;
		}
		if (i == l->n) {
			struct cluster_row *c = &l->v[l->n++];
			sigs[i] = sig;
			sig = NULL;
			c->kind = xstrdup(m.kind ? m.kind : "");
			c->fields = xstrdup(m.fields ? m.fields : "");
			c->signature = xstrdup(sigs[i]);
			c->example_cid = xstrdup(m.cid ? m.cid : "");
			c->first_seen = xstrdup(m.found_at ? m.found_at : "-");
			c->last_seen = xstrdup(m.found_at ? m.found_at : "-");
		}
		free(sig);
		l->v[i].count++;
		l->v[i].open++;
		l->v[i].in_run = l->v[i].count;
		if (m.found_at != NULL) {
			free(l->v[i].last_seen);
			l->v[i].last_seen = xstrdup(m.found_at);
		}
	}
	for (i = 0; i < l->n; i++)
		free(sigs[i]);
	free(sigs);
	if (rc == -1)
		cluster_list_clear(l);
	return rc == -1 ? -1 : 0;
}
