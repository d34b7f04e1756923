/*
 * pg: see pg.h.
 */
#include "reconciler/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/util.h"

/* libpq's messages end in a newline and may span lines ("...\n\tIs the
 * server running...?"): one line, so a log line stays one line. */
static void
chomp(char *s)
{
	size_t n = strlen(s);
	char *r, *w;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	/* In place: "\n\t" becomes "; ", a lone "\n" a space. */
	for (r = w = s; *r != '\0'; r++) {
		if (*r != '\n') {
			*w++ = *r;
		} else if (r[1] == '\t' || r[1] == ' ') {
			*w++ = ';';
			*w++ = ' ';
			for (r++; r[1] == '\t' || r[1] == ' '; r++)
				;
		} else {
			*w++ = ' ';
		}
	}
	*w = '\0';
}

PGconn *
pg_connect(const char *conninfo, const char *name, char *err, size_t errlen)
{
	/* Later entries win, so the user's conninfo (last) overrides ours. */
	const char *keys[] = { "application_name", "connect_timeout",
		"keepalives_idle", "keepalives_interval", "keepalives_count",
		"dbname", NULL };
	const char *vals[] = { "reconciler", "10", "30", "10", "3", conninfo,
		NULL };
	PGconn *conn;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "%s unreachable: %s", name,
		    conn ? PQerrorMessage(conn) : "out of memory");
		db_redact(conninfo, err, errlen);
		chomp(err);
		PQfinish(conn);
		return NULL;
	}
	/*
	 * A run killed mid-statement leaves its backends running that
	 * statement to the end before they notice the closed socket, holding
	 * the run's advisory lock (the next run exits 4) and its row locks.
	 * With this the server checks the client every second and gives up
	 * sooner. PostgreSQL before 14 has no such setting: then nothing
	 * changes, so a failure here is ignored.
	 */
	PQclear(PQexec(conn, "SET client_connection_check_interval = 1000"));
	return conn;
}

int
pg_ok(PGconn *conn, PGresult *res, ExecStatusType want, const char *what,
    char *err, size_t errlen)
{
	if (res != NULL && PQresultStatus(res) == want)
		return 0;
	snprintf(err, errlen, "%s: %s", what,
	    res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) :
	    PQerrorMessage(conn));
	chomp(err);
	PQclear(res);
	return -1;
}

int
pg_command(PGconn *conn, const char *sql, const char *what, char *err,
    size_t errlen)
{
	PGresult *res = PQexec(conn, sql);

	if (pg_ok(conn, res, PGRES_COMMAND_OK, what, err, errlen) == -1)
		return -1;
	PQclear(res);
	return 0;
}

int
pg_try_lock(PGconn *conn, int32_t k1, int32_t k2, char *err, size_t errlen)
{
	char a[16], b[16];
	const char *params[2] = { a, b };
	PGresult *res;
	int got;

	snprintf(a, sizeof(a), "%d", (int)k1);
	snprintf(b, sizeof(b), "%d", (int)k2);
	res = PQexecParams(conn, "select pg_try_advisory_lock($1::int4, $2::int4)",
	    2, NULL, params, NULL, NULL, 0);
	if (pg_ok(conn, res, PGRES_TUPLES_OK, "advisory lock", err, errlen) == -1)
		return -1;
	got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return got;
}

uint64_t
pg_get_u64(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | u[i];
	return v;
}
