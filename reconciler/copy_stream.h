/*
 * copy_stream: reads the result of `COPY (query) TO STDOUT (FORMAT
 * binary)` one row at a time, in key order, so a table of any size streams
 * through a fixed amount of memory. Binary format needs no unescaping and
 * gives UUIDs as 16 bytes.
 */
#ifndef RECONCILER_COPY_STREAM_H
#define RECONCILER_COPY_STREAM_H

#include <stddef.h>

#include <libpq-fe.h>

struct copy_stream;

/*
 * Streams `select_sql ORDER BY key` with COPY, where select_sql is a
 * SELECT whose WHERE clause the stream extends and whose first column is
 * the key, a uuid unique in the result. key names the key column, or
 * several comma-separated columns equal to it (the two sides of a join):
 * each gets the chunk's lower bound, the first orders the result. With
 * chunk > 0 the result is read in chunks of that many rows, each its own
 * COPY starting after the last key of the one before (keyset pagination),
 * so that no snapshot lives longer than one chunk: a run's reads do not
 * hold back the pruning of the row versions its marks leave behind. conn
 * is the stream's until copy_stream_free. nfields is the number of columns
 * every row must have. NULL on failure with err naming the stream (what)
 * and the server's message.
 */
struct copy_stream *copy_stream_open(PGconn *conn, const char *what,
    const char *select_sql, const char *key, size_t chunk, int nfields,
    char *err, size_t errlen);

/*
 * 1 with fields[i]/lens[i] set (len -1 for NULL; valid until the next
 * call), 0 at the clean end (the server said the COPY completed), -1 on
 * an error or a truncated stream (copy_stream_error says what).
 */
int copy_stream_next(struct copy_stream *cs, const char **fields, int *lens);

const char *copy_stream_error(const struct copy_stream *cs);
/* Number of rows returned so far. */
long long copy_stream_rows(const struct copy_stream *cs);

/* Frees the stream; a COPY still running is abandoned with the conn. */
void copy_stream_free(struct copy_stream *cs);

#endif
