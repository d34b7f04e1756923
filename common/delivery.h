/*
 * delivery: worker threads that empty a transactional outbox table over
 * SMTP. mailer-real runs them on postgresMono's sent_mail; mailer-spy in
 * SPY_MODE=live on postgresMicro's spied_mail. The table needs the columns
 * id, correlation_id, destination, subject, body, status ('pending',
 * 'sent', 'failed'; other values are left alone), attempts, last_error,
 * next_attempt_at and sent_at (sql/mono.sql, sql/micro.sql).
 *
 * Each worker has its own PostgreSQL connection and SMTP sender. It claims
 * a batch of due pending rows (FOR UPDATE SKIP LOCKED picks them, session
 * advisory locks on that connection hold them: workers in any number of
 * processes never get the same row, and a dead worker's rows are free the
 * moment its connection closes), sends them over one SMTP session
 * (smtp_send_batch) and records each mail's outcome as the server gives
 * it: the outcomes go to PostgreSQL in small groups, one statement and
 * one commit each, while the session goes on (sent; failed at once on a
 * permanent (5xx) answer for that mail; otherwise retried with exponential
 * backoff, base * 2^attempts, capped, until max_attempts, then failed with
 * the server's last answer). A mail goes out only while fewer than 8 of
 * the worker's accepted mails wait to be recorded; once an outcome cannot
 * be recorded (postgres unreachable, a statement refused) the session
 * stops before the next mail, and the rest of the batch is released.
 *
 * A worker sleeps on a condition variable: delivery_wake() after a commit
 * starts it at once, and it polls every poll_ms anyway for retries coming
 * due and for rows other processes left behind. After a store problem it
 * backs off (1 s doubling to 10 s) deaf to wakes, so a mail whose outcome
 * could not be recorded is not sent again on every commit.
 *
 * Delivery is at least once: a crash between the SMTP server's acceptance
 * and the commit of its outcome sends that mail again, with the same
 * Message-Id <correlation-id@mail_domain>: at most 8 mails per worker.
 */
#ifndef COMMON_DELIVERY_H
#define COMMON_DELIVERY_H

#include <stddef.h>

#include "common/smtp_send.h"

struct delivery_config {
	const char *conninfo;
	const char *store_name;		/* for messages: "postgresMono" */
	const char *table;		/* "sent_mail", "spied_mail" */
	struct smtp_sender_config smtp;
	const char *mail_from;
	const char *mail_domain;	/* Message-Id: <correlation-id@mail_domain> */
	unsigned workers;
	size_t batch;
	unsigned poll_ms;
	unsigned retry_base_ms;
	unsigned retry_max_ms;
	unsigned max_attempts;
};

struct delivery;

/*
 * Starts the workers; NULL with err when the SMTP settings are unusable or
 * the table name is not a plain identifier.
 */
struct delivery *delivery_start(const struct delivery_config *cfg, char *err,
    size_t errlen);
/* New rows are committed: wake a worker. Safe from any thread; cheap. */
void delivery_wake(struct delivery *d);
/* Stops each worker before its next mail (the rest of its batch is
 * released, due again), then frees. */
void delivery_stop(struct delivery *d);

#endif
