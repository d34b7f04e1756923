/*
 * handoff: in NOTIFIER=remote the hand-off to mailer-spy *is* the mail (the
 * live spy sends it; mailer-real only records its render as `delegated`),
 * so a hand-off the spy never acknowledged must not be forgotten.
 *
 * The dispatcher tells this module each correlation id the spy answered 200
 * or 201 for (handoff_acknowledged, from the dispatcher thread); one thread
 * records them in batches (sent_mail.handed_off_at). The same thread sweeps
 * the outbox: a delegated row still unacknowledged `after_ms` after it was
 * written, or after its last try, is handed to the spy again (FOR UPDATE
 * SKIP LOCKED, so several processes never resend the same row at once),
 * with exponential backoff between tries and no limit on their number. The
 * spy answers a repeated correlation id with its first record and sends
 * nothing again, so a resend is harmless. After a crash of mailer-real, of
 * the spy or of the dispatch queue, every accepted payroll reaches the spy.
 */
#ifndef MAILER_REAL_HANDOFF_H
#define MAILER_REAL_HANDOFF_H

#include "dispatch.h"

struct handoff_config {
	const char *conninfo;
	unsigned poll_ms;	/* sweep period */
	unsigned after_ms;	/* unacknowledged this long: hand it over again */
	unsigned retry_base_ms;
	unsigned retry_max_ms;
	unsigned batch;		/* rows per sweep */
};

struct handoff;

/* Before dispatch_start: its acknowledgements come here (ack_arg). */
struct handoff *handoff_new(const struct handoff_config *cfg);

/* Starts the thread that records acknowledgements and sweeps through d. */
void handoff_start(struct handoff *h, struct dispatch *d);

/* Called by the dispatcher for each hand-off the spy acknowledged. */
void handoff_acknowledged(const char *correlation_id, void *arg);

/*
 * Stops the thread (no more sweeps, so no more dispatch_submit): call it
 * before dispatch_stop. handoff_stop, after dispatch_stop, records the
 * acknowledgements of the requests dispatch_stop let finish, and frees.
 */
void handoff_halt(struct handoff *h);
void handoff_stop(struct handoff *h);

#endif
