/*
 * store: what the spy records, in postgresMicro's spied_mail, written
 * through group commit (common/group_commit.h): concurrent requests share
 * one transaction. A correlation id already stored is not written again;
 * the record then carries the FIRST stored mail, which the caller answers
 * with (200) instead of its own render (201).
 */
#ifndef MAILER_SPY_STORE_H
#define MAILER_SPY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/group_commit.h"
#include "render.h"

struct spy_record {
	struct gc_item gc;		/* first member: the committer's link */
	char correlation_id[37];	/* lower case */
	int64_t payroll_id;
	struct render_mail mail;	/* what this request rendered */
	char *created;			/* the 201 body, built before the commit */
	size_t created_len;
	/* filled by the store before done is called with GC_OK: */
	int inserted;			/* 1: this request wrote the row */
	struct render_mail first;	/* !inserted: the row already there */
	void *owner;			/* the caller's (the HTTP request) */
};

struct store;

typedef void (*store_done_fn)(struct spy_record *rec, enum gc_outcome outcome,
    void *arg);

/*
 * done runs on the committer thread and must not block. live: each new row
 * is also queued for delivery (status 'pending', sql/micro.sql version 2)
 * in the same transaction.
 */
struct store *store_start(const char *conninfo, size_t max_batch,
    unsigned committers, int live, store_done_fn done, void *arg);
/*
 * Every batch also queues its rows in reconcile_queue (sql/micro.sql
 * version 3 and later); live mode also needs spied_mail's delivery columns
 * (version 2). 1: all there; 0: missing (err says what to run); -1: the
 * database could not be asked (err says why).
 */
int store_schema_ok(const char *conninfo, int live, char *err, size_t errlen);
void store_submit(struct store *st, struct spy_record *rec);
size_t store_pending(const struct store *st);
/* postgresMicro answered a probe: reconnect on the next batch, not after the backoff. */
void store_retry_now(struct store *st);
/* Writes what was submitted (each done called), then stops. */
void store_stop(struct store *st);

void spy_record_free(struct spy_record *rec);

#endif
