/*
 * db: one PostgreSQL connection that notices when it is lost and comes
 * back by itself. A struct db is used by one thread at a time (libpq's rule).
 *
 * db_get() hands out a live PGconn or NULL while the store is down; after
 * a failure it reconnects with exponential backoff (100 ms doubling to 1 s,
 * the Retry-After the services send), so callers can call it on every
 * request without hammering a dead server, and a server that came back is
 * used again within a second. Callers answer 503 with Retry-After while it
 * returns NULL.
 */
#ifndef COMMON_DB_H
#define COMMON_DB_H

#include <libpq-fe.h>

struct db;

/* name is for messages ("postgresMicro"); conninfo is a conninfo string or URI. */
struct db *db_new(const char *conninfo, const char *name);
void db_free(struct db *db);

/* A connected PGconn, or NULL (err says why) while down or backing off. */
PGconn *db_get(struct db *db, char *err, size_t errlen);

/*
 * How many connections db_get has opened: a new value means the PGconn is
 * a fresh session (prepared statements and settings must be made again).
 */
unsigned long db_connects(const struct db *db);

/*
 * Call after a command failed: when the connection is broken it is closed
 * (the next db_get reconnects) and 1 is returned; 0 when it is still good.
 */
int db_check_lost(struct db *db);

/*
 * Any thread: the server answers again (a /readyz probe connected), so the
 * next db_get tries at once instead of waiting out the backoff.
 */
void db_retry_now(struct db *db);

/* Last known state, readable from any thread: 1 up, 0 down. */
int db_is_up(const struct db *db);

/* Runs "SELECT 1" on a connection of its own. 0 ok, -1 down (err redacted). */
int db_ping(const char *conninfo, char *err, size_t errlen);

/*
 * Readiness for /readyz: a thread of its own runs "SELECT 1" on its own
 * connection at most once a second and keeps the outcome, so a request
 * reads a state and never waits for (or opens) a connection; a flood of
 * /readyz costs the database nothing.
 */
struct db_probe;
struct db_probe *db_probe_start(const char *conninfo, const char *name);
/* 1 ready, 0 not (err says why, redacted; before the first probe: not yet). */
int db_probe_ready(struct db_probe *p, char *err, size_t errlen);
void db_probe_stop(struct db_probe *p);

/*
 * A libpq message about conninfo made safe for a log: the password (as
 * parsed, and as written in a URI) is replaced by "***" wherever it
 * appears, and when conninfo does not parse, all from the first double
 * quote of msg to the last is cut (libpq quotes the bad part, which may be
 * a piece of a password with spaces or quotes in it). In place; msg stays
 * NUL-terminated within its size. A conninfo without '=' and not a URI is
 * a database name: nothing to hide.
 */
void db_redact(const char *conninfo, char *msg, size_t size);

/*
 * Session settings for statements that reach a few rows by key: with
 * sequential scans and hash and merge joins off, a plan made on statistics
 * from before a bulk load, a TRUNCATE or a restore (a table "empty" that
 * is not) cannot become a scan of the whole table per row or per batch;
 * PostgreSQL still takes them where nothing else can run a query. JIT,
 * which the same estimates switch on, only adds compile time to statements
 * this short. Used by mailer-real's committer and delivery workers and by
 * the reconciler's writers (docs/ARCHITECTURE.md).
 */
#define DB_KEY_PLANS "SET enable_seqscan = off; SET enable_hashjoin = off; " \
	"SET enable_mergejoin = off; SET jit = off"

/* Escapes nothing: a helper that gives the message of a failed result. */
const char *db_error(const PGconn *conn, const PGresult *res);

#endif
