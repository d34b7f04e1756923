/*
 * serve_api: the console's JSON (docs/DESIGN.md, Additions) and /metrics.
 * Every list is a keyset page: `after` is the last id seen (the cursor),
 * `next` the cursor of the following page or null. Bad input is the
 * error JSON naming the field, and changes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/pg.h"
#include "reconciler/result.h"
#include "reconciler/runstore.h"
#include "reconciler/serve.h"

#define ISO(col) "to_char(" col " at time zone 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define API_CLUSTERS 500

static json_t *
jstr(const char *s)
{
	json_t *j;

	if (s == NULL)
		return json_null();
	return (j = json_string(s)) != NULL ? j : json_null();
}

static void
db_error(struct http_request *req, const char *err)
{
	log_warnx("serve: %s", err);
	http_reply_unavailable(req, 5, "postgresMono failed the query");
}

void
serve_api_clusters(struct http_request *req, void *arg)
{
	struct console *con = arg;
	struct cluster_list l;
	PGconn *mono;
	json_t *arr, *o;
	char err[512];
	const char *all = http_request_query(req, "all");
	size_t i;

	if (serve_auth_api(req, con) == -1)
		return;
	if (all != NULL && strcmp(all, "0") != 0 && strcmp(all, "1") != 0) {
		http_reply_error(req, 400, "all: 0 or 1", "all");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL)
		return;
	if (clusterstore_list(mono, all && *all == '1' ? CLUSTERS_ALL :
	    CLUSTERS_OPEN, 0, API_CLUSTERS, &l, err, sizeof(err)) == -1) {
		db_error(req, err);
		return;
	}
	arr = json_array();
	for (i = 0; i < l.n; i++) {
		o = cluster_json(&l.v[i]);
		json_array_append_new(arr, o);
	}
	o = json_pack("{s:o, s:I}", "clusters", arr, "more", (json_int_t)l.more);
	cluster_list_clear(&l);
	http_reply_json(req, 200, o);
}

/* What cron saw: 0 done clean, 1 new mismatches, 3 failed, null while
 * running or when killed (aborted). */
static json_t *
run_exit(const char *status, long long new_mismatches)
{
	if (strcmp(status, "done") == 0)
		return json_integer(new_mismatches > 0 ? 1 : 0);
	if (strcmp(status, "failed") == 0)
		return json_integer(3);
	return json_null();
}

void
serve_api_runs(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *after = http_request_query(req, "after");
	char abuf[24], err[512];
	const char *vals[1] = { abuf };
	int64_t a = 0;
	PGconn *mono;
	PGresult *res;
	json_t *arr, *o;
	int i, n;

	if (serve_auth_api(req, con) == -1)
		return;
	if (after != NULL && (a = serve_parse_id(after)) == -1) {
		http_reply_error(req, 400, "after: not a cursor from this API",
		    "after");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL)
		return;
	snprintf(abuf, sizeof(abuf), "%lld", (long long)(a ? a : INT64_MAX));
	res = PQexecParams(mono, "select id, status, " ISO("started_at") ", "
	    ISO("finished_at") ", extract(epoch from finished_at - "
	    "started_at)::float8, matched, ignored, new_mismatches, content, "
	    "missing_in_micro, missing_in_mono, late, shard_k, shard_n, error "
	    "from reconciliation_run where id < $1::int8 order by id desc "
	    "limit " "50", 1, NULL, vals, NULL, NULL, 0);
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: runs", err,
	    sizeof(err)) == -1) {
		db_error(req, err);
		return;
	}
	arr = json_array();
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *st = PQgetvalue(res, i, 1);
		long long nm = strtoll(PQgetvalue(res, i, 7), NULL, 10);
		o = json_object();
		json_object_set_new(o, "id", json_integer(strtoll(
		    PQgetvalue(res, i, 0), NULL, 10)));
		json_object_set_new(o, "status", jstr(st));
		json_object_set_new(o, "startedAt", jstr(PQgetvalue(res, i, 2)));
		json_object_set_new(o, "finishedAt", PQgetisnull(res, i, 3) ?
		    json_null() : jstr(PQgetvalue(res, i, 3)));
		json_object_set_new(o, "durationSeconds", PQgetisnull(res, i, 4) ?
		    json_null() : json_real(strtod(PQgetvalue(res, i, 4), NULL)));
		json_object_set_new(o, "matched", json_integer(strtoll(
		    PQgetvalue(res, i, 5), NULL, 10)));
		json_object_set_new(o, "ignored", json_integer(strtoll(
		    PQgetvalue(res, i, 6), NULL, 10)));
		json_object_set_new(o, "mismatched", json_integer(nm));
		json_object_set_new(o, "late", json_integer(strtoll(
		    PQgetvalue(res, i, 11), NULL, 10)));
		json_object_set_new(o, "shard", json_pack("{s:i, s:i}", "k",
		    atoi(PQgetvalue(res, i, 12)), "n", atoi(PQgetvalue(res, i, 13))));
		json_object_set_new(o, "exit", run_exit(st, nm));
		json_object_set_new(o, "error", PQgetisnull(res, i, 14) ?
		    json_null() : jstr(PQgetvalue(res, i, 14)));
		json_array_append_new(arr, o);
	}
	o = json_pack("{s:o, s:o}", "runs", arr, "next", n == 50 ?
	    json_string(PQgetvalue(res, n - 1, 0)) : json_null());
	PQclear(res);
	http_reply_json(req, 200, o);
}

static json_t *
side(char *const v[3])
{
	if (v[0] == NULL)
		return json_null();
	return json_pack("{s:o, s:o, s:o}", "destination", jstr(v[0]),
	    "subject", jstr(v[1]), "body", jstr(v[2]));
}

static json_t *
mismatch_json(const struct mismatch *m)
{
	json_t *o = json_object(), *f = json_array();
	const char *p = m->fields, *c;

	while (p != NULL && *p) {
		c = strchr(p, ',');
		json_array_append_new(f, json_stringn(p, c ? (size_t)(c - p) :
		    strlen(p)));
		p = c ? c + 1 : NULL;
	}
	json_object_set_new(o, "id", json_integer(m->id));
	json_object_set_new(o, "runId", json_integer(m->run_id));
	json_object_set_new(o, "correlationId", jstr(m->cid));
	json_object_set_new(o, "kind", jstr(m->kind));
	json_object_set_new(o, "fields", f);
	json_object_set_new(o, "cluster", m->cluster_id ?
	    json_integer(m->cluster_id) : json_null());
	json_object_set_new(o, "mono", side(m->mono));
	json_object_set_new(o, "micro", side(m->micro));
	json_object_set_new(o, "foundAt", jstr(m->found_at));
	json_object_set_new(o, "resolvedAt", jstr(m->resolved_at));
	json_object_set_new(o, "resolution", jstr(m->resolution));
	json_object_set_new(o, "note", jstr(m->note));
	return o;
}

void
serve_api_mismatches(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *cl = http_request_query(req, "cluster");
	const char *open = http_request_query(req, "open");
	const char *after = http_request_query(req, "after");
	struct cluster_row row;
	struct mismatch m;
	enum runstore_filter f;
	int64_t cid = 0, a = 0, last = 0;
	PGconn *mono;
	PGresult *res;
	json_t *arr;
	char err[512];
	int i, n, rc;

	if (serve_auth_api(req, con) == -1)
		return;
	if (cl != NULL && (cid = serve_parse_id(cl)) == -1) {
		http_reply_error(req, 400, "cluster: not a cluster id", "cluster");
		return;
	}
	if (open != NULL && strcmp(open, "0") != 0 && strcmp(open, "1") != 0) {
		http_reply_error(req, 400, "open: 0 or 1", "open");
		return;
	}
	if (after != NULL && (a = serve_parse_id(after)) == -1) {
		http_reply_error(req, 400, "after: not a cursor from this API",
		    "after");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL)
		return;
	if (cid != 0) {
		rc = clusterstore_get(mono, cid, &row, err, sizeof(err));
		if (rc == -1) {
			db_error(req, err);
			return;
		}
		if (rc == 0) {
			http_reply_error(req, 404, "no such cluster", "cluster");
			return;
		}
		cluster_row_clear(&row);
	}
	if (cid != 0)
		f = open && *open == '1' ? RUNSTORE_CLUSTER_OPEN :
		    RUNSTORE_CLUSTER_ALL;
	else
		f = open && *open == '1' ? RUNSTORE_OPEN : RUNSTORE_ALL;
	if ((res = runstore_page(mono, f, cid, a, SERVE_PAGE, err,
	    sizeof(err))) == NULL) {
		db_error(req, err);
		return;
	}
	arr = json_array();
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		memset(&m, 0, sizeof(m));
		runstore_row(res, i, &m);
		json_array_append_new(arr, mismatch_json(&m));
		last = m.id;
		mismatch_clear(&m);
	}
	PQclear(res);
	http_reply_json(req, 200, json_pack("{s:o, s:o}", "mismatches", arr,
	    "next", n == SERVE_PAGE ? json_sprintf("%lld", (long long)last) :
	    json_null()));
}

/* "/api/clusters/" then "ID/ack": the id, or -1. */
static int64_t
ack_target(const char *tail)
{
	char buf[32];
	const char *slash = strchr(tail, '/');

	if (slash == NULL || strcmp(slash, "/ack") != 0 ||
	    (size_t)(slash - tail) >= sizeof(buf))
		return -1;
	memcpy(buf, tail, (size_t)(slash - tail));
	buf[slash - tail] = '\0';
	return serve_parse_id(buf);
}

void
serve_api_cluster_ack(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *body, *note = NULL;
	size_t len;
	int64_t id, acked;
	json_t *doc;
	json_error_t jerr;
	PGconn *mono, *micro;
	char err[512];
	int rc;

	if (serve_auth_api(req, con) == -1)
		return;
	if ((id = ack_target(http_request_tail(req))) == -1) {
		http_reply_error(req, 404, "not found: POST /api/clusters/ID/ack",
		    NULL);
		return;
	}
	body = http_request_body(req, &len);
	doc = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		http_reply_error(req, 400, "body is not JSON", NULL);
		return;
	}
	if (json_unpack_ex(doc, &jerr, 0, "{s:s !}", "note", &note) == -1 ||
	    note[0] == '\0') {
		json_decref(doc);
		http_reply_error(req, 400, "note: a non-empty string, the only "
		    "member", "note");
		return;
	}
	if (strlen(note) > SERVE_NOTE_MAX) {
		json_decref(doc);
		http_reply_error(req, 400, "note: longer than 1000 bytes", "note");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL ||
	    (micro = serve_micro(req, con)) == NULL) {
		json_decref(doc);
		return;
	}
	rc = clusterstore_ack(mono, micro, id, note, &acked, err, sizeof(err));
	json_decref(doc);
	if (rc == -1) {
		db_error(req, err);
		return;
	}
	if (rc == 1) {
		http_reply_error(req, strstr(err, "does not exist") ? 404 : 409,
		    err, "id");
		return;
	}
	log_info("serve: cluster %lld acknowledged (%lld mismatches)",
	    (long long)id, (long long)acked);
	http_reply_json(req, 200, json_pack("{s:I, s:I}", "cluster",
	    (json_int_t)id, "acknowledged", (json_int_t)acked));
}

/*
 * Prometheus: open mismatches by kind (from the clusters' counts, so
 * a million open ones cost nothing), the last run's end time, exit code
 * and duration, the last successful run's end (for "no successful run
 * for 5 minutes"), then the server's own HTTP metrics.
 */
void
serve_metrics(struct http_request *req, void *arg)
{
	static const char *const kinds[] = { "content", "missing_in_micro",
		"missing_in_mono" };
	struct console *con = arg;
	PGconn *mono;
	PGresult *res;
	char err[512], labels[64], *text;
	double v[3] = { 0, 0, 0 };
	size_t k;
	int i;

	if ((mono = serve_mono(req, con)) == NULL)
		return;
	res = PQexec(mono, "select c.kind, sum(c.open_members + coalesce((select "
	    "sum(d_open) from reconciliation_cluster_delta d where d.cluster_id "
	    "= c.id), 0))::float8 from reconciliation_cluster c group by c.kind");
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: metrics", err,
	    sizeof(err)) == -1) {
		db_error(req, err);
		return;
	}
	for (i = 0; i < PQntuples(res); i++)
		for (k = 0; k < nitems(kinds); k++)
			if (strcmp(PQgetvalue(res, i, 0), kinds[k]) == 0)
				v[k] = strtod(PQgetvalue(res, i, 1), NULL);
	PQclear(res);
	for (k = 0; k < nitems(kinds); k++) {
		snprintf(labels, sizeof(labels), "kind=\"%s\"", kinds[k]);
		metrics_set(metrics_gauge("reconciler_open_mismatches",
		    "Open (unresolved) mismatches, by kind", labels), v[k]);
	}
	res = PQexec(mono, "select extract(epoch from finished_at)::float8, "
	    "status, new_mismatches, extract(epoch from finished_at - "
	    "started_at)::float8, (select extract(epoch from max(finished_at))"
	    "::float8 from reconciliation_run where status = 'done') from "
	    "reconciliation_run where finished_at is not null order by id "
	    "desc limit 1");
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: metrics", err,
	    sizeof(err)) == -1) {
		db_error(req, err);
		return;
	}
	if (PQntuples(res) == 1) {
		const char *st = PQgetvalue(res, 0, 1);
		metrics_set(metrics_gauge("reconciler_last_run_end_timestamp_seconds",
		    "When the last finished run ended (Unix time)", NULL),
		    strtod(PQgetvalue(res, 0, 0), NULL));
		metrics_set(metrics_gauge("reconciler_last_run_exit_code",
		    "Exit code of the last finished run (0 clean, 1 new "
		    "mismatches, 3 failed, -1 aborted)", NULL),
		    strcmp(st, "done") == 0 ? (strcmp(PQgetvalue(res, 0, 2),
		    "0") != 0 ? 1 : 0) : strcmp(st, "failed") == 0 ? 3 : -1);
		metrics_set(metrics_gauge("reconciler_last_run_duration_seconds",
		    "Duration of the last finished run", NULL),
		    strtod(PQgetvalue(res, 0, 3), NULL));
		metrics_set(metrics_gauge(
		    "reconciler_last_success_timestamp_seconds",
		    "When the last successful (done) run ended (Unix time)",
		    NULL), PQgetisnull(res, 0, 4) ? 0 :
		    strtod(PQgetvalue(res, 0, 4), NULL));
	}
	PQclear(res);
	text = metrics_render();
	http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8",
	    text, strlen(text));
}
