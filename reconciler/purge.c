/*
 * purge: see purge.h. One table of what may go, per store; each table is
 * walked by id in batches, one DELETE statement (its own transaction) per
 * batch, so the locks taken are row locks held for one batch's milliseconds.
 */
#include "reconciler/purge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/log.h"
#include "common/util.h"
#include "reconciler/pg.h"
#include "reconciler/shard.h"

enum { MONO, MICRO };

/* $2 is the cutoff. Never an unconsumed row, one still to send or to hand
 * over, or an open mismatch. */
static const struct target {
	int store;
	const char *table;
	const char *cond;
} targets[] = {
	{ MONO, "sent_mail", "consumed_at < $2::timestamptz and (status in "
	  "('sent', 'failed') or (status = 'delegated' and handed_off_at is "
	  "not null))" },
	{ MONO, "reconciliation_mismatch", "resolved_at < $2::timestamptz" },
	{ MICRO, "spied_mail", "consumed_at < $2::timestamptz and (status is "
	  "null or status in ('sent', 'failed'))" },
};

static const char *const store_names[] = { "postgresMono", "postgresMicro" };

struct purge {
	const struct cli *cli;
	PGconn *conn[2];
	char cutoff[64];
	char err[512];
};

static int
connect_both(struct purge *p)
{
	const char *urls[2] = { p->cli->mono_url, p->cli->micro_url };
	int i;

	for (i = 0; i < 2; i++) {
		p->conn[i] = pg_connect(urls[i], store_names[i], p->err,
		    sizeof(p->err));
		if (p->conn[i] == NULL)
			return -1;
		/* A batch waiting this long on a row lock gives up (exit 3)
		 * rather than queue others behind it. A batch a crash loses
		 * is deleted again by the next purge, so its commit need not
		 * wait for the disk: half the time at 1M rows here. */
		if (pg_command(p->conn[i], "set lock_timeout = '5s'",
		    "lock_timeout", p->err, sizeof(p->err)) == -1 ||
		    pg_command(p->conn[i], "set synchronous_commit = off",
		    "synchronous_commit", p->err, sizeof(p->err)) == -1)
			return -1;
	}
	return 0;
}

/* One cutoff for both stores, computed by postgresMono (as run does). */
static int
compute_cutoff(struct purge *p)
{
	char days[24];
	const char *params[1] = { days };
	PGresult *res;

	snprintf(days, sizeof(days), "%ld", p->cli->older_than);
	res = PQexecParams(p->conn[MONO], "select to_char((now() - "
	    "make_interval(days => $1::int)) at time zone 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", 1, NULL, params, NULL,
	    NULL, 0);
	if (pg_ok(p->conn[MONO], res, PGRES_TUPLES_OK, "cutoff", p->err,
	    sizeof(p->err)) == -1)
		return -1;
	snprintf(p->cutoff, sizeof(p->cutoff), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* 0 locked, EXIT_LOCKED or EXIT_DB. */
static int
lock_both(struct purge *p)
{
	int i, got;

	for (i = 0; i < 2; i++) {
		got = pg_try_lock(p->conn[i], SHARD_LOCK_CLASS, PURGE_LOCK_KEY,
		    p->err, sizeof(p->err));
		if (got == -1)
			return EXIT_DB;
		if (got == 0) {
			snprintf(p->err, sizeof(p->err), "another purge holds "
			    "the lock on %s", store_names[i]);
			return EXIT_LOCKED;
		}
	}
	return 0;
}

static int
count_rows(struct purge *p, const struct target *t, long long *n)
{
	const char *params[2] = { "0", p->cutoff };
	char *sql = xasprintf("select count(*) from %s where id > $1::bigint "
	    "and %s", t->table, t->cond);
	PGresult *res = PQexecParams(p->conn[t->store], sql, 2, NULL, params,
	    NULL, NULL, 0);

	free(sql);
	if (pg_ok(p->conn[t->store], res, PGRES_TUPLES_OK, t->table, p->err,
	    sizeof(p->err)) == -1)
		return -1;
	*n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

/*
 * Deletes in batches: each statement finds the PURGE_BATCH-th matching id
 * after the last one seen (the primary key's order) and deletes the
 * matching rows up to it, one range scan of the key (faster than probing
 * the ids one by one). *n counts what went, also when a later batch fails.
 */
static int
delete_rows(struct purge *p, const struct target *t, long long *n)
{
	char last[24] = "0";
	const char *params[2] = { last, p->cutoff };
	char *sql = NULL;
	PGresult *res;
	int rc = -1;

	sql = xasprintf("with u as (select max(id) as m from (select id from "
	    "%s where id > $1::bigint and %s order by id limit %d) b), "
	    "d as (delete from %s where id > $1::bigint and id <= (select m "
	    "from u) and %s returning 1) "
	    "select (select count(*) from d), (select m from u)",
	    t->table, t->cond, PURGE_BATCH, t->table, t->cond);
	for (;;) {
		res = PQexecParams(p->conn[t->store], sql, 2, NULL, params,
		    NULL, NULL, 0);
		if (pg_ok(p->conn[t->store], res, PGRES_TUPLES_OK, t->table,
		    p->err, sizeof(p->err)) == -1)
			goto fail;
		if (PQgetisnull(res, 0, 1)) {
			PQclear(res);
			break;
		}
		*n += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(last, sizeof(last), "%s", PQgetvalue(res, 0, 1));
		PQclear(res);
	}
	rc = 0;
fail:
	free(sql);
	return rc;
}

int
purge_run(const struct cli *c)
{
	struct purge p;
	const struct target *t;
	long long n, total = 0;
	double t0 = now_s(), dt;
	int rc = EXIT_DB, i, failed;

	memset(&p, 0, sizeof(p));
	p.cli = c;
	if (connect_both(&p) == -1 || compute_cutoff(&p) == -1)
		goto out;
	if (!c->dry_run && (rc = lock_both(&p)) != 0)
		goto out;
	rc = EXIT_DB;
	if (!c->quiet)
		printf("purge%s: consumed mail and resolved mismatches older "
		    "than %ld days (before %s)\n", c->dry_run ? " dry run" : "",
		    c->older_than, p.cutoff);
	for (i = 0; i < (int)nitems(targets); i++) {
		t = &targets[i];
		n = 0;
		failed = c->dry_run ? count_rows(&p, t, &n) :
		    delete_rows(&p, t, &n);
		total += n;
		/* Also after a failure: what went is gone. */
		if (!c->quiet)
			printf("%-14s %-24s %s %lld\n", store_names[t->store],
			    t->table, c->dry_run ? "would delete" : "deleted", n);
		fflush(stdout);
		if (failed == -1)
			goto out;
	}
	rc = EXIT_CLEAN;
	dt = now_s() - t0;
	log_info("purge: %s %lld rows in %.2fs (%.0f rows/s)",
	    c->dry_run ? "would delete" : "deleted", total, dt,
	    dt > 0 ? (double)total / dt : 0.0);
out:
	if (rc != EXIT_CLEAN)
		log_error("purge: %s", p.err);
	for (i = 0; i < 2; i++)
		if (p.conn[i] != NULL)
			PQfinish(p.conn[i]);
	return rc;
}
