/*
 * db: see db.h. The connection is opened lazily and reopened after a loss,
 * never more often than the backoff allows, so a dead server costs callers
 * one clock read per request instead of a connection attempt.
 */
#include "db.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define CONNECT_TIMEOUT "3"

struct db {
	char *conninfo;
	char *name;
	PGconn *conn;
	_Atomic int up;
	_Atomic uint64_t next_try_ns;	/* written by db_retry_now too */
	long backoff_ms;
	int warned;
	unsigned long connects;
};

static PGconn *
connect_timed(const char *conninfo, const char *timeout)
{
	/* dbname is expanded from the conninfo string or URI; the timeout
	 * follows it so a server that does not answer cannot hang a caller. */
	const char *const keys[] = { "dbname", "connect_timeout",
	    "fallback_application_name", NULL };
	const char *const vals[] = { conninfo, timeout, "parallel-run", NULL };

	return PQconnectdbParams(keys, vals, 1);
}

struct db *
db_new(const char *conninfo, const char *name)
{
	struct db *db = xcalloc(1, sizeof(*db));

	db->conninfo = xstrdup(conninfo ? conninfo : "");
	db->name = xstrdup(name ? name : "database");
	db->backoff_ms = BACKOFF_MIN_MS;
	atomic_init(&db->up, 0);
	atomic_init(&db->next_try_ns, 0);
	return db;
}

void
db_free(struct db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		PQfinish(db->conn);
	free(db->conninfo);
	free(db->name);
	free(db);
}

static void
first_line(char *s)
{
	char *nl = strchr(s, '\n');

	if (nl != NULL)
		*nl = '\0';
}

/*
 * What the server says outside a query (a FATAL before it closes the
 * connection, a NOTICE) goes to our log as one line, not raw to stderr
 * where it would break LOG_FORMAT=json.
 */
static void
notice(void *arg, const char *message)
{
	const struct db *db = arg;
	char line[512];

	snprintf(line, sizeof(line), "%s", message);
	first_line(line);
	if (strncmp(line, "FATAL", 5) == 0 || strncmp(line, "PANIC", 5) == 0 ||
	    strncmp(line, "ERROR", 5) == 0 || strncmp(line, "WARNING", 7) == 0)
		log_warnx("%s: server says: %s", db->name, line);
	else
		log_debug("%s: server says: %s", db->name, line);
}

PGconn *
db_get(struct db *db, char *err, size_t errlen)
{
	uint64_t now = now_ns(), next;

	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		return db->conn;
	if (db->conn != NULL) {
		PQfinish(db->conn);
		db->conn = NULL;
		atomic_store(&db->up, 0);
	}
	if (now < (next = atomic_load(&db->next_try_ns))) {
		snprintf(err, errlen, "%s is down (next try in %llu ms)", db->name,
		    (unsigned long long)((next - now) / 1000000));
		return NULL;
	}
	db->conn = connect_timed(db->conninfo, CONNECT_TIMEOUT);
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		snprintf(err, errlen, "%s: %s", db->name,
		    db->conn ? PQerrorMessage(db->conn) : "out of memory");
		db_redact(db->conninfo, err, errlen);
		first_line(err);
		if (!db->warned)
			log_warnx("%s", err);
		db->warned = 1;
		PQfinish(db->conn);
		db->conn = NULL;
		atomic_store(&db->up, 0);
		atomic_store(&db->next_try_ns,
		    now_ns() + (uint64_t)db->backoff_ms * 1000000);
		db->backoff_ms *= 2;
		if (db->backoff_ms > BACKOFF_MAX_MS)
			db->backoff_ms = BACKOFF_MAX_MS;
		return NULL;
	}
	PQsetNoticeProcessor(db->conn, notice, db);
	db->connects++;
	if (db->warned || !atomic_load(&db->up))
		log_info("%s: connected", db->name);
	db->warned = 0;
	db->backoff_ms = BACKOFF_MIN_MS;
	atomic_store(&db->next_try_ns, 0);
	atomic_store(&db->up, 1);
	return db->conn;
}

unsigned long
db_connects(const struct db *db)
{
	return db->connects;
}

int
db_check_lost(struct db *db)
{
	if (db->conn == NULL)
		return 1;
	if (PQstatus(db->conn) == CONNECTION_OK)
		return 0;
	log_warnx("%s: connection lost", db->name);
	PQfinish(db->conn);
	db->conn = NULL;
	atomic_store(&db->up, 0);
	/* The first reconnect is immediate: a restarted server is often back. */
	atomic_store(&db->next_try_ns, 0);
	db->backoff_ms = BACKOFF_MIN_MS;
	return 1;
}

void
db_retry_now(struct db *db)
{
	if (!atomic_load(&db->up))
		atomic_store(&db->next_try_ns, 0);
}

int
db_is_up(const struct db *db)
{
	return atomic_load(&db->up);
}

int
db_ping(const char *conninfo, char *err, size_t errlen)
{
	PGconn *conn = connect_timed(conninfo, "2");
	PGresult *res = NULL;
	int rc = -1;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "%s", conn ? PQerrorMessage(conn) : "out of memory");
		db_redact(conninfo, err, errlen);
		first_line(err);
		goto out;
	}
	res = PQexec(conn, "SELECT 1");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", db_error(conn, res));
		first_line(err);
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	PQfinish(conn);
	return rc;
}

const char *
db_error(const PGconn *conn, const PGresult *res)
{
	const char *m = NULL;

	if (res != NULL)
		m = PQresultErrorMessage(res);
	if ((m == NULL || *m == '\0') && conn != NULL)
		m = PQerrorMessage(conn);
	return (m != NULL && *m != '\0') ? m : "unknown error";
}

/* Replaces every occurrence of what (wlen > 0) in msg by "***". */
static void
cut_all(char *msg, size_t size, const char *what, size_t wlen)
{
	const char *p = msg, *hit;
	char *out, *w;

	if (wlen == 0 || strstr(msg, what) == NULL)
		return;
	out = w = xmalloc(strlen(msg) * 3 + 4);
	while ((hit = strstr(p, what)) != NULL) {
		memcpy(w, p, (size_t)(hit - p));
		w += hit - p;
		memcpy(w, "***", 3);
		w += 3;
		p = hit + wlen;
	}
	strcpy(w, p);
	snprintf(msg, size, "%s", out);
	free(out);
}

/* The password as written between ':' and '@' in a URI's authority. */
static int
uri_password(const char *conninfo, const char **pw, size_t *len)
{
	const char *p, *at, *colon, *slash;

	if (strncmp(conninfo, "postgresql://", 13) == 0)
		p = conninfo + 13;
	else if (strncmp(conninfo, "postgres://", 11) == 0)
		p = conninfo + 11;
	else
		return -1;
	slash = strchr(p, '/');
	at = strrchr(p, '@');
	if (at == NULL || (slash != NULL && at > slash))
		return -1;
	colon = memchr(p, ':', (size_t)(at - p));
	if (colon == NULL)
		return -1;
	*pw = colon + 1;
	*len = (size_t)(at - colon - 1);
	return 0;
}

void
db_redact(const char *conninfo, char *msg, size_t size)
{
	PQconninfoOption *opts, *o;
	char *perr = NULL, *first, *last, *tail;
	const char *pw;
	size_t pwlen;

	if (conninfo == NULL || msg == NULL || size == 0)
		return;
	/* like libpq: anything else is a database name, not a conninfo */
	if (strchr(conninfo, '=') == NULL &&
	    strncmp(conninfo, "postgresql://", 13) != 0 &&
	    strncmp(conninfo, "postgres://", 11) != 0)
		return;
	if (uri_password(conninfo, &pw, &pwlen) == 0 && pwlen > 0) {
		char *raw = xstrndup(pw, pwlen);
		cut_all(msg, size, raw, pwlen);
		free(raw);
	}
	opts = PQconninfoParse(conninfo, &perr);
	if (opts != NULL) {
		for (o = opts; o->keyword != NULL; o++)
			if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
				cut_all(msg, size, o->val, strlen(o->val));
		PQconninfoFree(opts);
		return;
	}
	PQfreemem(perr);
	/*
	 * Unparsable: libpq's message quotes the fragment it choked on ("in
	 * URI: \"...\"", "missing \"=\" after \"...\""), which may be a piece
	 * of a password holding spaces or quotes, so no quote can be trusted
	 * to end it: everything from the first quote to the last one goes.
	 */
	first = strchr(msg, '"');
	last = strrchr(msg, '"');
	if (first == NULL)
		return;
	tail = first == last ? xstrdup("") : xstrdup(last + 1);
	snprintf(first, size - (size_t)(first - msg), "\"***\"%s", tail);
	free(tail);
}

struct db_probe {
	char *conninfo;
	char *name;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	PGconn *conn;		/* the probe thread's */
	int stop;
	int probed;		/* under lock */
	int ready;		/* under lock */
	char err[256];		/* under lock */
};

/* One probe on *conn (opened, or reopened after a failure); stores the outcome. */
static void
probe_once(struct db_probe *p, PGconn **conn)
{
	PGresult *res;
	char err[256] = "";
	int ok = 0;

	if (*conn == NULL || PQstatus(*conn) != CONNECTION_OK) {
		PQfinish(*conn);
		*conn = connect_timed(p->conninfo, "2");
	}
	if (*conn == NULL || PQstatus(*conn) != CONNECTION_OK) {
		snprintf(err, sizeof(err), "%s", *conn ? PQerrorMessage(*conn) :
		    "out of memory");
	} else {
		res = PQexec(*conn, "SELECT 1");
		ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		if (!ok)
			snprintf(err, sizeof(err), "%s", db_error(*conn, res));
		PQclear(res);
	}
	if (!ok) {
		db_redact(p->conninfo, err, sizeof(err));
		first_line(err);
		PQfinish(*conn);
		*conn = NULL;
	}
	pthread_mutex_lock(&p->lock);
	if (ok != p->ready || !p->probed) {
		if (ok)
			log_info("%s: ready", p->name);
		else
			log_warnx("%s: not ready: %s", p->name, err);
	}
	p->probed = 1;
	p->ready = ok;
	snprintf(p->err, sizeof(p->err), "%s", err);
	pthread_mutex_unlock(&p->lock);
}

static void *
probe_main(void *arg)
{
	struct db_probe *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		/* at most once a second, however long the probe took */
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec++;
		while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock,
		    &until) == 0)
			;
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->lock);
		probe_once(p, &p->conn);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct db_probe *
db_probe_start(const char *conninfo, const char *name)
{
	struct db_probe *p = xcalloc(1, sizeof(*p));
	pthread_condattr_t ca;

	p->conninfo = xstrdup(conninfo ? conninfo : "");
	p->name = xstrdup(name ? name : "database");
	snprintf(p->err, sizeof(p->err), "not probed yet");
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	/* The first answer is there before the server listens. */
	probe_once(p, &p->conn);
	thread_start(&p->thread, probe_main, p);
	return p;
}

int
db_probe_ready(struct db_probe *p, char *err, size_t errlen)
{
	int ready;

	pthread_mutex_lock(&p->lock);
	ready = p->ready;
	if (!ready && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", p->err);
	pthread_mutex_unlock(&p->lock);
	return ready;
}

void
db_probe_stop(struct db_probe *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	PQfinish(p->conn);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->conninfo);
	free(p->name);
	free(p);
}
