/*
 * copy_stream: see copy_stream.h. PostgreSQL sends the binary header,
 * each tuple and the trailer as separate CopyData messages, but the parser
 * does not rely on it: the header is skipped wherever the first message
 * puts it, and every length is checked against what was received.
 */
#include "reconciler/copy_stream.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ids.h"
#include "common/strbuf.h"
#include "common/util.h"

#define MAX_FIELDS 8

static const char signature[11] = "PGCOPY\n\377\r\n";

struct copy_stream {
	PGconn *conn;
	char *what;
	char *select_sql, *key;
	size_t chunk;		/* rows per COPY; 0: one COPY for all */
	size_t chunk_rows;	/* rows of the current COPY so far */
	unsigned char last[16];	/* key of the last row returned */
	int nfields;
	int header_done;
	int done;
	char *msg;		/* the current CopyData message (libpq's) */
	long long rows;
	char err[512];
};

static uint32_t
get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
	    (uint32_t)u[2] << 8 | u[3];
}

static int
get16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (int16_t)((uint16_t)(u[0] << 8 | u[1]));
}

/* Starts the COPY of the next chunk: 0, or -1 with err set. */
static int
start(struct copy_stream *cs, char *err, size_t errlen)
{
	char uuid[IDS_UUID_LEN + 1], limit[32] = "";
	struct strbuf after = STRBUF_INIT;
	const char *k;
	size_t n;
	PGresult *res;
	char *sql;

	/* Each key column gets the bound: PostgreSQL carries an equality
	 * across a join, not an inequality, so a merge join would otherwise
	 * scan the other side from its start for every chunk. */
	if (cs->rows > 0) {
		ids_uuid_text(cs->last, uuid);
		for (k = cs->key; *k; k += n + (k[n] == ',')) {
			n = strcspn(k, ",");
			strbuf_printf(&after, " and %.*s > '%s'", (int)n, k, uuid);
		}
	}
	if (cs->chunk > 0)
		snprintf(limit, sizeof(limit), " limit %zu", cs->chunk);
	sql = xasprintf("copy (%s%s order by %.*s%s) to stdout (format binary)",
	    cs->select_sql, after.len ? after.p : "",
	    (int)strcspn(cs->key, ","), cs->key, limit);
	strbuf_free(&after);
	res = PQexec(cs->conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		snprintf(err, errlen, "%s: COPY failed: %s", cs->what,
		    PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) :
		    PQerrorMessage(cs->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	cs->header_done = 0;
	cs->chunk_rows = 0;
	return 0;
}

static void
stream_free(struct copy_stream *cs)
{
	if (cs->msg != NULL)
		PQfreemem(cs->msg);
	free(cs->what);
	free(cs->select_sql);
	free(cs->key);
	free(cs);
}

struct copy_stream *
copy_stream_open(PGconn *conn, const char *what, const char *select_sql,
    const char *key, size_t chunk, int nfields, char *err, size_t errlen)
{
	struct copy_stream *cs = xcalloc(1, sizeof(*cs));

	cs->conn = conn;
	cs->what = xstrdup(what);
	cs->select_sql = xstrdup(select_sql);
	cs->key = xstrdup(key);
	cs->chunk = chunk;
	cs->nfields = nfields < MAX_FIELDS ? nfields : MAX_FIELDS;
	if (start(cs, err, errlen) == -1) {
		stream_free(cs);
		return NULL;
	}
	return cs;
}

static int
fail(struct copy_stream *cs, const char *why)
{
	const char *pq = PQerrorMessage(cs->conn);
	size_t n;

	snprintf(cs->err, sizeof(cs->err), "%s: %s%s%s", cs->what, why,
	    pq[0] ? ": " : "", pq);
	n = strlen(cs->err);
	while (n > 0 && cs->err[n - 1] == '\n')
		cs->err[--n] = '\0';
	cs->done = -1;
	return -1;
}

/* After PQgetCopyData said -1: the COPY's final result decides. */
static int
finish(struct copy_stream *cs)
{
	PGresult *res;
	int ok = 1;

	while ((res = PQgetResult(cs->conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(cs->err, sizeof(cs->err), "%s: %s", cs->what,
			    PQresultErrorMessage(res));
			ok = 0;
		}
		PQclear(res);
	}
	if (!ok) {
		size_t n = strlen(cs->err);
		while (n > 0 && cs->err[n - 1] == '\n')
			cs->err[--n] = '\0';
		cs->done = -1;
		return -1;
	}
	cs->done = 1;
	return 0;
}

int
copy_stream_next(struct copy_stream *cs, const char **fields, int *lens)
{
	const char *p, *end;
	int len, n, i;
	int32_t flen;

	if (cs->done)
		return cs->done > 0 ? 0 : -1;
	for (;;) {
		if (cs->msg != NULL) {
			PQfreemem(cs->msg);
			cs->msg = NULL;
		}
		len = PQgetCopyData(cs->conn, &cs->msg, 0);
		if (len == -1) {
			if (!cs->header_done)
				return fail(cs, "stream ended before its header");
			/* The trailer was seen or not: the server's verdict
			 * on the COPY is what counts. */
			if (finish(cs) == -1)
				return -1;
			if (cs->chunk == 0 || cs->chunk_rows < cs->chunk)
				return 0;
			/* A full chunk: there may be more. */
			cs->done = 0;
			if (start(cs, cs->err, sizeof(cs->err)) == -1) {
				cs->done = -1;
				return -1;
			}
			continue;
		}
		if (len < 0)
			return fail(cs, "connection failed while streaming");
		p = cs->msg;
		end = p + len;
		if (!cs->header_done) {
			if (len < 19 || memcmp(p, signature, 11) != 0)
				return fail(cs, "not a binary COPY stream");
			p += 15;
			flen = (int32_t)get32(p);
			p += 4;
			if (flen < 0 || flen > end - p)
				return fail(cs, "bad COPY header extension");
			p += flen;
			cs->header_done = 1;
			if (p == end)
				continue;
		}
		if (end - p < 2)
			return fail(cs, "truncated tuple");
		n = get16(p);
		p += 2;
		if (n == -1)
			continue;	/* trailer; the end comes with -1 next */
		if (n != cs->nfields)
			return fail(cs, "unexpected number of columns");
		for (i = 0; i < n; i++) {
			if (end - p < 4)
				return fail(cs, "truncated field length");
			flen = (int32_t)get32(p);
			p += 4;
			if (flen == -1) {
				fields[i] = NULL;
				lens[i] = -1;
				continue;
			}
			if (flen < 0 || flen > end - p)
				return fail(cs, "field longer than its tuple");
			fields[i] = p;
			lens[i] = flen;
			p += flen;
		}
		if (p != end)
			return fail(cs, "trailing bytes after a tuple");
		if (lens[0] != 16)
			return fail(cs, "key is not a uuid");
		memcpy(cs->last, fields[0], 16);
		cs->rows++;
		cs->chunk_rows++;
		return 1;
	}
}

const char *
copy_stream_error(const struct copy_stream *cs)
{
	return cs->err;
}

long long
copy_stream_rows(const struct copy_stream *cs)
{
	return cs->rows;
}

void
copy_stream_free(struct copy_stream *cs)
{
	if (cs != NULL)
		stream_free(cs);
}
