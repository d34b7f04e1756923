/*
 * db: see db.h. The connection is opened lazily and reopened after a loss,
 * never more often than the backoff allows, so a dead server costs callers
 * one clock read per request instead of a connection attempt.
 */
#include "db.h"

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
