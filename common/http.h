/*
 * http: the HTTP server glue both services share, on libmicrohttpd.
 *
 * A program describes its endpoints as a table of routes. The glue
 * accumulates the body (bounded: 413 past max_body), answers 404, 405 with
 * Allow, 415 for a non-JSON body on a JSON route, and sets X-Request-Id
 * (echoed when the client sent a sane one, generated otherwise) and
 * X-Served-By on every response. It counts every request in the metrics
 * registry (http_requests_total{route,status}, a latency histogram
 * http_request_duration_seconds{route}).
 *
 * Security (docs/SECURITY.md): with a token set, every route but those
 * flagged HTTP_ROUTE_PUBLIC (health, readiness, metrics) needs
 * "Authorization: Bearer <token>", else 401 before the handler runs; an
 * unknown path is 401 too, so a stranger learns nothing of the routes.
 * Without a token the server listens on 127.0.0.1 unless told otherwise.
 * One address holds at most per_ip_limit connections, and a request must
 * arrive whole (headers and body) within request_deadline_s of its first
 * byte (of the connection, or of the end of the previous answer on a
 * kept-alive one), or its connection is closed: trickling clients cannot
 * hold every slot.
 *
 * A handler answers exactly once: either before it returns, or later from
 * any thread after calling http_defer() (the connection is suspended in the
 * meantime, holding no server thread).
 */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stddef.h>

#include <jansson.h>

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *arg);

enum http_route_flags {
	HTTP_ROUTE_PREFIX = 1 << 0,	/* path matches a prefix; the rest is http_request_tail() */
	HTTP_ROUTE_JSON = 1 << 1,	/* body must be application/json (else 415) */
	HTTP_ROUTE_PUBLIC = 1 << 2,	/* no token needed: /healthz, /readyz, /metrics */
};

struct http_route {
	const char *method;	/* "GET", "POST", ... */
	const char *path;	/* "/payroll", or with HTTP_ROUTE_PREFIX "/payroll/" */
	unsigned flags;
	http_handler_fn handler;
	const char *name;	/* metrics label: "payroll_create" */
};

struct http_server_config {
	const char *service;		/* X-Served-By name: "mailer-spy" */
	const char *version;		/* X-Served-By version: "1.0.0" */
	const char *bind;		/* address to listen on; NULL = 127.0.0.1
					   without a token, all with one */
	unsigned short port;
	const char *token;		/* bearer token; NULL/"" = none needed */
	const char *token_name;		/* its variable, for the log: "API_TOKEN";
					   NULL: no log (the server checks itself) */
	unsigned per_ip_limit;		/* connections from one address; 0 = 1024 */
	unsigned request_deadline_s;	/* whole request; 0 = 10 */
	size_t max_body;		/* bytes; 0 = 64 KiB */
	unsigned threads;		/* server threads; 0 = 2 */
	unsigned connection_limit;	/* 0 = 4096 */
	unsigned timeout_s;		/* idle connection timeout; 0 = 30 */
	unsigned drain_s;		/* how long shutdown waits for in-flight requests; 0 = 10 */
	const struct http_route *routes;
	size_t nroutes;
	void *arg;			/* passed to every handler */
};

/* Starts listening. NULL on failure with err filled. */
struct http_server *http_server_start(const struct http_server_config *cfg,
    char *err, size_t errlen);

/*
 * Shutdown, in three steps:
 * - http_server_quiesce: stops accepting; a request that still arrives
 *   (on a keep-alive connection) is answered 503 with Retry-After and
 *   Connection: close; waits up to drain_s for the requests in flight,
 *   deferred ones included, to be answered; then lets no handler start
 *   again and returns once none is running. Deferred requests still
 *   unanswered stay suspended for their owner to answer.
 * - the caller stops what answers deferred requests (a group committer
 *   answers everything it was given), then the rest of its workers;
 * - http_server_free: waits up to drain_s for the answers to go out,
 *   answers 503 to any request nobody answered (libmicrohttpd aborts on
 *   a suspended connection), stops the server and frees it.
 * http_server_wait_signal blocks until SIGTERM or SIGINT, then quiesces.
 */
void http_server_wait_signal(struct http_server *srv);
void http_server_quiesce(struct http_server *srv);
void http_server_free(struct http_server *srv);

/* Request accessors: the strings live as long as the request. */
const char *http_request_method(const struct http_request *req);
const char *http_request_path(const struct http_request *req);
/* For HTTP_ROUTE_PREFIX routes, what follows the prefix (percent-decoded). */
const char *http_request_tail(const struct http_request *req);
const char *http_request_query(const struct http_request *req, const char *key);
const char *http_request_header(const struct http_request *req, const char *name);
const char *http_request_body(const struct http_request *req, size_t *len);
const char *http_request_id(const struct http_request *req);
double http_request_started(const struct http_request *req);	/* now_s() at arrival */

/* Adds a header to the response still to come (copied). */
void http_response_header(struct http_request *req, const char *name,
    const char *value);

/* The one answer. Safe from any thread once the request is deferred. */
void http_reply(struct http_request *req, unsigned status,
    const char *content_type, const char *body, size_t len);
/* Like http_reply, taking ownership of body (malloc'ed; freed by http). */
void http_reply_take(struct http_request *req, unsigned status,
    const char *content_type, char *body, size_t len);
/* Takes ownership of body (json_decref'ed). */
void http_reply_json(struct http_request *req, unsigned status, json_t *body);
/* {"error": message, "field": field or null} */
void http_reply_error(struct http_request *req, unsigned status,
    const char *message, const char *field);
/* 503 with Retry-After: a store is down. */
void http_reply_unavailable(struct http_request *req, unsigned retry_after_s,
    const char *message);

/*
 * The handler will answer later: the connection is suspended when the
 * handler returns, and resumed by the http_reply* call from another thread.
 */
void http_defer(struct http_request *req);

/*
 * Bearer token check: returns 0 when token is NULL/empty or the request
 * carries "Authorization: Bearer <token>" (compared in constant time);
 * otherwise answers 401 with WWW-Authenticate and returns -1.
 */
int http_require_bearer(struct http_request *req, const char *token);

/*
 * Ready-made answers every service has, to use directly as route handlers
 * (flag them HTTP_ROUTE_PUBLIC).
 */
void http_handle_healthz(struct http_request *req, void *arg);	/* 200 {"status":"ok"} */
void http_handle_metrics(struct http_request *req, void *arg);	/* Prometheus text */

struct db_probe;
/*
 * /readyz from the probe's last state (common/db.h: refreshed in the
 * background, never on this thread): 200 {"status":"ready"} (returns 0),
 * or 503 + Retry-After naming the database (returns -1).
 */
int http_reply_readyz(struct http_request *req, const char *name,
    struct db_probe *probe);

#endif
