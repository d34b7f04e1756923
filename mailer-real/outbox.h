/*
 * outbox: the monolith's transactional outbox in postgresMono.
 *
 * Writing: outbox_apply is the group-commit apply function. For a batch of
 * accepted payrolls it takes their ids from the payroll sequence, renders
 * each mail with the legacy renderer, and inserts every payroll row and its
 * sent_mail row with two set-based statements, all inside the committer's
 * one transaction: a payroll never exists without its mail record. An
 * Idempotency-Key that is already there inserts nothing; the first
 * payroll is read back instead (or the item is marked a conflict when the
 * body differs).
 *
 * Delivering is common/delivery.h's, on the table sent_mail: workers claim
 * due pending rows with FOR UPDATE SKIP LOCKED, send a batch over one SMTP
 * session and settle it in the same transaction.
 */
#ifndef MAILER_REAL_OUTBOX_H
#define MAILER_REAL_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/group_commit.h"
#include "common/ids.h"

enum outbox_result {
	OUTBOX_CREATED = 0,	/* new payroll and mail written */
	OUTBOX_REPLAYED,	/* Idempotency-Key seen before, same body: first answer */
	OUTBOX_KEY_CONFLICT,	/* Idempotency-Key seen before with another body */
};

struct outbox_item {
	struct gc_item gc;		/* first member: the committer's link */
	/* input */
	char *ship_to;
	int64_t total_cents;
	char *idem_key;			/* NULL without Idempotency-Key */
	char request_hash[65];		/* sha-256 hex of the body's meaning */
	char correlation_id[IDS_UUID_LEN + 1];
	/* output, valid when the batch committed */
	enum outbox_result result;
	int64_t id;
	char *destination;		/* owned */
	char *status;			/* initial notification status; owned */
	void *owner;			/* the caller's (the HTTP request state) */
};

struct outbox_config {
	const char *mail_domain;
	const char *initial_status;	/* "pending", or "delegated" for NOTIFIER=remote */
};

/*
 * gc_setup_fn: a committer session's settings and prepared statements;
 * arg is unused.
 */
int outbox_setup(PGconn *conn, void *arg);

/* gc_apply_fn; arg is a const struct outbox_config *. */
int outbox_apply(PGconn *conn, struct gc_item **items, size_t n, void *arg);

void outbox_item_free(struct outbox_item *it);

/* sha-256 hex over (ship_to, cents): what makes two bodies the same. */
void outbox_request_hash(const char *ship_to, int64_t cents, char out[65]);

#endif
