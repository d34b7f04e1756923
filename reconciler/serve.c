/*
 * serve: see serve.h. The server, its routes, who may ask (token,
 * session cookie, CSRF token) and the per-thread database connections.
 */
#include "reconciler/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"
#include "reconciler/pg.h"

#define SESSIONS 256
#define SESSION_TTL_S (12 * 3600.0)
#define COOKIE "reconciler_session"

struct console {
	const struct cli *cli;
	const char *token;		/* NULL: loopback, nobody asked */
	struct db_probe *probe;		/* /readyz's state (common/db.h) */
	char csrf[65];
	pthread_mutex_t lock;
	struct {
		char id[65];
		double expires;
	} sessions[SESSIONS];
};

/*
 * Each server thread keeps its own two sessions; a thread-specific key
 * closes them when the thread ends (the server's threads end with it).
 */
struct thread_conns {
	PGconn *mono, *micro;
};

static pthread_key_t conns_key;
static pthread_once_t conns_once = PTHREAD_ONCE_INIT;

static void
thread_conns_free(void *p)
{
	struct thread_conns *tc = p;

	PQfinish(tc->mono);
	PQfinish(tc->micro);
	free(tc);
}

static void
conns_key_make(void)
{
	if (pthread_key_create(&conns_key, thread_conns_free) != 0)
		fatal("pthread_key_create");
}

static struct thread_conns *
thread_conns(void)
{
	struct thread_conns *tc;

	pthread_once(&conns_once, conns_key_make);
	if ((tc = pthread_getspecific(conns_key)) == NULL) {
		tc = xcalloc(1, sizeof(*tc));
		if (pthread_setspecific(conns_key, tc) != 0)
			fatal("pthread_setspecific");
	}
	return tc;
}

static void
random_hex(char *out, size_t nbytes)
{
	unsigned char buf[32];
	size_t i;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (nbytes > sizeof(buf) || fd == -1 ||
	    read(fd, buf, nbytes) != (ssize_t)nbytes)
		fatal("serve: no random bytes from /dev/urandom");
	close(fd);
	for (i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", buf[i]);
}

/* Equal, in time that depends only on the length of b. */
static int
same(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < lb; i++)
		d |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
	return d == 0;
}

static PGconn *
thread_conn(struct http_request *req, PGconn **slot, const char *url,
    const char *name)
{
	char err[512];

	if (*slot != NULL && PQstatus(*slot) == CONNECTION_OK)
		return *slot;
	PQfinish(*slot);
	*slot = pg_connect(url, name, err, sizeof(err));
	if (*slot == NULL) {
		log_warnx("%s", err);
		char *msg = xasprintf("%s is unreachable", name);
		http_reply_unavailable(req, 5, msg);
		free(msg);
	}
	return *slot;
}

PGconn *
serve_mono(struct http_request *req, struct console *con)
{
	return thread_conn(req, &thread_conns()->mono, con->cli->mono_url, "postgresMono");
}

PGconn *
serve_micro(struct http_request *req, struct console *con)
{
	return thread_conn(req, &thread_conns()->micro, con->cli->micro_url, "postgresMicro");
}

const char *
serve_csrf(const struct console *con)
{
	return con->csrf;
}

int
serve_csrf_ok(const struct console *con, const char *given)
{
	return given != NULL && same(given, con->csrf);
}

int
serve_has_token(const struct console *con)
{
	return con->token != NULL;
}

/* The session cookie's value in the Cookie header, into out. */
static int
cookie_session(struct http_request *req, char *out, size_t outlen)
{
	const char *h = http_request_header(req, "Cookie"), *p;
	size_t n;

	for (p = h; p != NULL && (p = strstr(p, COOKIE "=")) != NULL; p++) {
		if (p != h && p[-1] != ' ' && p[-1] != ';')
			continue;
		p += sizeof(COOKIE);
		n = strcspn(p, "; ");
		if (n == 0 || n >= outlen)
			return -1;
		memcpy(out, p, n);
		out[n] = '\0';
		return 0;
	}
	return -1;
}

static int
session_valid(struct console *con, struct http_request *req)
{
	char id[72];
	double now = now_s();
	int i, ok = 0;

	if (cookie_session(req, id, sizeof(id)) == -1)
		return 0;
	pthread_mutex_lock(&con->lock);
	for (i = 0; i < SESSIONS; i++)
		if (con->sessions[i].expires > now &&
		    same(id, con->sessions[i].id))
			ok = 1;
	pthread_mutex_unlock(&con->lock);
	return ok;
}

void
serve_login(struct http_request *req, struct console *con, const char *token)
{
	char cookie[160];
	double now = now_s();
	int i, slot = 0;

	if (con->token == NULL || token == NULL || !same(token, con->token)) {
		log_warnx("serve: a login with a wrong token");
		http_reply_error(req, 401, "wrong token", "token");
		return;
	}
	pthread_mutex_lock(&con->lock);
	/* A free slot, else the one closest to expiring. */
	for (i = 0; i < SESSIONS; i++)
		if (con->sessions[i].expires < con->sessions[slot].expires)
			slot = i;
	random_hex(con->sessions[slot].id, 32);
	con->sessions[slot].expires = now + SESSION_TTL_S;
	snprintf(cookie, sizeof(cookie), COOKIE "=%s; Path=/; HttpOnly; "
	    "SameSite=Strict; Max-Age=%d", con->sessions[slot].id,
	    (int)SESSION_TTL_S);
	pthread_mutex_unlock(&con->lock);
	http_response_header(req, "Set-Cookie", cookie);
	http_response_header(req, "Location", "/");
	http_reply(req, 303, "text/plain; charset=utf-8", "logged in\n", 10);
}

int
serve_auth_api(struct http_request *req, struct console *con)
{
	if (con->token == NULL || session_valid(con, req))
		return 0;
	return http_require_bearer(req, con->token);
}

int
serve_auth_page(struct http_request *req, struct console *con)
{
	if (con->token == NULL || session_valid(con, req))
		return 0;
	http_response_header(req, "Location", "/login");
	http_reply(req, 303, "text/plain; charset=utf-8", "log in first\n", 13);
	return -1;
}

int64_t
serve_parse_id(const char *s)
{
	int64_t v = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 18)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v > 0 ? v : -1;
}

static int
hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

char *
serve_form_value(const char *body, size_t len, const char *key)
{
	size_t klen = strlen(key), i = 0, j;
	struct strbuf b = STRBUF_INIT;

	while (i < len) {
		j = i;
		while (j < len && body[j] != '&')
			j++;
		if (j - i > klen && memcmp(body + i, key, klen) == 0 &&
		    body[i + klen] == '=') {
			for (i += klen + 1; i < j; i++) {
				char c = body[i];
				if (c == '+') {
					c = ' ';
				} else if (c == '%' && i + 2 < j + 1 &&
				    hexval(body[i + 1]) >= 0 &&
				    hexval(body[i + 2]) >= 0) {
					c = (char)(hexval(body[i + 1]) * 16 +
					    hexval(body[i + 2]));
					i += 2;
				}
				strbuf_add(&b, &c, 1);
			}
			strbuf_add(&b, "", 0);
			return strbuf_take(&b);
		}
		i = j + 1;
	}
	return NULL;
}

void
serve_readyz(struct http_request *req, void *arg)
{
	struct console *con = arg;

	http_reply_readyz(req, "postgresMono", con->probe);
}

static const struct http_route routes[] = {
	{ "GET", "/healthz", 0, http_handle_healthz, "healthz" },
	{ "GET", "/readyz", 0, serve_readyz, "readyz" },
	{ "GET", "/metrics", 0, serve_metrics, "metrics" },
	{ "GET", "/", 0, serve_page_overview, "overview" },
	{ "GET", "/login", 0, serve_page_login, "login" },
	{ "POST", "/login", 0, serve_page_login_post, "login_post" },
	{ "GET", "/runs/", HTTP_ROUTE_PREFIX, serve_page_run, "run" },
	{ "GET", "/clusters/", HTTP_ROUTE_PREFIX, serve_page_cluster, "cluster" },
	{ "POST", "/clusters/", HTTP_ROUTE_PREFIX, serve_page_cluster_ack,
	  "cluster_ack_form" },
	{ "GET", "/api/clusters", 0, serve_api_clusters, "api_clusters" },
	{ "GET", "/api/runs", 0, serve_api_runs, "api_runs" },
	{ "GET", "/api/mismatches", 0, serve_api_mismatches, "api_mismatches" },
	{ "POST", "/api/clusters/", HTTP_ROUTE_PREFIX | HTTP_ROUTE_JSON,
	  serve_api_cluster_ack, "api_cluster_ack" },
};

int
run_serve(const struct cli *c)
{
	struct console *con = xcalloc(1, sizeof(*con));
	struct http_server_config cfg;
	struct http_server *srv;
	char err[512];

	con->cli = c;
	con->token = c->web_token != NULL && *c->web_token ? c->web_token : NULL;
	pthread_mutex_init(&con->lock, NULL);
	random_hex(con->csrf, 32);
	memset(&cfg, 0, sizeof(cfg));
	cfg.service = "reconciler";
	cfg.version = "1.0.0";
	/* its own token and sessions (above), not common/http's check */
	cfg.bind = con->token ? "0.0.0.0" : "127.0.0.1";
	cfg.port = (unsigned short)c->web_port;
	cfg.threads = 4;
	cfg.max_body = 16 * 1024;
	cfg.routes = routes;
	cfg.nroutes = nitems(routes);
	cfg.arg = con;
	con->probe = db_probe_start(c->mono_url, "postgresMono");
	if ((srv = http_server_start(&cfg, err, sizeof(err))) == NULL) {
		log_error("serve: %s", err);
		db_probe_stop(con->probe);
		free(con);
		return EXIT_USAGE;
	}
	log_info("console on http://%s:%ld/ (%s)", con->token ? "0.0.0.0" :
	    "127.0.0.1", c->web_port, con->token ? "token required" :
	    "loopback only, no token");
	http_server_wait_signal(srv);
	http_server_free(srv);
	db_probe_stop(con->probe);
	pthread_mutex_destroy(&con->lock);
	free(con);
	return EXIT_CLEAN;
}
