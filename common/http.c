/*
 * http: see http.h. libmicrohttpd calls the access handler several times
 * per request: once with the headers (we route and allocate the request),
 * once per body chunk (we accumulate, bounded), and a last time with no
 * data (we run the route's handler). A handler that defers leaves the
 * connection suspended; http_reply from another thread stores the answer
 * and resumes it, and the next call of the access handler queues it.
 *
 * Errors decided on the first call (404, 405, 415) are answered on the
 * last one, after the body is drained, so the client always reads its
 * answer; only a Content-Length over the limit is answered at once (413),
 * which is the point of checking it early.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "db.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include "util.h"

struct header {
	struct header *next;
	char *name;
	char *value;
};

struct http_request {
	struct http_server *srv;
	struct MHD_Connection *conn;
	const struct http_route *route;
	char *method;
	char *path;
	const char *tail;
	struct strbuf body;	/* bounded by max_body */
	int too_big;
	/* decided on the first call, answered after the body is drained */
	unsigned early_status;
	const char *early_message;
	char allow[96];
	char id[IDS_UUID_LEN + 129];
	double started;
	struct header *headers;

	struct http_request *live_prev, *live_next;	/* srv->live, under srv->lock */

	pthread_mutex_t lock;
	int handled;		/* the handler ran (or an error stood in for it) */
	int deferred;
	int suspended;
	int answered;		/* status/ctype/rbody are set */
	int queued;
	unsigned status;
	char *ctype;
	char *rbody;
	size_t rlen;
};

/* A route's metrics, looked up once (a lookup takes the registry's lock). */
#define STATUS_SLOTS 6
struct route_metrics {
	struct metric *_Atomic duration;
	struct {
		_Atomic unsigned status;	/* 0: free; claimed once */
		struct metric *_Atomic count;
	} by_status[STATUS_SLOTS];
};

/*
 * One per connection (MHD's socket context), on the server's list while
 * the connection lives, for the deadline sweeper. reading is 1 from the
 * connection's start, or the end of the previous answer, until the
 * request is whole; since is when that began.
 */
struct conn_track {
	struct conn_track *prev, *next;
	int fd;
	_Atomic int reading;
	_Atomic uint64_t since_ns;
};

struct http_server {
	struct MHD_Daemon *daemon;
	pthread_mutex_t conns_lock;
	struct conn_track *conns;	/* under conns_lock */
	pthread_t sweeper;
	pthread_cond_t sweeper_wake;
	int sweeper_stop;		/* under conns_lock */
	int sweeper_running;
	struct http_server_config cfg;
	struct route_metrics *route_metrics;	/* one per route */
	_Atomic long inflight;
	_Atomic int draining;
	char served_by[128];
	/*
	 * Shutdown: once closing is set no handler starts again, and
	 * handlers counts those still running. live lists every request
	 * not yet completed (so that http_server_free can answer one still
	 * suspended); completed_cb unlinks a request before freeing it.
	 * Lock order: srv->lock, then a request's lock.
	 */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int closing;
	unsigned handlers;
	struct http_request *live;
	struct metric *m_deadline;
};

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warnx("microhttpd: %s", buf);
}

static int
method_has_body(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
	    strcmp(m, "PATCH") == 0;
}

static int
path_matches(const struct http_route *r, const char *path)
{
	if (r->flags & HTTP_ROUTE_PREFIX)
		return strncmp(path, r->path, strlen(r->path)) == 0;
	return strcmp(path, r->path) == 0;
}

/* "application/json" with nothing after it but an optional utf-8 charset. */
static int
content_type_json(const char *ct)
{
	static const char base[] = "application/json";
	const char *p;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, base, sizeof(base) - 1) != 0)
		return 0;
	p = ct + sizeof(base) - 1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return 1;
	if (*p++ != ';')
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "charset=", 8) != 0)
		return 0;
	p += 8;
	if (strncasecmp(p, "utf-8", 5) == 0)
		p += 5;
	else if (strncasecmp(p, "\"utf-8\"", 7) == 0)
		p += 7;
	else
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '\0';
}

/* 1 when the request carries "Authorization: Bearer <token>". */
static int
bearer_ok(const struct http_request *req, const char *token)
{
	static const char prefix[] = "Bearer ";
	const char *h = http_request_header(req, "Authorization");
	size_t tlen, hlen, i;
	unsigned char diff;

	if (h == NULL || strncasecmp(h, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	h += sizeof(prefix) - 1;
	tlen = strlen(token);
	hlen = strlen(h);
	diff = hlen != tlen;
	/* Same work whatever the mismatch position. */
	for (i = 0; i < tlen; i++)
		diff |= (unsigned char)(token[i] ^ (i < hlen ? h[i] : 0));
	return diff == 0;
}

static void
route_request(struct http_request *req)
{
	const struct http_server_config *cfg = &req->srv->cfg;
	const struct http_route *r;
	size_t i, alen = 0;
	int path_seen = 0;

	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		if (!path_matches(r, req->path))
			continue;
		path_seen = 1;
		if (strcmp(r->method, req->method) == 0) {
			req->route = r;
			req->tail = req->path + strlen(r->path);
			break;
		}
		if (strstr(req->allow, r->method) == NULL &&
		    alen + strlen(r->method) + 3 < sizeof(req->allow)) {
			alen += (size_t)snprintf(req->allow + alen,
			    sizeof(req->allow) - alen, "%s%s", alen ? ", " : "",
			    r->method);
		}
	}
	/* Before 404/405: without the token, the routes are nobody's business. */
	if (cfg->token != NULL && cfg->token[0] != '\0' &&
	    (req->route == NULL || !(req->route->flags & HTTP_ROUTE_PUBLIC)) &&
	    !bearer_ok(req, cfg->token)) {
		req->route = NULL;
		req->early_status = 401;
		req->early_message = http_request_header(req, "Authorization") ?
		    "invalid token" : "authorization required";
		return;
	}
	if (req->route == NULL) {
		req->early_status = path_seen ? 405 : 404;
		req->early_message = path_seen ? "method not allowed" : "not found";
		return;
	}
	if ((req->route->flags & HTTP_ROUTE_JSON) && method_has_body(req->method) &&
	    !content_type_json(http_request_header(req, "Content-Type"))) {
		req->early_status = 415;
		req->early_message = "Content-Type must be application/json";
	}
}

static struct http_request *
request_new(struct http_server *srv, struct MHD_Connection *conn,
    const char *url, const char *method)
{
	struct http_request *req = xcalloc(1, sizeof(*req));
	const char *rid;

	req->srv = srv;
	req->conn = conn;
	req->method = xstrdup(method);
	req->path = xstrdup(url);
	req->tail = "";
	req->started = now_s();
	pthread_mutex_init(&req->lock, NULL);
	rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	if (ids_request_id_sane(rid))
		snprintf(req->id, sizeof(req->id), "%s", rid);
	else
		ids_request_uuid(req->id);
	atomic_fetch_add(&srv->inflight, 1);
	pthread_mutex_lock(&srv->lock);
	req->live_next = srv->live;
	if (srv->live != NULL)
		srv->live->live_prev = req;
	srv->live = req;
	pthread_mutex_unlock(&srv->lock);
	return req;
}

static void
request_free(struct http_request *req)
{
	struct header *h, *next;

	if (req == NULL)
		return;
	for (h = req->headers; h != NULL; h = next) {
		next = h->next;
		free(h->name);
		free(h->value);
		free(h);
	}
	pthread_mutex_destroy(&req->lock);
	free(req->method);
	free(req->path);
	strbuf_free(&req->body);
	free(req->ctype);
	free(req->rbody);
	free(req);
}

/* The deadline clock of conn: (re)started with 1, stopped with 0. */
static void
track_reading(struct MHD_Connection *conn, int reading)
{
	const union MHD_ConnectionInfo *ci;
	struct conn_track *t;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci == NULL || (t = ci->socket_context) == NULL)
		return;
	if (reading)
		atomic_store(&t->since_ns, now_ns());
	atomic_store(&t->reading, reading);
}

static void
connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct http_server *srv = cls;
	const union MHD_ConnectionInfo *ci;
	struct conn_track *t = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		t = xcalloc(1, sizeof(*t));
		t->fd = ci != NULL ? ci->connect_fd : -1;
		atomic_init(&t->reading, 1);
		atomic_init(&t->since_ns, now_ns());
		pthread_mutex_lock(&srv->conns_lock);
		t->next = srv->conns;
		if (srv->conns != NULL)
			srv->conns->prev = t;
		srv->conns = t;
		pthread_mutex_unlock(&srv->conns_lock);
		*socket_context = t;
		return;
	}
	if (t == NULL)
		return;
	/* Before MHD closes the socket: the sweeper never sees a reused fd. */
	pthread_mutex_lock(&srv->conns_lock);
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		srv->conns = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&srv->conns_lock);
	free(t);
	*socket_context = NULL;
}

/*
 * Every quarter second: a connection still reading its request past the
 * deadline is shut down (MHD sees the end of the stream and closes it).
 * The idle timeout alone cannot do this: it restarts with every byte.
 */
static void *
sweeper_main(void *arg)
{
	struct http_server *srv = arg;
	uint64_t limit = (uint64_t)srv->cfg.request_deadline_s * 1000000000ULL;
	struct conn_track *t;
	struct timespec until;
	uint64_t now;
	unsigned cut;

	pthread_mutex_lock(&srv->conns_lock);
	while (!srv->sweeper_stop) {
		now = now_ns();
		cut = 0;
		for (t = srv->conns; t != NULL; t = t->next) {
			if (!atomic_load(&t->reading) || t->fd < 0 ||
			    now - atomic_load(&t->since_ns) <= limit)
				continue;
			atomic_store(&t->reading, 0);
			shutdown(t->fd, SHUT_RDWR);
			cut++;
		}
		if (cut > 0) {
			metrics_inc(srv->m_deadline, cut);
			log_debug("closed %u connection(s) still sending their "
			    "request after %us", cut, srv->cfg.request_deadline_s);
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 250000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&srv->sweeper_wake, &srv->conns_lock,
		    &until);
	}
	pthread_mutex_unlock(&srv->conns_lock);
	return NULL;
}

static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct http_request *req = *con_cls;

	track_reading(conn, 1);
	if (req == NULL)
		return;
	if (!req->queued)
		log_debug("request %s %s ended before an answer (code %d)",
		    req->method, req->path, (int)toe);
	pthread_mutex_lock(&srv->lock);
	if (req->live_prev != NULL)
		req->live_prev->live_next = req->live_next;
	else
		srv->live = req->live_next;
	if (req->live_next != NULL)
		req->live_next->live_prev = req->live_prev;
	pthread_mutex_unlock(&srv->lock);
	request_free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&srv->inflight, 1);
}

static void
count_request(struct http_request *req)
{
	const char *name = req->route ? req->route->name : "unmatched";
	struct route_metrics *rm = NULL;
	struct metric *m = NULL;
	char labels[160];
	unsigned want;
	size_t i;

	if (req->route != NULL)
		rm = &req->srv->route_metrics[req->route - req->srv->cfg.routes];
	for (i = 0; rm != NULL && i < STATUS_SLOTS; i++) {
		want = 0;
		if (atomic_load(&rm->by_status[i].status) == req->status ||
		    atomic_compare_exchange_strong(&rm->by_status[i].status, &want,
		    req->status) || want == req->status) {
			m = atomic_load(&rm->by_status[i].count);
			break;
		}
	}
	if (m == NULL) {
		snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%u\"",
		    name, req->status);
		m = metrics_counter("http_requests_total",
		    "HTTP requests answered, by route and status", labels);
		if (rm != NULL && i < STATUS_SLOTS)
			atomic_store(&rm->by_status[i].count, m);
	}
	metrics_inc(m, 1);
	if (rm == NULL || (m = atomic_load(&rm->duration)) == NULL) {
		snprintf(labels, sizeof(labels), "route=\"%s\"", name);
		m = metrics_histogram("http_request_duration_seconds",
		    "Time from request arrival to answer, by route", labels, NULL, 0);
		if (rm != NULL)
			atomic_store(&rm->duration, m);
	}
	metrics_observe(m, now_s() - req->started);
}

static enum MHD_Result
queue_answer(struct http_request *req)
{
	struct MHD_Response *resp;
	struct header *h;
	enum MHD_Result rc;

	resp = MHD_create_response_from_buffer(req->rlen, req->rbody,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		return MHD_NO;
	req->rbody = NULL;
	if (req->ctype != NULL)
		MHD_add_response_header(resp, "Content-Type", req->ctype);
	MHD_add_response_header(resp, "X-Request-Id", req->id);
	MHD_add_response_header(resp, "X-Served-By", req->srv->served_by);
	for (h = req->headers; h != NULL; h = h->next)
		MHD_add_response_header(resp, h->name, h->value);
	if (atomic_load(&req->srv->draining))
		MHD_add_response_header(resp, "Connection", "close");
	rc = MHD_queue_response(req->conn, req->status, resp);
	MHD_destroy_response(resp);
	req->queued = 1;
	count_request(req);
	log_debug("%s %s -> %u", req->method, req->path, req->status);
	return rc;
}

/* 1 when a handler may run now (counted until handler_leave); 0 once closing. */
static int
handler_enter(struct http_server *srv)
{
	int ok;

	pthread_mutex_lock(&srv->lock);
	ok = !srv->closing;
	if (ok)
		srv->handlers++;
	pthread_mutex_unlock(&srv->lock);
	return ok;
}

static void
handler_leave(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (--srv->handlers == 0)
		pthread_cond_broadcast(&srv->idle);
	pthread_mutex_unlock(&srv->lock);
}

static void
run_handler(struct http_request *req)
{
	req->handled = 1;
	log_set_id(req->id);
	if (req->early_status == 405) {
		http_response_header(req, "Allow", req->allow);
		http_reply_error(req, 405, req->early_message, NULL);
	} else if (req->early_status == 401) {
		http_response_header(req, "WWW-Authenticate", "Bearer");
		http_reply_error(req, 401, req->early_message, NULL);
	} else if (req->early_status != 0) {
		http_reply_error(req, req->early_status, req->early_message, NULL);
	} else if (req->too_big) {
		http_reply_error(req, 413, "request body too large", NULL);
	} else if (!handler_enter(req->srv)) {
		/* shutting down: what the handler would use may be gone */
		http_reply_unavailable(req, 1, "shutting down");
	} else {
		req->route->handler(req, req->srv->cfg.arg);
		handler_leave(req->srv);
		if (!req->answered && !req->deferred) {
			log_warnx("handler %s gave no answer", req->route->name);
			http_reply_error(req, 500, "internal error", NULL);
		}
	}
	log_set_id(NULL);
}

/*
 * Message framing a server must refuse (RFC 9112 6.1, 6.3, 3.2): both
 * Content-Length and Transfer-Encoding is how requests are smuggled past
 * a proxy that reads the other one; a coding other than chunked has no
 * length at all (libmicrohttpd would wait for the client to close); an
 * HTTP/1.1 request needs a Host. Returns the status, 0 when fine.
 */
static unsigned
framing_problem(struct MHD_Connection *conn, const char *version,
    const char **why)
{
	const char *te, *cl;

	te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    "Transfer-Encoding");
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    "Content-Length");
	if (te != NULL && cl != NULL) {
		*why = "both Content-Length and Transfer-Encoding";
		return 400;
	}
	if (te != NULL && strcasecmp(te, "chunked") != 0) {
		*why = "Transfer-Encoding other than chunked";
		return 501;
	}
	if (strcmp(version, "HTTP/1.1") == 0 &&
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host") == NULL) {
		*why = "HTTP/1.1 request without Host";
		return 400;
	}
	return 0;
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct http_request *req = *con_cls;
	size_t max = srv->cfg.max_body;
	enum MHD_Result rc;

	if (req == NULL) {
		const char *cl, *why = NULL;
		char *end;
		unsigned long long n, bad;

		req = request_new(srv, conn, url, method);
		*con_cls = req;
		if (atomic_load(&srv->draining)) {
			/* a keep-alive connection after SIGTERM: 503, then closed */
			req->handled = 1;
			http_reply_unavailable(req, 1, "shutting down");
			return queue_answer(req);
		}
		route_request(req);
		if ((bad = framing_problem(conn, version, &why)) != 0) {
			/* the rest of the stream cannot be trusted: close it */
			req->early_status = (unsigned)bad;
			req->early_message = why;
			http_response_header(req, "Connection", "close");
			run_handler(req);
			return queue_answer(req);
		}
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    "Content-Length");
		if (cl != NULL && req->early_status == 0) {
			errno = 0;
			n = strtoull(cl, &end, 10);
			if (errno != 0 || end == cl || n > max) {
				req->too_big = 1;
				run_handler(req);
				return queue_answer(req);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		if (!req->too_big && req->early_status == 0) {
			if (n > max || req->body.len > max - n) {
				req->too_big = 1;
				strbuf_free(&req->body);
			} else {
				strbuf_add(&req->body, upload_data, n);
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->queued)
		return MHD_YES;
	if (!req->handled) {
		track_reading(conn, 0);	/* the request is whole */
		run_handler(req);
	}
	pthread_mutex_lock(&req->lock);
	if (req->answered) {
		pthread_mutex_unlock(&req->lock);
		return queue_answer(req);
	}
	/* Deferred and not answered yet: park the connection. */
	MHD_suspend_connection(conn);
	req->suspended = 1;
	pthread_mutex_unlock(&req->lock);
	rc = MHD_YES;
	return rc;
}

/*
 * Room for every connection the limits allow, plus the process's own
 * files: a soft RLIMIT_NOFILE of 1024 (a common default) would make
 * accept() fail long before connection_limit.
 */
static void
raise_fd_limit(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ?
	    want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warn("setrlimit(RLIMIT_NOFILE, %lu)", (unsigned long)rl.rlim_cur);
	else if (rl.rlim_cur < want)
		log_warnx("open files limited to %lu (hard limit): fewer than "
		    "the %u connections allowed", (unsigned long)rl.rlim_cur, want);
}

struct http_server *
http_server_start(const struct http_server_config *cfg, char *err,
    size_t errlen)
{
	struct http_server *srv = xcalloc(1, sizeof(*srv));
	struct sockaddr_in sa;
	sigset_t sigs;
	unsigned flags;
	const char *bind = cfg->bind, *tname;
	int has_token = cfg->token != NULL && cfg->token[0] != '\0';
	pthread_condattr_t ca;

	srv->cfg = *cfg;
	srv->route_metrics = xcalloc(cfg->nroutes ? cfg->nroutes : 1,
	    sizeof(*srv->route_metrics));
	if (srv->cfg.max_body == 0)
		srv->cfg.max_body = 64 * 1024;
	if (srv->cfg.threads == 0)
		srv->cfg.threads = 2;
	if (srv->cfg.connection_limit == 0)
		srv->cfg.connection_limit = 4096;
	if (srv->cfg.per_ip_limit == 0)
		srv->cfg.per_ip_limit = 1024;
	if (srv->cfg.timeout_s == 0)
		srv->cfg.timeout_s = 30;
	if (srv->cfg.request_deadline_s == 0)
		srv->cfg.request_deadline_s = 10;
	if (srv->cfg.drain_s == 0)
		srv->cfg.drain_s = 10;
	snprintf(srv->served_by, sizeof(srv->served_by), "%s/%s",
	    cfg->service ? cfg->service : "unknown",
	    cfg->version ? cfg->version : "0");
	atomic_init(&srv->inflight, 0);
	atomic_init(&srv->draining, 0);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->idle, NULL);
	pthread_mutex_init(&srv->conns_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->sweeper_wake, &ca);
	pthread_condattr_destroy(&ca);
	srv->m_deadline = metrics_counter("http_request_deadline_closed_total",
	    "Connections closed for sending a request slower than the deadline",
	    NULL);

	/* Secure by default: no token, no listening beyond this machine. */
	/* (a server that checks its clients itself names no token_name) */
	tname = cfg->token_name;
	if (bind == NULL || *bind == '\0') {
		bind = has_token ? "0.0.0.0" : "127.0.0.1";
		if (!has_token && tname != NULL)
			log_info("%s is not set: listening on 127.0.0.1 only "
			    "(set %s, or BIND to choose the address)", tname, tname);
	} else if (!has_token && tname != NULL) {
		log_warnx("BIND=%s without %s: every endpoint is open to anyone "
		    "who reaches %s", bind, tname, bind);
	}
	srv->cfg.bind = bind;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(cfg->port);
	if (inet_pton(AF_INET, bind, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "bind address '%s' is not an IPv4 address",
		    bind);
		goto fail;
	}
	raise_fd_limit(srv->cfg.connection_limit + 256);

	/*
	 * Server threads inherit this mask: SIGTERM and SIGINT wait for
	 * http_server_wait_signal() in the main thread, SIGPIPE is moot.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * poll(), not epoll. With libmicrohttpd 0.9.75 (Debian 12), epoll and
	 * suspend/resume under load now and then left every connection of the
	 * server with a request unread in its socket and both workers asleep
	 * in epoll_wait: seconds without an answer (wrk runs of 4 s at 128
	 * connections against the spy: 3 stalls in 27; with poll none in 55,
	 * and no more CPU per request).
	 * docs/ARCHITECTURE.md has the details.
	 */
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	srv->daemon = MHD_start_daemon(flags, cfg->port, NULL, NULL, access_cb,
	    srv,
	    MHD_OPTION_EXTERNAL_LOGGER, (MHD_LogCallback)mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)srv->cfg.threads,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->cfg.timeout_s,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->cfg.connection_limit,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)srv->cfg.per_ip_limit,
	    MHD_OPTION_NOTIFY_COMPLETED, (MHD_RequestCompletedCallback)completed_cb,
	    srv,
	    MHD_OPTION_NOTIFY_CONNECTION,
	    (MHD_NotifyConnectionCallback)connection_cb, srv,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
	    MHD_OPTION_END);
	if (srv->daemon == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%u (port in use?)",
		    bind, (unsigned)cfg->port);
		goto fail;
	}
	thread_start(&srv->sweeper, sweeper_main, srv);
	srv->sweeper_running = 1;
	return srv;
fail:
	pthread_cond_destroy(&srv->sweeper_wake);
	pthread_mutex_destroy(&srv->conns_lock);
	pthread_cond_destroy(&srv->idle);
	pthread_mutex_destroy(&srv->lock);
	free(srv->route_metrics);
	free(srv);
	return NULL;
}

/* Waits up to until_ns for every request to be completed; 1 when they are. */
static int
wait_inflight(struct http_server *srv, uint64_t until_ns)
{
	while (atomic_load(&srv->inflight) > 0 && now_ns() < until_ns)
		sleep_ms(10);
	return atomic_load(&srv->inflight) == 0;
}

void
http_server_quiesce(struct http_server *srv)
{
	MHD_socket fd;
	uint64_t deadline;

	log_info("no new connections, draining %ld request(s)",
	    atomic_load(&srv->inflight));
	atomic_store(&srv->draining, 1);
	fd = MHD_quiesce_daemon(srv->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	deadline = now_ns() + (uint64_t)srv->cfg.drain_s * 1000000000ULL;
	if (!wait_inflight(srv, deadline))
		log_warnx("%ld request(s) still in flight after %us",
		    atomic_load(&srv->inflight), srv->cfg.drain_s);
	/* from here on no handler starts, and none is running on return */
	pthread_mutex_lock(&srv->lock);
	srv->closing = 1;
	while (srv->handlers > 0)
		pthread_cond_wait(&srv->idle, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
}

void
http_server_wait_signal(struct http_server *srv)
{
	sigset_t sigs;
	int sig = 0;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("signal %d: shutting down", sig);
	http_server_quiesce(srv);
}

/*
 * A request still suspended when the server stops would make
 * MHD_stop_daemon abort: answer it 503 (its owner is gone by now).
 * Returns how many were answered.
 */
static unsigned
answer_suspended(struct http_server *srv)
{
	static const char body[] = "{\"error\":\"shutting down\",\"field\":null}\n";
	struct http_request *req;
	unsigned n = 0;

	pthread_mutex_lock(&srv->lock);
	for (req = srv->live; req != NULL; req = req->live_next) {
		pthread_mutex_lock(&req->lock);
		if (!req->answered && req->deferred) {
			req->status = 503;
			req->ctype = xstrdup("application/json");
			req->rbody = xstrdup(body);
			req->rlen = sizeof(body) - 1;
			req->answered = 1;
			if (req->suspended) {
				req->suspended = 0;
				MHD_resume_connection(req->conn);
			}
			n++;
		}
		pthread_mutex_unlock(&req->lock);
	}
	pthread_mutex_unlock(&srv->lock);
	return n;
}

void
http_server_free(struct http_server *srv)
{
	uint64_t deadline;
	unsigned n;

	if (srv == NULL)
		return;
	if (!atomic_load(&srv->draining))
		http_server_quiesce(srv);
	/* answers given since the drain (by committers) go out first */
	deadline = now_ns() + (uint64_t)srv->cfg.drain_s * 1000000000ULL;
	wait_inflight(srv, deadline);
	if ((n = answer_suspended(srv)) > 0) {
		log_warnx("%u request(s) never answered: 503", n);
		wait_inflight(srv, now_ns() + 1000000000ULL);
	}
	if (srv->sweeper_running) {
		pthread_mutex_lock(&srv->conns_lock);
		srv->sweeper_stop = 1;
		pthread_cond_signal(&srv->sweeper_wake);
		pthread_mutex_unlock(&srv->conns_lock);
		pthread_join(srv->sweeper, NULL);
	}
	MHD_stop_daemon(srv->daemon);
	pthread_cond_destroy(&srv->idle);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->sweeper_wake);
	pthread_mutex_destroy(&srv->conns_lock);
	free(srv->route_metrics);
	free(srv);
}

const char *
http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *
http_request_path(const struct http_request *req)
{
	return req->path;
}

const char *
http_request_tail(const struct http_request *req)
{
	return req->tail;
}

const char *
http_request_query(const struct http_request *req, const char *key)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *
http_request_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_request_body(const struct http_request *req, size_t *len)
{
	if (len != NULL)
		*len = req->body.len;
	return req->body.p ? req->body.p : "";
}

const char *
http_request_id(const struct http_request *req)
{
	return req->id;
}

double
http_request_started(const struct http_request *req)
{
	return req->started;
}

void
http_response_header(struct http_request *req, const char *name,
    const char *value)
{
	struct header *h = xcalloc(1, sizeof(*h));

	h->name = xstrdup(name);
	h->value = xstrdup(value);
	h->next = req->headers;
	req->headers = h;
}

void
http_reply(struct http_request *req, unsigned status, const char *content_type,
    const char *body, size_t len)
{
	char *copy = xmalloc(len + 1);

	memcpy(copy, body, len);
	copy[len] = '\0';
	http_reply_take(req, status, content_type, copy, len);
}

void
http_reply_take(struct http_request *req, unsigned status,
    const char *content_type, char *body, size_t len)
{
	pthread_mutex_lock(&req->lock);
	if (req->answered) {
		pthread_mutex_unlock(&req->lock);
		log_warnx("%s %s answered twice (second: %u)", req->method,
		    req->path, status);
		free(body);
		return;
	}
	req->status = status;
	req->ctype = content_type ? xstrdup(content_type) : NULL;
	req->rbody = body;
	req->rlen = len;
	req->answered = 1;
	if (req->suspended) {
		req->suspended = 0;
		MHD_resume_connection(req->conn);
	}
	/* req may be freed by a server thread as soon as this unlocks. */
	pthread_mutex_unlock(&req->lock);
}

void
http_reply_json(struct http_request *req, unsigned status, json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT);
	size_t n;

	json_decref(body);
	if (s == NULL) {
		http_reply(req, 500, "application/json",
		    "{\"error\":\"internal error\",\"field\":null}", 39);
		return;
	}
	n = strlen(s);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	s[n] = '\0';
	http_reply_take(req, status, "application/json", s, n);
}

void
http_reply_error(struct http_request *req, unsigned status, const char *message,
    const char *field)
{
	json_t *o = json_object();

	json_object_set_new(o, "error", json_string(message ? message : "error"));
	json_object_set_new(o, "field", field ? json_string(field) : json_null());
	/* a field name that is not UTF-8 makes json_string fail: say null */
	if (json_object_get(o, "field") == NULL)
		json_object_set_new(o, "field", json_null());
	if (json_object_get(o, "error") == NULL)
		json_object_set_new(o, "error", json_string("error"));
	http_reply_json(req, status, o);
}

void
http_reply_unavailable(struct http_request *req, unsigned retry_after_s,
    const char *message)
{
	char v[24];

	snprintf(v, sizeof(v), "%u", retry_after_s ? retry_after_s : 1);
	http_response_header(req, "Retry-After", v);
	http_reply_error(req, 503, message ? message : "service unavailable", NULL);
}

void
http_defer(struct http_request *req)
{
	pthread_mutex_lock(&req->lock);
	req->deferred = 1;
	pthread_mutex_unlock(&req->lock);
}

int
http_require_bearer(struct http_request *req, const char *token)
{
	if (token == NULL || *token == '\0' || bearer_ok(req, token))
		return 0;
	http_response_header(req, "WWW-Authenticate", "Bearer");
	http_reply_error(req, 401, http_request_header(req, "Authorization") ?
	    "invalid token" : "authorization required", NULL);
	return -1;
}

void
http_handle_healthz(struct http_request *req, void *arg)
{
	(void)arg;
	http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

void
http_handle_metrics(struct http_request *req, void *arg)
{
	char *text = metrics_render();

	(void)arg;
	http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text,
	    strlen(text));
	free(text);
}

int
http_reply_readyz(struct http_request *req, const char *name,
    struct db_probe *probe)
{
	char err[256] = "", *msg;

	if (db_probe_ready(probe, err, sizeof(err))) {
		http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
		return 0;
	}
	log_debug("readyz: %s: %s", name, err);
	http_response_header(req, "Retry-After", "1");
	msg = xasprintf("%s is unreachable", name ? name : "database");
	http_reply_json(req, 503, json_pack("{s:s,s:s,s:n}", "status",
	    "unavailable", "error", msg, "field"));
	free(msg);
	return -1;
}
