/*
 * handlers: see handlers.h. POST /notifications (behind SPY_TOKEN, which
 * common/http checks before any handler runs) checks the body (strictly:
 * common/validate), renders the mail, and hands the record to the store; the request stays suspended until the store has committed
 * it, so a 201 is only ever sent for a row that is durable.
 */
#include "handlers.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "common/validate.h"

struct notification {
	char correlation_id[37];
	int64_t payroll_id;
	const char *ship_to;
	int64_t total_cents;
};

static const struct validate_field notification_fields[] = {
	{ .name = "correlationId", .type = VALIDATE_UUID, .required = 1,
	  .offset = offsetof(struct notification, correlation_id) },
	{ .name = "payrollId", .type = VALIDATE_INT, .required = 1, .min = 1,
	  .max = INT64_MAX, .offset = offsetof(struct notification, payroll_id) },
	{ .name = "shipTo", .type = VALIDATE_TEXT, .required = 1,
	  .max_len = RENDER_SHIP_TO_MAX,
	  .offset = offsetof(struct notification, ship_to) },
	{ .name = "total", .type = VALIDATE_MONEY, .required = 1,
	  .offset = offsetof(struct notification, total_cents) },
	VALIDATE_FIELDS_END
};

static const char *const outcomes[] = { "created", "duplicate", "invalid",
    "unavailable", "overloaded", "failed" };
/* Looked up once each (a lookup takes the registry's lock). */
static struct metric *_Atomic outcome_counters[nitems(outcomes)];

static void
count(const char *outcome)
{
	char labels[64];
	struct metric *m;
	size_t i;

	for (i = 0; i < nitems(outcomes); i++)
		if (strcmp(outcomes[i], outcome) == 0)
			break;
	if (i < nitems(outcomes) && (m = atomic_load(&outcome_counters[i])) != NULL) {
		metrics_inc(m, 1);
		return;
	}
	snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
	m = metrics_counter("spy_notifications_total",
	    "POST /notifications by outcome", labels);
	if (i < nitems(outcomes))
		atomic_store(&outcome_counters[i], m);
	metrics_inc(m, 1);
}

/*
 * The record as the answer's JSON, built by hand (json_pack and json_dumps
 * cost microseconds a request): the bytes json_dumps gives, keys in this
 * order, and a newline.
 */
static char *
record_json(const char *correlation_id, const struct render_mail *m,
    size_t *len)
{
	struct strbuf b = STRBUF_INIT;

	strbuf_str(&b, "{\"correlationId\":");
	strbuf_json_string(&b, correlation_id);
	strbuf_str(&b, ",\"destination\":");
	strbuf_json_string(&b, m->destination);
	strbuf_str(&b, ",\"subject\":");
	strbuf_json_string(&b, m->subject);
	strbuf_str(&b, ",\"body\":");
	strbuf_json_string(&b, m->body);
	strbuf_str(&b, "}\n");
	*len = b.len;
	return strbuf_take(&b);
}

void
spy_record_done(struct spy_record *rec, enum gc_outcome outcome, void *arg)
{
	struct http_request *req = rec->owner;
	char *body;
	size_t len;

	(void)arg;
	switch (outcome) {
	case GC_OK:
		if (rec->inserted) {
			count("created");
			http_reply_take(req, 201, "application/json", rec->created,
			    rec->created_len);
			rec->created = NULL;
		} else {
			count("duplicate");
			body = record_json(rec->correlation_id, &rec->first, &len);
			http_reply_take(req, 200, "application/json", body, len);
		}
		break;
	case GC_STORE_DOWN:
		count("unavailable");
		http_reply_unavailable(req, 1, "postgresMicro is unavailable");
		break;
	case GC_FAILED:
		count("failed");
		http_reply_error(req, 500, "could not record the notification", NULL);
		break;
	}
	spy_record_free(rec);
}

static void
post_notification(struct http_request *req, void *arg)
{
	struct spy *spy = arg;
	struct notification n;
	struct validate_error e;
	struct spy_record *rec = NULL;
	json_t *obj = NULL;
	const char *body;
	char err[256];
	size_t len;

	body = http_request_body(req, &len);
	memset(&n, 0, sizeof(n));
	if ((obj = validate_parse_object(body, len, &e)) == NULL ||
	    validate_object(obj, body, len, notification_fields, &n, &e) == -1) {
		count("invalid");
		http_reply_error(req, 400, e.message, e.field[0] ? e.field : NULL);
		goto out;
	}
	if ((size_t)spy->cfg->max_pending <= store_pending(spy->store)) {
		count("overloaded");
		http_reply_unavailable(req, 1, "too many notifications in flight");
		goto out;
	}
	rec = xcalloc(1, sizeof(*rec));
	if (render_mail(spy->body_template, n.payroll_id, n.ship_to,
	    n.total_cents, spy->cfg->mail_domain, &rec->mail, err,
	    sizeof(err)) == -1) {
		count("invalid");
		http_reply_error(req, 400, err, "shipTo");
		spy_record_free(rec);
		goto out;
	}
	memcpy(rec->correlation_id, n.correlation_id, sizeof(rec->correlation_id));
	rec->payroll_id = n.payroll_id;
	rec->owner = req;
	/* here, on one of the server threads, not on the committer's */
	rec->created = record_json(rec->correlation_id, &rec->mail,
	    &rec->created_len);
	log_debug("notification %s payroll %lld -> %s", rec->correlation_id,
	    (long long)rec->payroll_id, rec->mail.destination);
	/* deferred first: the store may answer before this function returns */
	http_defer(req);
	store_submit(spy->store, rec);
out:
	json_decref(obj);
}

static void
get_readyz(struct http_request *req, void *arg)
{
	struct spy *spy = arg;

	/* Ready means the next notification is written: a committer still
	 * backing off from the outage tries again at once. */
	if (http_reply_readyz(req, "postgresMicro", spy->probe) == 0)
		store_retry_now(spy->store);
}

const struct http_route spy_routes[] = {
	{ .method = "POST", .path = "/notifications", .flags = HTTP_ROUTE_JSON,
	  .handler = post_notification, .name = "notifications" },
	{ .method = "GET", .path = "/healthz", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = http_handle_healthz, .name = "healthz" },
	{ .method = "GET", .path = "/readyz", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = get_readyz, .name = "readyz" },
	{ .method = "GET", .path = "/metrics", .flags = HTTP_ROUTE_PUBLIC,
	  .handler = http_handle_metrics, .name = "metrics" },
};
const size_t spy_nroutes = nitems(spy_routes);
