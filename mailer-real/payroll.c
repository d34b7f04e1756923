/*
 * payroll: see payroll.h. JSON answers are written out as text here (in a
 * common/strbuf, strings escaped by strbuf_json_string, the bytes jansson
 * would give) because the total must read 320.00 on the
 * wire: exact, two decimals, as the legacy mail says it, which jansson's
 * real printing cannot promise.
 */
#include "payroll.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/db.h"
#include "common/group_commit.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "common/validate.h"
#include "common/delivery.h"
#include "dispatch.h"
#include "legacy_render.h"

#define IDEM_KEY_MAX 200
#define PAGE_DEFAULT 50
#define PAGE_MAX 500

struct payroll_view {
	int64_t id;
	const char *ship_to;
	int64_t cents;
	const char *correlation_id;	/* NULL: no mail record */
	const char *destination;
	const char *status;
	int attempts;			/* < 0: leave out */
	const char *last_error;		/* NULL: leave out */
	const char *sent_at;		/* NULL: leave out */
};

/*
 * What a client may see of a delivery error: a stable code and, for an
 * answer of the SMTP server, its reply code and enhanced status code
 * ("smtp_refused: 550 5.1.1"). Never the stored text itself: it names our
 * SMTP host and port, TLS and library internals, and echoes whatever the
 * server said. The whole text is in the log (common/delivery.c logs every
 * failure with it) and in sent_mail.last_error for the operator.
 */
static const struct {
	const char *needle;	/* found anywhere, case-insensitive */
	const char *code;
} error_codes[] = {
	{ "tls", "smtp_tls_failed" },
	{ "ssl", "smtp_tls_failed" },
	{ "certificate", "smtp_tls_failed" },
	{ "auth", "smtp_auth_failed" },
	{ "timed out", "smtp_timeout" },
	{ "timeout", "smtp_timeout" },
	{ "unsafe", "message_invalid" },
	{ "control character", "message_invalid" },
	{ "no body", "message_invalid" },
	{ "not attempted", "smtp_not_attempted" },
	{ "smtp session", "smtp_unreachable" },
};

static const char *
find_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return hay;
	return NULL;
}

/* "550" or "550 5.1.1" from the start of p into out; 0 when p has none. */
static int
smtp_codes(const char *p, char *out, size_t outlen)
{
	size_t i = 0, dots = 0;

	while (*p == ' ')
		p++;
	if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) ||
	    !isdigit((unsigned char)p[2]) || isdigit((unsigned char)p[3]))
		return 0;
	snprintf(out, outlen, "%.3s", p);
	p += 3;
	if (*p != ' ' || !isdigit((unsigned char)p[1]))
		return 1;
	p++;
	while ((isdigit((unsigned char)p[i]) || p[i] == '.') && i < 11)
		dots += p[i++] == '.';
	if (dots == 2 && p[i - 1] != '.' && (p[i] == '\0' || p[i] == ' '))
		snprintf(out + 3, outlen > 3 ? outlen - 3 : 0, " %.*s", (int)i, p);
	return 1;
}

static void
public_error(const char *stored, char *out, size_t outlen)
{
	char codes[24];
	const char *code = "delivery_failed";
	size_t i;

	if (strncmp(stored, "RCPT TO:", 8) == 0 &&
	    smtp_codes(stored + 8, codes, sizeof(codes))) {
		snprintf(out, outlen, "smtp_refused: %s", codes);
		return;
	}
	if (strncmp(stored, "MAIL FROM:", 10) == 0 &&
	    smtp_codes(stored + 10, codes, sizeof(codes))) {
		snprintf(out, outlen, "smtp_sender_refused: %s", codes);
		return;
	}
	if (smtp_codes(stored, codes, sizeof(codes))) {
		snprintf(out, outlen, "smtp_rejected: %s", codes);
		return;
	}
	for (i = 0; i < nitems(error_codes); i++)
		if (find_ci(stored, error_codes[i].needle) != NULL) {
			code = error_codes[i].code;
			break;
		}
	snprintf(out, outlen, "%s", code);
}

static char *
payroll_json(const struct payroll_view *v)
{
	struct strbuf b = STRBUF_INIT;
	char total[32];

	legacy_format_total(v->cents, total, sizeof(total));
	strbuf_printf(&b, "{\"id\":%" PRId64 ",\"shipTo\":", v->id);
	strbuf_json_string(&b, v->ship_to);
	strbuf_printf(&b, ",\"total\":%s,\"notification\":", total);
	if (v->correlation_id == NULL) {
		strbuf_str(&b, "null}");
		return strbuf_take(&b);
	}
	strbuf_printf(&b, "{\"correlationId\":\"%s\",\"destination\":",
	    v->correlation_id);
	strbuf_json_string(&b, v->destination);
	strbuf_printf(&b, ",\"status\":\"%s\"", v->status);
	if (v->attempts >= 0)
		strbuf_printf(&b, ",\"attempts\":%d", v->attempts);
	if (v->last_error != NULL) {
		char pub[64];

		public_error(v->last_error, pub, sizeof(pub));
		strbuf_str(&b, ",\"lastError\":");
		strbuf_json_string(&b, pub);
	}
	if (v->sent_at != NULL) {
		strbuf_str(&b, ",\"sentAt\":");
		strbuf_json_string(&b, v->sent_at);
	}
	strbuf_str(&b, "}}");
	return strbuf_take(&b);
}

static void
reply_text_json(struct http_request *req, unsigned status, char *json)
{
	size_t n = strlen(json);

	json = xrealloc(json, n + 2);
	json[n++] = '\n';
	json[n] = '\0';
	http_reply(req, status, "application/json", json, n);
	free(json);
}

static struct db *
pool_take(struct payroll_api *api)
{
	struct db *db = NULL;

	pthread_mutex_lock(&api->pool_lock);
	if (api->npool > 0)
		db = api->pool[--api->npool];
	pthread_mutex_unlock(&api->pool_lock);
	return db ? db : db_new(api->conninfo, "postgresMono");
}

static void
pool_give(struct payroll_api *api, struct db *db)
{
	pthread_mutex_lock(&api->pool_lock);
	if (api->npool == api->cappool) {
		api->cappool = api->cappool ? api->cappool * 2 : 8;
		api->pool = xrealloc(api->pool, api->cappool * sizeof(*api->pool));
	}
	api->pool[api->npool++] = db;
	pthread_mutex_unlock(&api->pool_lock);
}

void
payroll_api_init(struct payroll_api *api)
{
	pthread_mutex_init(&api->pool_lock, NULL);
}

void
payroll_api_cleanup(struct payroll_api *api)
{
	size_t i;

	db_probe_stop(api->probe);
	api->probe = NULL;
	for (i = 0; i < api->npool; i++)
		db_free(api->pool[i]);
	free(api->pool);
	api->pool = NULL;
	api->npool = api->cappool = 0;
	pthread_mutex_destroy(&api->pool_lock);
}

struct payroll_input {
	const char *ship_to;
	int64_t cents;
};

static const struct validate_field payroll_fields[] = {
	{ .name = "shipTo", .type = VALIDATE_TEXT, .required = 1, .max_len = 256,
	  .offset = offsetof(struct payroll_input, ship_to) },
	{ .name = "total", .type = VALIDATE_MONEY, .required = 1,
	  .offset = offsetof(struct payroll_input, cents) },
	VALIDATE_FIELDS_END
};

/* Printable ASCII, 1..IDEM_KEY_MAX: it is stored, logged and compared. */
static int
idem_key_ok(const char *k)
{
	size_t n = 0;

	for (; k[n] != '\0'; n++)
		if ((unsigned char)k[n] < 0x21 || (unsigned char)k[n] > 0x7e)
			return 0;
	return n > 0 && n <= IDEM_KEY_MAX;
}

static void
payroll_create(struct http_request *req, void *arg)
{
	struct payroll_api *api = arg;
	struct payroll_input in = { 0 };
	struct validate_error e;
	struct outbox_item *it;
	const char *body, *key;
	char dest[LEGACY_ADDR_MAX + 1], err[256];
	json_t *obj;
	size_t len;

	body = http_request_body(req, &len);
	memset(&e, 0, sizeof(e));
	obj = validate_parse_object(body ? body : "", len, &e);
	if (obj == NULL || validate_object(obj, body ? body : "", len,
	    payroll_fields, &in, &e) != 0) {
		http_reply_error(req, 400, e.message, e.field[0] ? e.field : NULL);
		json_decref(obj);
		return;
	}
	if (legacy_destination(in.ship_to, api->outbox.mail_domain, dest,
	    sizeof(dest), err, sizeof(err)) != 0) {
		http_reply_error(req, 400, err, "shipTo");
		json_decref(obj);
		return;
	}
	key = http_request_header(req, "Idempotency-Key");
	if (key != NULL && !idem_key_ok(key)) {
		http_reply_error(req, 400, "Idempotency-Key must be 1 to 200 "
		    "printable ASCII characters", "Idempotency-Key");
		json_decref(obj);
		return;
	}

	it = xcalloc(1, sizeof(*it));
	it->ship_to = xstrdup(in.ship_to);
	it->total_cents = in.cents;
	it->idem_key = key ? xstrdup(key) : NULL;
	outbox_request_hash(it->ship_to, it->total_cents, it->request_hash);
	ids_uuid(it->correlation_id);
	it->owner = req;
	json_decref(obj);

	http_defer(req);
	group_commit_submit(api->gc, &it->gc);
}

void
payroll_committed(struct gc_item *gi, enum gc_outcome outcome, void *arg)
{
	struct payroll_api *api = arg;
	struct outbox_item *it = (struct outbox_item *)gi;
	struct http_request *req = it->owner;
	struct payroll_view v;
	char loc[64];

	switch (outcome) {
	case GC_STORE_DOWN:
		http_reply_unavailable(req, 1, "postgresMono is unavailable");
		goto done;
	case GC_FAILED:
		http_reply_error(req, 500, "the payroll could not be stored", NULL);
		goto done;
	case GC_OK:
		break;
	}
	if (it->result == OUTBOX_KEY_CONFLICT) {
		http_reply_error(req, 422, "Idempotency-Key was already used with "
		    "a different body", "Idempotency-Key");
		goto done;
	}
	memset(&v, 0, sizeof(v));
	v.id = it->id;
	v.ship_to = it->ship_to;
	v.cents = it->total_cents;
	v.correlation_id = it->correlation_id;
	v.destination = it->destination;
	v.status = it->status;
	v.attempts = -1;
	snprintf(loc, sizeof(loc), "/payroll/%" PRId64, it->id);
	http_response_header(req, "Location", loc);
	if (it->result == OUTBOX_REPLAYED)
		http_response_header(req, "Idempotent-Replayed", "true");
	reply_text_json(req, 201, payroll_json(&v));
	if (it->result == OUTBOX_CREATED) {
		log_info("payroll %" PRId64 " stored, mail %s to %s %s", it->id,
		    it->correlation_id, it->destination, it->status);
		api->batch_created++;
		/* queued only: payroll_batch_done wakes the dispatcher */
		if (api->dispatch != NULL)
			dispatch_push(api->dispatch, it->correlation_id, it->id,
			    it->ship_to, it->total_cents);
	}
done:
	outbox_item_free(it);
}

void
payroll_batch_done(void *arg)
{
	struct payroll_api *api = arg;

	/* every request of the batch is answered: now the background work */
	if (api->batch_created == 0)
		return;
	api->batch_created = 0;
	if (api->delivery != NULL)
		delivery_wake(api->delivery);
	dispatch_kick(api->dispatch);
}

static const char select_cols[] =
    "SELECT p.id, p.ship_to, (p.total * 100)::bigint, m.correlation_id,"
    " m.destination, m.status, m.attempts, m.last_error,"
    " to_char(m.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " FROM payroll p LEFT JOIN sent_mail m ON m.payroll_id = p.id ";

static char *
row_json(PGresult *res, int r)
{
	struct payroll_view v;

	memset(&v, 0, sizeof(v));
	v.id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
	v.ship_to = PQgetvalue(res, r, 1);
	v.cents = strtoll(PQgetvalue(res, r, 2), NULL, 10);
	if (!PQgetisnull(res, r, 3)) {
		v.correlation_id = PQgetvalue(res, r, 3);
		v.destination = PQgetvalue(res, r, 4);
		v.status = PQgetvalue(res, r, 5);
		v.attempts = atoi(PQgetvalue(res, r, 6));
		v.last_error = PQgetisnull(res, r, 7) ? NULL : PQgetvalue(res, r, 7);
		v.sent_at = PQgetisnull(res, r, 8) ? NULL : PQgetvalue(res, r, 8);
	}
	return payroll_json(&v);
}

/* Runs a query on a pooled connection; NULL after answering 503 itself. */
static PGresult *
query(struct payroll_api *api, struct http_request *req, const char *sql,
    int nparams, const char *const *params)
{
	struct db *db = pool_take(api);
	char err[256] = "";
	PGconn *conn = db_get(db, err, sizeof(err));
	PGresult *res = NULL;

	if (conn != NULL) {
		res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(err, sizeof(err), "%s", db_error(conn, res));
			PQclear(res);
			res = NULL;
			db_check_lost(db);
		}
	}
	pool_give(api, db);
	if (res == NULL) {
		log_warnx("postgresMono: %s", err);
		http_reply_unavailable(req, 1, "postgresMono is unavailable");
	}
	return res;
}

/* A decimal id in [min, 2^63): -1 when s is not one. */
static int
parse_id(const char *s, int64_t min, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min)
		return -1;
	*out = v;
	return 0;
}

static void
payroll_get(struct http_request *req, void *arg)
{
	struct payroll_api *api = arg;
	const char *tail = http_request_tail(req);
	char idtext[24], *sql;
	const char *params[1] = { idtext };
	PGresult *res;
	int64_t id;

	if (parse_id(tail, 1, &id) != 0) {
		http_reply_error(req, 404, "no such payroll", NULL);
		return;
	}
	snprintf(idtext, sizeof(idtext), "%" PRId64, id);
	sql = xasprintf("%sWHERE p.id = $1::bigint", select_cols);
	res = query(api, req, sql, 1, params);
	free(sql);
	if (res == NULL)
		return;
	if (PQntuples(res) == 0)
		http_reply_error(req, 404, "no such payroll", NULL);
	else
		reply_text_json(req, 200, row_json(res, 0));
	PQclear(res);
}

static void
payroll_list(struct http_request *req, void *arg)
{
	struct payroll_api *api = arg;
	const char *ls = http_request_query(req, "limit");
	const char *as = http_request_query(req, "after");
	int64_t limit = PAGE_DEFAULT, after = 0;
	char ltext[24], atext[24], *sql, *item;
	const char *params[2] = { atext, ltext };
	struct strbuf out = STRBUF_INIT;
	PGresult *res;
	int r, rows, shown;

	if (ls != NULL && (parse_id(ls, 1, &limit) != 0 || limit > PAGE_MAX)) {
		http_reply_error(req, 400, "limit must be an integer from 1 to 500",
		    "limit");
		return;
	}
	if (as != NULL && parse_id(as, 0, &after) != 0) {
		http_reply_error(req, 400, "after must be a payroll id (a "
		    "non-negative integer)", "after");
		return;
	}
	snprintf(ltext, sizeof(ltext), "%" PRId64, limit + 1);
	snprintf(atext, sizeof(atext), "%" PRId64, after);
	sql = xasprintf("%sWHERE p.id > $1::bigint ORDER BY p.id LIMIT $2::int",
	    select_cols);
	res = query(api, req, sql, 2, params);
	free(sql);
	if (res == NULL)
		return;
	rows = PQntuples(res);
	shown = rows > limit ? (int)limit : rows;
	strbuf_str(&out, "{\"items\":[");
	for (r = 0; r < shown; r++) {
		item = row_json(res, r);
		if (r > 0)
			strbuf_add(&out, ",", 1);
		strbuf_str(&out, item);
		free(item);
	}
	if (rows > limit)
		strbuf_printf(&out, "],\"next\":\"%s\"}",
		    PQgetvalue(res, shown - 1, 0));
	else
		strbuf_str(&out, "],\"next\":null}");
	PQclear(res);
	reply_text_json(req, 200, strbuf_take(&out));
}

static void
payroll_readyz(struct http_request *req, void *arg)
{
	struct payroll_api *api = arg;

	http_reply_readyz(req, "postgresMono", api->probe);
}

/* The seed's `curl payment.service/inventory`: which canary path (and
 * which build) answered, without a database round trip. */
static void
payroll_inventory(struct http_request *req, void *arg)
{
	struct payroll_api *api = arg;

	http_reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:s}",
	    "service", "mailer-real", "path", api->canary_path,
	    "notifier", api->notifier, "version", api->version));
}

const struct http_route payroll_routes[] = {
	{ .method = "POST", .path = "/payroll", .flags = HTTP_ROUTE_JSON,
	  .handler = payroll_create, .name = "payroll_create" },
	{ .method = "GET", .path = "/payroll", .handler = payroll_list,
	  .name = "payroll_list" },
	{ .method = "GET", .path = "/payroll/", .flags = HTTP_ROUTE_PREFIX,
	  .handler = payroll_get, .name = "payroll_get" },
	{ .method = "GET", .path = "/inventory", .handler = payroll_inventory,
	  .name = "inventory" },
	{ .method = "GET", .path = "/healthz", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = http_handle_healthz, .name = "healthz" },
	{ .method = "GET", .path = "/readyz", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = payroll_readyz, .name = "readyz" },
	{ .method = "GET", .path = "/metrics", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = http_handle_metrics, .name = "metrics" },
};
const size_t payroll_nroutes = nitems(payroll_routes);
