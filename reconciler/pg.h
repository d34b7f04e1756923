/*
 * pg: the few libpq helpers the reconciler needs: connecting with a clear
 * message and sane timeouts, advisory locks, binary array parameters (so a
 * batch of 25,000 UUIDs is one parameter of 500 KB, parsed without text
 * escaping), and checking a result.
 */
#ifndef RECONCILER_PG_H
#define RECONCILER_PG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/pg_array.h"

/* A live connection, or NULL with err naming the store (name). */
PGconn *pg_connect(const char *conninfo, const char *name, char *err,
    size_t errlen);

/* 1 when the session lock (k1, k2) was taken, 0 when another session holds
 * it, -1 on error. */
int pg_try_lock(PGconn *conn, int32_t k1, int32_t k2, char *err,
    size_t errlen);

/* Checks a result against the expected status; on mismatch fills err with
 * "what: message", clears res and returns -1. */
int pg_ok(PGconn *conn, PGresult *res, ExecStatusType want, const char *what,
    char *err, size_t errlen);

/* Runs a command without parameters; 0 or -1 (err). */
int pg_command(PGconn *conn, const char *sql, const char *what, char *err,
    size_t errlen);

uint64_t pg_get_u64(const char *p);

#endif
