/*
 * dispatch: the Parallel Run hand-off to mailer-spy, off the request path.
 *
 * dispatch_submit() is called after a payroll committed. It decides by a
 * hash of the correlation id whether this payroll is in the sample
 * (PARALLEL_RUN_PERCENT: a rerun samples the same ones), and puts it on a
 * bounded queue without ever blocking: a full queue drops it and counts
 * it. One dispatcher thread drives libcurl's multi interface: many POST
 * /notifications in flight at once, keep-alive connections to the spy, a
 * total timeout per request, Authorization: Bearer when a token is set.
 *
 * Each answer feeds the online experiment (mailer-real/experiment): the spy's
 * recorded (destination, subject, body) is the candidate, the legacy
 * renderer run again here is the control. Counters and timings go to
 * /metrics; a mismatch is logged with its correlation id.
 */
#ifndef MAILER_REAL_DISPATCH_H
#define MAILER_REAL_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

struct dispatch_config {
	const char *spy_url;		/* base URL; /notifications is appended */
	const char *spy_token;		/* NULL = no Authorization header */
	unsigned percent;		/* 0..100 */
	size_t queue_max;
	unsigned max_inflight;
	unsigned timeout_ms;		/* whole request */
	const char *mail_domain;	/* for the control render */
	/* called on the dispatcher thread when the spy answered 200/201 with
	 * the record of this correlation id; NULL when nobody needs to know */
	void (*acknowledged)(const char *correlation_id, void *arg);
	void *ack_arg;
	/* 1: the hand-off is an experiment, not the mail (NOTIFIER=parallel):
	 * the dispatcher yields every core to the request path (SCHED_IDLE)
	 * while its queue is under half full */
	int background;
};

struct dispatch;

struct dispatch *dispatch_start(const struct dispatch_config *cfg,
    char *err, size_t errlen);

/* 1 when a payroll with this correlation id is in the sample. */
int dispatch_sampled(unsigned percent, const char *correlation_id);

/*
 * Never blocks: queued, or dropped (not sampled, queue full) and counted.
 * dispatch_push does not wake the dispatcher: a caller handing over a
 * batch pushes each payroll, answers its requests, then calls
 * dispatch_kick once (a wake-up only when the dispatcher sleeps).
 * dispatch_submit is push and kick.
 */
void dispatch_push(struct dispatch *d, const char *correlation_id,
    int64_t payroll_id, const char *ship_to, int64_t total_cents);
void dispatch_kick(struct dispatch *d);
void dispatch_submit(struct dispatch *d, const char *correlation_id,
    int64_t payroll_id, const char *ship_to, int64_t total_cents);

/* Waits for the requests in flight (up to their timeout), then frees. */
void dispatch_stop(struct dispatch *d);

#endif
