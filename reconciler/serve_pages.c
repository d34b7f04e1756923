/*
 * serve_pages: the console's HTML, built on the server, self-contained
 * (inline CSS and SVG, no script, nothing fetched): it works offline.
 * Every value from the database is escaped; a mail body is untrusted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/escape.h"
#include "reconciler/pg.h"
#include "reconciler/report.h"
#include "reconciler/runstore.h"
#include "reconciler/serve.h"

#define ISO(col) "to_char(" col " at time zone 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define CHART_RUNS 60
#define OVERVIEW_CLUSTERS 50

static const char console_css[] =
    "nav{background:#234;padding:.5em 1em;margin:-1.5em -1.5em 1em}"
    "nav a{color:#fff;margin-right:1.5em;text-decoration:none}"
    ".ok{color:#070}.bad{color:#b00}.muted{color:#777}"
    "pre.sig{margin:0;font-size:85%;white-space:pre-wrap}"
    "textarea{width:40em;height:4em}"
    "svg text{font:11px sans-serif}";

void
serve_html_escape(struct strbuf *b, const char *s)
{
	char *e;

	if (s == NULL)
		return;
	e = escape_html(s, strlen(s));
	strbuf_str(b, e);
	free(e);
}

void
serve_page_begin(struct strbuf *b, const char *title)
{
	strbuf_str(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset="
	    "\"utf-8\"><title>");
	serve_html_escape(b, title);
	strbuf_printf(b, " - reconciler</title><style>%s%s</style></head>"
	    "<body>\n<nav><a href=\"/\">Overview</a><a href=\"/runs/latest\">"
	    "Latest run</a><a href=\"/api/clusters\">API</a>"
	    "<a href=\"/metrics\">Metrics</a></nav>\n", report_html_style(),
	    console_css);
}

void
serve_page_end(struct strbuf *b)
{
	strbuf_str(b, "</body></html>\n");
}

void
serve_reply_page(struct http_request *req, unsigned status, struct strbuf *b)
{
	size_t len = b->len;
	char *body = strbuf_take(b);

	/* Pages may show mail bodies: nothing on them may run or load. */
	http_response_header(req, "Content-Security-Policy", "default-src "
	    "'none'; style-src 'unsafe-inline'; img-src 'self'; form-action "
	    "'self'; frame-ancestors 'none'");
	http_response_header(req, "X-Content-Type-Options", "nosniff");
	http_response_header(req, "Cache-Control", "no-store");
	http_reply_take(req, status, "text/html; charset=utf-8", body, len);
}

static void
page_error(struct http_request *req, unsigned status, const char *msg)
{
	struct strbuf b = STRBUF_INIT;

	serve_page_begin(&b, "error");
	strbuf_str(&b, "<h1>");
	serve_html_escape(&b, msg);
	strbuf_str(&b, "</h1>\n");
	serve_page_end(&b);
	serve_reply_page(req, status, &b);
}

static void
page_db_error(struct http_request *req, const char *err)
{
	log_warnx("serve: %s", err);
	http_response_header(req, "Retry-After", "5");
	page_error(req, 503, "postgresMono failed the query; try again");
}

struct run_point {
	long long id, matched, ignored, mismatched;
};

/* Stacked bars (matched, ignored, mismatched) per run, oldest left, and
 * the mismatch rate as a line on its own scale. */
static void
chart(struct strbuf *b, const struct run_point *p, int n)
{
	const int w = 880, h = 220, left = 50, right = 60, top = 20, bottom = 30;
	double maxv = 1, maxr = 0, bw, x, y, hm, hi, hx, r;
	int i;

	for (i = 0; i < n; i++) {
		double t = (double)(p[i].matched + p[i].ignored + p[i].mismatched);
		if (t > maxv)
			maxv = t;
		r = t > 0 ? (double)p[i].mismatched / t : 0;
		if (r > maxr)
			maxr = r;
	}
	if (maxr <= 0)
		maxr = 0.01;
	bw = (double)(w - left - right) / (n > 0 ? n : 1);
	strbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
	    "height=\"%d\" role=\"img\" aria-label=\"runs over time\">"
	    "<title>Rows per run: matched, ignored, mismatched; mismatch rate"
	    "</title>", w, h);
	strbuf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
	    "stroke=\"#999\"/>", left, h - bottom, w - right, h - bottom);
	strbuf_printf(b, "<text x=\"2\" y=\"%d\">%.0f</text><text x=\"2\" "
	    "y=\"%d\">0</text>", top + 4, maxv, h - bottom);
	strbuf_printf(b, "<text x=\"%d\" y=\"%d\" fill=\"#b00\">%.2f%%</text>",
	    w - right + 4, top + 4, maxr * 100);
	for (i = 0; i < n; i++) {
		double span = h - top - bottom;
		x = left + i * bw;
		hm = span * (double)p[i].matched / maxv;
		hi = span * (double)p[i].ignored / maxv;
		hx = span * (double)p[i].mismatched / maxv;
		y = h - bottom;
		strbuf_printf(b, "<g><title>run %lld: %lld matched, %lld ignored, "
		    "%lld mismatched</title>", p[i].id, p[i].matched, p[i].ignored,
		    p[i].mismatched);
		strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		    "height=\"%.1f\" fill=\"#7b7\"/>", x + 1, y - hm, bw - 2, hm);
		strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		    "height=\"%.1f\" fill=\"#bbb\"/>", x + 1, y - hm - hi, bw - 2,
		    hi);
		strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		    "height=\"%.1f\" fill=\"#e66\"/></g>", x + 1, y - hm - hi - hx,
		    bw - 2, hx < 1 && p[i].mismatched > 0 ? 1 : hx);
	}
	strbuf_str(b, "<polyline fill=\"none\" stroke=\"#b00\" stroke-width=\"2\" "
	    "points=\"");
	for (i = 0; i < n; i++) {
		double t = (double)(p[i].matched + p[i].ignored + p[i].mismatched);
		r = t > 0 ? (double)p[i].mismatched / t : 0;
		strbuf_printf(b, "%.1f,%.1f ", left + i * bw + bw / 2,
		    (h - bottom) - (h - top - bottom) * r / maxr);
	}
	strbuf_str(b, "\"/>");
	strbuf_printf(b, "<text x=\"%d\" y=\"%d\"><tspan fill=\"#393\">&#9632; "
	    "matched</tspan> <tspan fill=\"#888\">&#9632; ignored</tspan> "
	    "<tspan fill=\"#d44\">&#9632; mismatched</tspan> <tspan "
	    "fill=\"#b00\">&#8212; mismatch rate</tspan></text></svg>\n", left,
	    h - 8);
}

static void
cluster_rows(struct strbuf *b, const struct cluster_list *l)
{
	size_t i;

	strbuf_str(b, "<table class=\"clusters\"><tr><th>cluster</th><th>kind"
	    "</th><th>fields</th><th>open</th><th>count</th><th>first seen</th>"
	    "<th>last seen</th><th>signature</th></tr>\n");
	for (i = 0; i < l->n; i++) {
		const struct cluster_row *c = &l->v[i];
		strbuf_printf(b, "<tr><td><a href=\"/clusters/%lld\">cluster "
		    "%lld</a></td><td>", (long long)c->id, (long long)c->id);
		serve_html_escape(b, c->kind);
		strbuf_str(b, "</td><td>");
		serve_html_escape(b, c->fields);
		strbuf_printf(b, "</td><td class=\"open\">%lld</td><td>%lld</td>"
		    "<td>", (long long)c->open, (long long)c->count);
		serve_html_escape(b, c->first_seen);
		strbuf_str(b, "</td><td>");
		serve_html_escape(b, c->last_seen);
		strbuf_str(b, "</td><td><pre class=\"sig\">");
		serve_html_escape(b, c->signature);
		strbuf_str(b, "</pre></td></tr>\n");
	}
	strbuf_str(b, "</table>\n");
}

void
serve_page_overview(struct http_request *req, void *arg)
{
	struct console *con = arg;
	struct strbuf b = STRBUF_INIT;
	struct run_point pts[CHART_RUNS];
	struct cluster_list l;
	PGconn *mono;
	PGresult *res;
	char err[512];
	int i, n;

	if (serve_auth_page(req, con) == -1 ||
	    (mono = serve_mono(req, con)) == NULL)
		return;
	res = PQexec(mono, "select id, status, matched, ignored, new_mismatches, "
	    ISO("finished_at") ", extract(epoch from now() - coalesce("
	    "finished_at, started_at))::bigint, extract(epoch from finished_at "
	    "- started_at)::numeric(12,2) from reconciliation_run order by id "
	    "desc limit " "60");
	if (pg_ok(mono, res, PGRES_TUPLES_OK, "postgresMono: runs", err,
	    sizeof(err)) == -1) {
		page_db_error(req, err);
		return;
	}
	if (clusterstore_list(mono, CLUSTERS_OPEN, 0, OVERVIEW_CLUSTERS, &l, err,
	    sizeof(err)) == -1) {
		PQclear(res);
		page_db_error(req, err);
		return;
	}
	n = PQntuples(res);
	serve_page_begin(&b, "overview");
	strbuf_str(&b, "<h1>Parallel Run: reconciliation</h1>\n");
	if (n == 0) {
		strbuf_str(&b, "<p id=\"last-run\">No run yet.</p>\n");
	} else {
		const char *st = PQgetvalue(res, 0, 1);
		long long nm = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
		int exitc = strcmp(st, "done") == 0 ? (nm > 0) : strcmp(st,
		    "failed") == 0 ? 3 : -1;
		strbuf_printf(&b, "<p id=\"last-run\">Last run <a href=\"/runs/%s\">"
		    "%s</a>: ", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 0));
		serve_html_escape(&b, st);
		strbuf_printf(&b, ", %s seconds ago", PQgetvalue(res, 0, 6));
		if (exitc >= 0)
			strbuf_printf(&b, ", exit <span class=\"%s\">%d</span> "
			    "(%s), %s s", exitc == 0 ? "ok" : "bad", exitc,
			    exitc == 0 ? "no new mismatch" : exitc == 1 ?
			    "new mismatches" : "failed", PQgetvalue(res, 0, 7));
		strbuf_str(&b, ".</p>\n");
	}
	for (i = 0; i < n; i++) {
		/* Oldest first, left to right. */
		struct run_point *p = &pts[n - 1 - i];
		p->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		p->matched = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		p->ignored = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		p->mismatched = strtoll(PQgetvalue(res, i, 4), NULL, 10);
	}
	PQclear(res);
	strbuf_printf(&b, "<h2>Runs (last %d)</h2>\n", n);
	chart(&b, pts, n);
	strbuf_str(&b, "<h2>Open mismatches by cluster</h2>\n");
	if (l.n == 0)
		strbuf_str(&b, "<p>No open mismatch.</p>\n");
	else
		cluster_rows(&b, &l);
	if (l.more > 0)
		strbuf_printf(&b, "<p>%lld more clusters with open mismatches "
		    "(<a href=\"/api/clusters\">all, as JSON</a>).</p>\n",
		    (long long)l.more);
	cluster_list_clear(&l);
	serve_page_end(&b);
	serve_reply_page(req, 200, &b);
}

/* An iterator over one page of rows, for report_html. */
struct page_iter {
	PGresult *res;
	int i;
	struct mismatch m;
};

static int
page_next(void *ctx, struct mismatch *out)
{
	struct page_iter *p = ctx;

	mismatch_clear(&p->m);
	if (p->i >= PQntuples(p->res))
		return 0;
	runstore_row(p->res, p->i++, &p->m);
	*out = p->m;
	return 1;
}

/* /runs/ID?after=N (or /runs/latest): the run's html report, one page of
 * its mismatches at a time. */
void
serve_page_run(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *tail = http_request_tail(req);
	const char *after = http_request_query(req, "after");
	struct run_summary s;
	struct cluster_list l = { 0 };
	struct page_iter pi = { 0 };
	struct mismatch_iter it = { page_next, &pi, NULL };
	struct strbuf b = STRBUF_INIT;
	PGconn *mono;
	char err[512], *html = NULL, *end;
	size_t len = 0;
	int64_t id = 0, a = 0, last = 0;
	int rc, n;
	FILE *fp;

	if (serve_auth_page(req, con) == -1)
		return;
	if (strcmp(tail, "latest") != 0 && (id = serve_parse_id(tail)) == -1) {
		page_error(req, 404, "no such run");
		return;
	}
	if (after != NULL && (a = serve_parse_id(after)) == -1) {
		page_error(req, 400, "after: not a cursor from this page");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL)
		return;
	memset(&s, 0, sizeof(s));
	if ((rc = runstore_load(mono, id, &s, err, sizeof(err))) != 1) {
		if (rc == 0)
			page_error(req, 404, "no such run");
		else
			page_db_error(req, err);
		return;
	}
	if (clusterstore_list(mono, CLUSTERS_RUN, s.id, OVERVIEW_CLUSTERS, &l,
	    err, sizeof(err)) == -1 || (pi.res = runstore_page(mono,
	    RUNSTORE_RUN, s.id, a, SERVE_PAGE, err, sizeof(err))) == NULL) {
		run_summary_clear(&s);
		cluster_list_clear(&l);
		page_db_error(req, err);
		return;
	}
	n = PQntuples(pi.res);
	if (n > 0)
		last = strtoll(PQgetvalue(pi.res, n - 1, 0), NULL, 10);
	it.clusters = a == 0 ? &l : NULL;
	fp = open_memstream(&html, &len);
	rc = report_html(fp, &s, &it);
	fclose(fp);
	mismatch_clear(&pi.m);
	PQclear(pi.res);
	/* The report's page, with the console's bar and the next page. */
	serve_page_begin(&b, "run");
	end = strstr(html, "<body>\n");
	strbuf_str(&b, end ? end + 7 : html);
	if ((end = strstr(b.p, "</body></html>")) != NULL) {
		b.len = (size_t)(end - b.p);
		b.p[b.len] = '\0';
	}
	if (n == SERVE_PAGE)
		strbuf_printf(&b, "<p><a rel=\"next\" href=\"/runs/%lld?after="
		    "%lld\">next %d mismatches</a></p>\n", (long long)s.id,
		    (long long)last, SERVE_PAGE);
	serve_page_end(&b);
	free(html);
	run_summary_clear(&s);
	cluster_list_clear(&l);
	(void)rc;
	serve_reply_page(req, 200, &b);
}

void
serve_page_cluster(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *after = http_request_query(req, "after");
	const char *all = http_request_query(req, "all");
	struct cluster_row c;
	struct mismatch ex = { 0 }, m;
	struct strbuf b = STRBUF_INIT;
	PGconn *mono;
	PGresult *res;
	char err[512], *html = NULL;
	size_t len = 0;
	int64_t id, a = 0, last = 0;
	int rc, i, n, show_all = all != NULL && strcmp(all, "1") == 0;
	FILE *fp;

	if (serve_auth_page(req, con) == -1)
		return;
	if ((id = serve_parse_id(http_request_tail(req))) == -1) {
		page_error(req, 404, "no such cluster");
		return;
	}
	if (after != NULL && (a = serve_parse_id(after)) == -1) {
		page_error(req, 400, "after: not a cursor from this page");
		return;
	}
	if ((mono = serve_mono(req, con)) == NULL)
		return;
	if ((rc = clusterstore_get(mono, id, &c, err, sizeof(err))) != 1) {
		if (rc == 0)
			page_error(req, 404, "no such cluster");
		else
			page_db_error(req, err);
		return;
	}
	if (clusterstore_example(mono, id, &ex, err, sizeof(err)) == -1 ||
	    (res = runstore_page(mono, show_all ? RUNSTORE_CLUSTER_ALL :
	    RUNSTORE_CLUSTER_OPEN, id, a, SERVE_PAGE, err, sizeof(err))) ==
	    NULL) {
		cluster_row_clear(&c);
		mismatch_clear(&ex);
		page_db_error(req, err);
		return;
	}
	serve_page_begin(&b, "cluster");
	strbuf_printf(&b, "<h1>Cluster %lld: ", (long long)id);
	serve_html_escape(&b, c.kind);
	if (c.fields && *c.fields) {
		strbuf_str(&b, " [");
		serve_html_escape(&b, c.fields);
		strbuf_str(&b, "]");
	}
	strbuf_printf(&b, "</h1>\n<p><span id=\"open\">%lld</span> open of "
	    "<span id=\"count\">%lld</span>, first seen ", (long long)c.open,
	    (long long)c.count);
	serve_html_escape(&b, c.first_seen);
	strbuf_str(&b, ", last seen ");
	serve_html_escape(&b, c.last_seen);
	strbuf_str(&b, ".</p>\n<p>Signature (what every member has in common, "
	    "variable parts masked):</p><pre class=\"sig\">");
	serve_html_escape(&b, c.signature);
	strbuf_str(&b, "</pre>\n");
	if (c.open > 0) {
		strbuf_printf(&b, "<form method=\"post\" action=\"/clusters/%lld/"
		    "ack\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">"
		    "<p><label for=\"note\">Acknowledge all %lld open mismatches "
		    "of this cluster (their rows are consumed); why:</label><br>"
		    "<textarea id=\"note\" name=\"note\" maxlength=\"%d\" "
		    "required></textarea><br><button type=\"submit\" id=\"ack\">"
		    "Acknowledge cluster</button></p></form>\n", (long long)id,
		    serve_csrf(con), (long long)c.open, SERVE_NOTE_MAX);
	}
	if (ex.id > 0) {
		strbuf_str(&b, "<h2>Example</h2>\n");
		fp = open_memstream(&html, &len);
		report_html_mismatch(fp, &ex);
		fclose(fp);
		strbuf_add(&b, html, len);
		free(html);
	}
	n = PQntuples(res);
	strbuf_printf(&b, "<h2>%s members</h2>\n<p><a href=\"/clusters/%lld%s\">"
	    "%s</a></p>\n<table id=\"members\"><tr><th>mismatch</th><th>"
	    "correlation id</th><th>run</th><th>found</th><th>resolved</th>"
	    "<th>note</th></tr>\n", show_all ? "All" : "Open", (long long)id,
	    show_all ? "" : "?all=1", show_all ? "open members only" :
	    "all members, resolved ones too");
	for (i = 0; i < n; i++) {
		memset(&m, 0, sizeof(m));
		runstore_row(res, i, &m);
		strbuf_printf(&b, "<tr><td>%lld</td><td><code>", (long long)m.id);
		serve_html_escape(&b, m.cid);
		strbuf_printf(&b, "</code></td><td><a href=\"/runs/%lld\">%lld</a>"
		    "</td><td>", (long long)m.run_id, (long long)m.run_id);
		serve_html_escape(&b, m.found_at);
		strbuf_str(&b, "</td><td>");
		if (m.resolved_at) {
			serve_html_escape(&b, m.resolved_at);
			strbuf_str(&b, " (");
			serve_html_escape(&b, m.resolution);
			strbuf_str(&b, ")");
		}
		strbuf_str(&b, "</td><td>");
		serve_html_escape(&b, m.note);
		strbuf_str(&b, "</td></tr>\n");
		last = m.id;
		mismatch_clear(&m);
	}
	strbuf_str(&b, "</table>\n");
	if (n == SERVE_PAGE)
		strbuf_printf(&b, "<p><a rel=\"next\" href=\"/clusters/%lld?after="
		    "%lld%s\">next %d</a></p>\n", (long long)id, (long long)last,
		    show_all ? "&amp;all=1" : "", SERVE_PAGE);
	PQclear(res);
	cluster_row_clear(&c);
	mismatch_clear(&ex);
	serve_page_end(&b);
	serve_reply_page(req, 200, &b);
}

/* POST /clusters/ID/ack from the cluster page's form. */
void
serve_page_cluster_ack(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *tail = http_request_tail(req), *body, *slash;
	char idbuf[24], err[512], *csrf = NULL, *note = NULL, loc[64];
	size_t len;
	int64_t id, acked;
	PGconn *mono, *micro;
	int rc;

	if (serve_auth_page(req, con) == -1)
		return;
	slash = strchr(tail, '/');
	if (slash == NULL || strcmp(slash, "/ack") != 0 ||
	    (size_t)(slash - tail) >= sizeof(idbuf)) {
		page_error(req, 404, "not found");
		return;
	}
	memcpy(idbuf, tail, (size_t)(slash - tail));
	idbuf[slash - tail] = '\0';
	if ((id = serve_parse_id(idbuf)) == -1) {
		page_error(req, 404, "no such cluster");
		return;
	}
	body = http_request_body(req, &len);
	csrf = serve_form_value(body ? body : "", body ? len : 0, "csrf");
	note = serve_form_value(body ? body : "", body ? len : 0, "note");
	if (!serve_csrf_ok(con, csrf)) {
		page_error(req, 403, "the form's CSRF token is missing or wrong: "
		    "reload the cluster page");
		goto out;
	}
	if (note == NULL || note[0] == '\0' || strlen(note) > SERVE_NOTE_MAX) {
		page_error(req, 400, "note: required, at most 1000 bytes");
		goto out;
	}
	if ((mono = serve_mono(req, con)) == NULL ||
	    (micro = serve_micro(req, con)) == NULL)
		goto out;
	rc = clusterstore_ack(mono, micro, id, note, &acked, err, sizeof(err));
	if (rc == -1) {
		page_db_error(req, err);
		goto out;
	}
	if (rc == 1) {
		page_error(req, strstr(err, "does not exist") ? 404 : 409, err);
		goto out;
	}
	log_info("serve: cluster %lld acknowledged from the console (%lld "
	    "mismatches)", (long long)id, (long long)acked);
	snprintf(loc, sizeof(loc), "/clusters/%lld", (long long)id);
	http_response_header(req, "Location", loc);
	http_reply(req, 303, "text/plain; charset=utf-8", "acknowledged\n", 13);
out:
	free(csrf);
	free(note);
}

void
serve_page_login(struct http_request *req, void *arg)
{
	struct console *con = arg;
	struct strbuf b = STRBUF_INIT;

	serve_page_begin(&b, "log in");
	if (!serve_has_token(con))
		strbuf_str(&b, "<p>This console listens on 127.0.0.1 only and "
		    "needs no login. <a href=\"/\">Overview</a></p>\n");
	else
		strbuf_str(&b, "<h1>Log in</h1><form method=\"post\" action=\""
		    "/login\"><p><label for=\"token\">Token "
		    "(RECONCILER_WEB_TOKEN)</label><br><input type=\"password\" "
		    "id=\"token\" name=\"token\" autocomplete=\"current-password\" "
		    "required> <button type=\"submit\" id=\"login\">Log in"
		    "</button></p></form>\n");
	serve_page_end(&b);
	serve_reply_page(req, 200, &b);
}

void
serve_page_login_post(struct http_request *req, void *arg)
{
	struct console *con = arg;
	const char *body;
	char *token;
	size_t len;

	body = http_request_body(req, &len);
	token = serve_form_value(body ? body : "", body ? len : 0, "token");
	serve_login(req, con, token);
	free(token);
}
