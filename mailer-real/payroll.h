/*
 * payroll: mailer-real's HTTP API.
 *
 *   POST /payroll          validate, then hand to the group committer (the
 *                          connection waits suspended); 201 once the payroll
 *                          and its mail record are committed together
 *   GET  /payroll/{id}     the payroll and its notification's state
 *   GET  /payroll?limit=&after=   keyset pages by id, with a next cursor
 *   GET  /readyz           postgresMono answers
 *   GET  /inventory        which build and canary path answered (service,
 *                          path old|new, notifier, version)
 *
 * After a commit every request of the batch is answered first; then the
 * delivery workers are woken (unless NOTIFIER=remote) and the dispatcher
 * (unless NOTIFIER=smtp) is handed the batch's payrolls, one wake-up each
 * for the whole batch: neither can change or delay the answer.
 */
#ifndef MAILER_REAL_PAYROLL_H
#define MAILER_REAL_PAYROLL_H

#include <stddef.h>
#include <pthread.h>

#include "common/http.h"
#include "outbox.h"

struct delivery;
struct dispatch;
struct group_commit;

struct payroll_api {
	/* first member: group_commit passes this pointer to outbox_apply */
	struct outbox_config outbox;
	const char *conninfo;
	const char *version;		/* for GET /inventory */
	const char *notifier;		/* NOTIFIER */
	const char *canary_path;	/* "old" or "new" */
	struct db_probe *probe;		/* /readyz's state (common/db.h) */
	struct group_commit *gc;
	struct delivery *delivery;	/* NULL with NOTIFIER=remote */
	struct dispatch *dispatch;	/* NULL with NOTIFIER=smtp */
	/* payrolls created in the batch being answered (the one committer's) */
	size_t batch_created;
	/* connections for the GET handlers, one per concurrent handler */
	pthread_mutex_t pool_lock;
	struct db **pool;
	size_t npool, cappool;
};

extern const struct http_route payroll_routes[];
extern const size_t payroll_nroutes;

void payroll_api_init(struct payroll_api *api);
void payroll_api_cleanup(struct payroll_api *api);

/* gc_done_fn for the committer: answers the waiting request and queues
 * its Parallel Run hand-off. */
void payroll_committed(struct gc_item *item, enum gc_outcome outcome,
    void *arg);
/* gc_batch_done_fn: once a batch's requests are all answered, wakes the
 * delivery workers and the dispatcher, once for the batch. */
void payroll_batch_done(void *arg);

#endif
