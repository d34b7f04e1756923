/*
 * dispatch: see dispatch.h. Nothing here can slow or fail a payroll: the
 * request path only takes a mutex to push onto the queue; everything that
 * waits (connections, the spy's answer, JSON parsing, the experiment)
 * happens on the dispatcher thread.
 *
 * Keeping it off the request path takes more than a queue: on a machine
 * with few cores the dispatcher's wake-up, its sends and the spy's answer
 * compete for a core with the HTTP thread that is about to write a 201.
 * So the committer pushes a whole batch and wakes the dispatcher once,
 * after every answer of the batch was resumed (dispatch_push, then
 * dispatch_kick), and only when it sleeps; and in a Parallel Run the
 * dispatcher runs as SCHED_IDLE, which any other thread preempts at once,
 * until its queue is half full (docs/BENCHMARKS.md has the measurements).
 */
#define _GNU_SOURCE	/* SCHED_IDLE */
#include "dispatch.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "experiment.h"
#include "legacy_render.h"

#define ANSWER_MAX (256 * 1024)

enum outcome {
	OUT_OK, OUT_TIMEOUT, OUT_CONNECT, OUT_HTTP_4XX, OUT_HTTP_5XX,
	OUT_BAD_ANSWER, OUT_ERROR, OUT_QUEUE_FULL, OUT_NOT_SAMPLED, OUT_N
};

static const char *const outcome_names[OUT_N] = {
	[OUT_OK] = "ok", [OUT_TIMEOUT] = "timeout", [OUT_CONNECT] = "connect_error",
	[OUT_HTTP_4XX] = "http_4xx", [OUT_HTTP_5XX] = "http_5xx",
	[OUT_BAD_ANSWER] = "bad_answer", [OUT_ERROR] = "error",
	[OUT_QUEUE_FULL] = "queue_full", [OUT_NOT_SAMPLED] = "not_sampled",
};

struct job {
	char correlation_id[IDS_UUID_LEN + 1];
	int64_t payroll_id;
	char *ship_to;
	int64_t cents;
	/* while in flight */
	CURL *easy;
	struct curl_slist *headers;
	struct strbuf answer;
	int too_big;
};

/* What a renderer produced: the experiment's value on both sides. */
struct rendered {
	char *destination, *subject, *body;
};

enum { DIFF_DESTINATION = 1, DIFF_SUBJECT = 2, DIFF_BODY = 4 };

struct dispatch {
	struct dispatch_config cfg;
	char *url, *auth_header, *mail_domain;
	pthread_mutex_t lock;
	struct job **queue;
	size_t head, count;
	int stopping;
	int sleeping;		/* in curl_multi_poll with room to start jobs */
	int idle_class;		/* running as SCHED_IDLE now */
	double queue_full_logged;	/* when "queue full" was last logged */
	unsigned long queue_full_quiet;	/* drops since, not logged */
	double failure_logged;	/* the same for failed hand-offs */
	unsigned long failure_quiet;
	pthread_t thread;
	CURLM *multi;
	unsigned inflight;
	struct job **flying;		/* max_inflight slots */
	struct experiment *exp;
	struct metric *m_out[OUT_N], *m_queue, *m_inflight;
	struct metric *m_exp[5], *m_field[3], *m_dur_control, *m_dur_candidate;
};

int
dispatch_sampled(unsigned percent, const char *correlation_id)
{
	if (percent >= 100)
		return 1;
	if (percent == 0)
		return 0;
	return ids_hash(correlation_id) % 100 < percent;
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	free(j->ship_to);
	strbuf_free(&j->answer);
	curl_slist_free_all(j->headers);
	free(j);
}

static void
rendered_free(void *p)
{
	struct rendered *r = p;

	if (r == NULL)
		return;
	free(r->destination);
	free(r->subject);
	free(r->body);
	free(r);
}

/* The experiment's control: the legacy render, run again in process. */
static int
control_render(void *ctx, void **value, char *err, size_t errlen)
{
	struct job *j = ((void **)ctx)[0];
	const char *domain = ((void **)ctx)[1];
	struct legacy_mail m;
	struct rendered *r;

	if (legacy_render(j->payroll_id, j->ship_to, j->cents, domain, &m, err,
	    errlen) != 0)
		return -1;
	r = xcalloc(1, sizeof(*r));
	r->destination = xstrdup(m.destination);
	r->subject = xstrdup(m.subject);
	r->body = m.body;	/* handed over */
	*value = r;
	return 0;
}

static unsigned
compare_rendered(const void *a, const void *b, void *arg)
{
	const struct rendered *x = a, *y = b;
	unsigned diff = 0;

	(void)arg;
	if (strcmp(x->destination, y->destination) != 0)
		diff |= DIFF_DESTINATION;
	if (strcmp(x->subject, y->subject) != 0)
		diff |= DIFF_SUBJECT;
	if (strcmp(x->body, y->body) != 0)
		diff |= DIFF_BODY;
	return diff;
}

/* Published text: the fields with control characters made visible. */
static char *
clean_rendered(const void *v, void *arg)
{
	const struct rendered *r = v;

	(void)arg;
	return xasprintf("destination=%s subject=%s body_bytes=%zu",
	    r->destination, r->subject, strlen(r->body));
}

static void
publish(const struct experiment_result *r, void *arg)
{
	struct dispatch *d = arg;
	char fields[64] = "";

	metrics_inc(d->m_exp[r->outcome], 1);
	metrics_observe(d->m_dur_control, r->control->wall_s);
	if (!r->candidate->raised)
		metrics_observe(d->m_dur_candidate, r->candidate->wall_s);
	if (r->outcome != EXPERIMENT_MISMATCHED)
		return;
	if (r->diff & DIFF_DESTINATION) {
		metrics_inc(d->m_field[0], 1);
		strcat(fields, " destination");
	}
	if (r->diff & DIFF_SUBJECT) {
		metrics_inc(d->m_field[1], 1);
		strcat(fields, " subject");
	}
	if (r->diff & DIFF_BODY) {
		metrics_inc(d->m_field[2], 1);
		strcat(fields, " body");
	}
	log_warnx("experiment %s: mismatch for correlation id %s in%s; "
	    "control %s; candidate %s", r->name, r->context, fields,
	    r->control_clean ? r->control_clean : "(raised)",
	    r->candidate_clean ? r->candidate_clean : "(raised)");
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct job *j = userdata;
	size_t n = size * nmemb;

	if (j->answer.len + n > ANSWER_MAX) {
		j->too_big = 1;
		return 0;	/* aborts the transfer */
	}
	strbuf_add(&j->answer, ptr, n);
	return n;
}

static char *
request_body(const struct job *j)
{
	struct strbuf b = STRBUF_INIT;
	char total[32];

	legacy_format_total(j->cents, total, sizeof(total));
	strbuf_printf(&b, "{\"correlationId\":\"%s\",\"payrollId\":%" PRId64
	    ",\"shipTo\":", j->correlation_id, j->payroll_id);
	strbuf_json_string(&b, j->ship_to);
	strbuf_printf(&b, ",\"total\":%s}", total);
	return strbuf_take(&b);
}

static void
start_job(struct dispatch *d, struct job *j)
{
	char *body = request_body(j);
	char rid[80];
	unsigned i;

	j->easy = curl_easy_init();
	if (j->easy == NULL)
		fatalx("curl_easy_init failed");
	j->headers = curl_slist_append(NULL, "Content-Type: application/json");
	j->headers = curl_slist_append(j->headers, "Expect:");
	snprintf(rid, sizeof(rid), "X-Request-Id: %s", j->correlation_id);
	j->headers = curl_slist_append(j->headers, rid);
	if (d->auth_header != NULL)
		j->headers = curl_slist_append(j->headers, d->auth_header);
	curl_easy_setopt(j->easy, CURLOPT_URL, d->url);
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
	curl_easy_setopt(j->easy, CURLOPT_COPYPOSTFIELDS, body);
	curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, (long)d->cfg.timeout_ms);
	curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)d->cfg.timeout_ms);
	curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	free(body);
	curl_multi_add_handle(d->multi, j->easy);
	for (i = 0; i < d->cfg.max_inflight; i++) {
		if (d->flying[i] == NULL) {
			d->flying[i] = j;
			break;
		}
	}
	d->inflight++;
	metrics_set(d->m_inflight, d->inflight);
}

/* Reads the spy's answer into a candidate observation. */
static enum outcome
read_answer(struct job *j, CURLcode cc, struct experiment_observation *obs)
{
	long status = 0;
	curl_off_t us = 0;
	json_t *root = NULL;
	json_error_t jerr;
	const char *dest = NULL, *subj = NULL, *body = NULL, *cid = NULL;
	struct rendered *r;
	enum outcome o;

	memset(obs, 0, sizeof(*obs));
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(j->easy, CURLINFO_TOTAL_TIME_T, &us);
	obs->wall_s = (double)us / 1e6;
	obs->raised = 1;
	if (cc != CURLE_OK) {
		snprintf(obs->error, sizeof(obs->error), "%s",
		    j->too_big ? "answer too large" : curl_easy_strerror(cc));
		if (cc == CURLE_OPERATION_TIMEDOUT)
			return OUT_TIMEOUT;
		if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
			return OUT_CONNECT;
		return j->too_big ? OUT_BAD_ANSWER : OUT_ERROR;
	}
	if (status >= 500) {
		snprintf(obs->error, sizeof(obs->error), "spy answered %ld", status);
		return OUT_HTTP_5XX;
	}
	if (status != 200 && status != 201) {
		snprintf(obs->error, sizeof(obs->error), "spy answered %ld", status);
		return status >= 400 ? OUT_HTTP_4XX : OUT_BAD_ANSWER;
	}
	o = OUT_BAD_ANSWER;
	root = json_loadb(j->answer.p ? j->answer.p : "", j->answer.len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || json_unpack(root, "{s:s, s:s, s:s, s:s}",
	    "correlationId", &cid, "destination", &dest, "subject", &subj,
	    "body", &body) != 0) {
		snprintf(obs->error, sizeof(obs->error), "spy answer is not "
		    "{correlationId, destination, subject, body}");
		goto done;
	}
	if (strcasecmp(cid, j->correlation_id) != 0) {
		snprintf(obs->error, sizeof(obs->error), "spy answered for "
		    "correlation id %.40s", cid);
		goto done;
	}
	r = xcalloc(1, sizeof(*r));
	r->destination = xstrdup(dest);
	r->subject = xstrdup(subj);
	r->body = xstrdup(body);
	obs->value = r;
	obs->raised = 0;
	o = OUT_OK;
done:
	json_decref(root);
	return o;
}

/*
 * A dead or failing spy fails every hand-off: one line a second (with how
 * many were not logged) says so without a write per payroll.
 */
static void
log_failure(struct dispatch *d, const char *cid, const char *why)
{
	double now = now_s();

	if (now - d->failure_logged < 1.0) {
		d->failure_quiet++;
		return;
	}
	if (d->failure_quiet > 0)
		log_warnx("dispatch: %s to mailer-spy: %s (and %lu more failed "
		    "hand-offs in the last %.0f s)", cid, why, d->failure_quiet,
		    now - d->failure_logged);
	else
		log_warnx("dispatch: %s to mailer-spy: %s", cid, why);
	d->failure_logged = now;
	d->failure_quiet = 0;
}

/*
 * SCHED_IDLE while the queue is short: any thread of the request path
 * that wakes takes the core from the dispatcher at once. Past half the
 * queue it competes as usual again, so that a busy machine delays
 * hand-offs rather than dropping them.
 */
static void
set_class(struct dispatch *d, size_t queued)
{
	struct sched_param sp = { .sched_priority = 0 };
	int want, rc;

	if (!d->cfg.background)
		return;
	if (d->idle_class && queued > d->cfg.queue_max / 2)
		want = 0;
	else if (!d->idle_class && queued <= d->cfg.queue_max / 4)
		want = 1;
	else
		return;
	rc = pthread_setschedparam(pthread_self(), want ? SCHED_IDLE : SCHED_OTHER,
	    &sp);
	if (rc == 0) {
		d->idle_class = want;
		return;
	}
	/* leaving SCHED_IDLE needs RLIMIT_NICE >= 20 (or CAP_SYS_NICE) */
	log_warnx("dispatch: cannot switch the dispatcher to %s: %s; it stays "
	    "in %s", want ? "SCHED_IDLE" : "SCHED_OTHER", strerror(rc),
	    d->idle_class ? "SCHED_IDLE" : "SCHED_OTHER");
	d->cfg.background = 0;
}

static void
finish_job(struct dispatch *d, struct job *j, CURLcode cc)
{
	struct experiment_observation obs;
	enum outcome o;
	void *ctx[2] = { j, d->mail_domain };
	void *control = NULL;
	char err[256];
	unsigned i;

	for (i = 0; i < d->cfg.max_inflight; i++)
		if (d->flying[i] == j)
			d->flying[i] = NULL;
	o = read_answer(j, cc, &obs);
	metrics_inc(d->m_out[o], 1);
	if (o == OUT_OK && d->cfg.acknowledged != NULL)
		d->cfg.acknowledged(j->correlation_id, d->cfg.ack_arg);
	if (o != OUT_OK)
		log_failure(d, j->correlation_id, obs.error);
	experiment_run_observed(d->exp, control_render, &obs, ctx,
	    j->correlation_id, &control, err, sizeof(err));
	rendered_free(control);
	curl_multi_remove_handle(d->multi, j->easy);
	curl_easy_cleanup(j->easy);
	j->easy = NULL;
	d->inflight--;
	metrics_set(d->m_inflight, d->inflight);
	job_free(j);
}

static void *
dispatcher(void *arg)
{
	struct dispatch *d = arg;
	double deadline = 0;
	CURLMsg *msg;
	size_t queued;
	int running, left;

	prctl(PR_SET_NAME, "dispatcher");	/* for ps, top, perf */
	for (;;) {
		pthread_mutex_lock(&d->lock);
		d->sleeping = 0;
		queued = d->count;
		while (d->count > 0 && d->inflight < d->cfg.max_inflight) {
			struct job *j = d->queue[d->head];
			d->head = (d->head + 1) % d->cfg.queue_max;
			d->count--;
			metrics_set(d->m_queue, (double)d->count);
			pthread_mutex_unlock(&d->lock);
			start_job(d, j);
			pthread_mutex_lock(&d->lock);
		}
		if (d->stopping && deadline == 0)
			deadline = now_s() + d->cfg.timeout_ms / 1000.0 + 1;
		if (d->stopping && ((d->count == 0 && d->inflight == 0) ||
		    now_s() > deadline)) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		pthread_mutex_unlock(&d->lock);
		set_class(d, queued);

		curl_multi_perform(d->multi, &running);
		while ((msg = curl_multi_info_read(d->multi, &left)) != NULL) {
			struct job *j = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			    (char **)&j);
			finish_job(d, j, msg->data.result);
		}
		/*
		 * A kick wakes the poll only when a job could start; with
		 * every slot busy, a transfer ending wakes it anyway.
		 */
		pthread_mutex_lock(&d->lock);
		d->sleeping = d->count == 0 && d->inflight < d->cfg.max_inflight;
		if (d->count > 0 && d->inflight < d->cfg.max_inflight) {
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		pthread_mutex_unlock(&d->lock);
		curl_multi_poll(d->multi, NULL, 0, 1000, NULL);
	}
	return NULL;
}

void
dispatch_push(struct dispatch *d, const char *correlation_id,
    int64_t payroll_id, const char *ship_to, int64_t total_cents)
{
	struct job *j;
	unsigned long quiet = 0;
	int log_it = 0;
	double now;

	if (d == NULL)
		return;
	if (!dispatch_sampled(d->cfg.percent, correlation_id)) {
		metrics_inc(d->m_out[OUT_NOT_SAMPLED], 1);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	snprintf(j->correlation_id, sizeof(j->correlation_id), "%s",
	    correlation_id);
	j->payroll_id = payroll_id;
	j->ship_to = xstrdup(ship_to);
	j->cents = total_cents;
	pthread_mutex_lock(&d->lock);
	if (d->count >= d->cfg.queue_max || d->stopping) {
		/* one line a second on the committer thread, not one a payroll */
		now = now_s();
		if (now - d->queue_full_logged >= 1.0) {
			log_it = 1;
			quiet = d->queue_full_quiet;
			d->queue_full_logged = now;
			d->queue_full_quiet = 0;
		} else {
			d->queue_full_quiet++;
		}
		pthread_mutex_unlock(&d->lock);
		metrics_inc(d->m_out[OUT_QUEUE_FULL], 1);
		if (log_it && quiet > 0)
			log_warnx("dispatch: queue full, %s not handed to mailer-spy "
			    "(nor %lu more since the last line)", correlation_id,
			    quiet);
		else if (log_it)
			log_warnx("dispatch: queue full, %s not handed to mailer-spy",
			    correlation_id);
		job_free(j);
		return;
	}
	d->queue[(d->head + d->count) % d->cfg.queue_max] = j;
	d->count++;
	metrics_set(d->m_queue, (double)d->count);
	pthread_mutex_unlock(&d->lock);
}

void
dispatch_kick(struct dispatch *d)
{
	int wake;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	wake = d->sleeping && d->count > 0;
	if (wake)
		d->sleeping = 0;
	pthread_mutex_unlock(&d->lock);
	if (wake)
		curl_multi_wakeup(d->multi);
}

void
dispatch_submit(struct dispatch *d, const char *correlation_id,
    int64_t payroll_id, const char *ship_to, int64_t total_cents)
{
	dispatch_push(d, correlation_id, payroll_id, ship_to, total_cents);
	dispatch_kick(d);
}

struct dispatch *
dispatch_start(const struct dispatch_config *cfg, char *err, size_t errlen)
{
	struct dispatch *d;
	struct experiment_config ec = { 0 };
	const char *help = "Parallel Run hand-offs to mailer-spy by outcome";
	char labels[64];
	size_t ulen;
	int i;

	if (cfg->spy_url == NULL || strncmp(cfg->spy_url, "http", 4) != 0) {
		snprintf(err, errlen, "SPY_URL must be an http:// or https:// URL");
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->cfg = *cfg;
	if (d->cfg.queue_max == 0)
		d->cfg.queue_max = 10000;
	if (d->cfg.max_inflight == 0)
		d->cfg.max_inflight = 64;
	if (d->cfg.timeout_ms == 0)
		d->cfg.timeout_ms = 2000;
	ulen = strlen(cfg->spy_url);
	while (ulen > 0 && cfg->spy_url[ulen - 1] == '/')
		ulen--;
	d->url = xasprintf("%.*s/notifications", (int)ulen, cfg->spy_url);
	if (cfg->spy_token != NULL && cfg->spy_token[0] != '\0')
		d->auth_header = xasprintf("Authorization: Bearer %s",
		    cfg->spy_token);
	d->mail_domain = xstrdup(cfg->mail_domain);
	d->queue = xcalloc(d->cfg.queue_max, sizeof(*d->queue));
	d->flying = xcalloc(d->cfg.max_inflight, sizeof(*d->flying));
	pthread_mutex_init(&d->lock, NULL);

	for (i = 0; i < OUT_N; i++) {
		snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_names[i]);
		d->m_out[i] = metrics_counter("parallel_run_dispatch_total", help,
		    labels);
	}
	d->m_queue = metrics_gauge("parallel_run_queue_depth",
	    "Payrolls waiting to be handed to mailer-spy", "");
	d->m_inflight = metrics_gauge("parallel_run_inflight",
	    "Requests to mailer-spy in flight", "");
	{
		static const char *const results[5] = {
			[EXPERIMENT_SKIPPED] = "skipped",
			[EXPERIMENT_MATCHED] = "matched",
			[EXPERIMENT_MISMATCHED] = "mismatched",
			[EXPERIMENT_IGNORED] = "ignored",
			[EXPERIMENT_CANDIDATE_ERROR] = "candidate_error",
		};
		static const char *const fields[3] = { "destination", "subject", "body" };
		for (i = 0; i < 5; i++) {
			snprintf(labels, sizeof(labels),
			    "experiment=\"mail-render\",result=\"%s\"", results[i]);
			d->m_exp[i] = metrics_counter("experiment_runs_total",
			    "Online comparisons of the legacy and the spy's render",
			    labels);
		}
		for (i = 0; i < 3; i++) {
			snprintf(labels, sizeof(labels),
			    "experiment=\"mail-render\",field=\"%s\"", fields[i]);
			d->m_field[i] = metrics_counter("experiment_mismatch_fields_total",
			    "Mismatches by the field that differed", labels);
		}
		d->m_dur_control = metrics_histogram("experiment_duration_seconds",
		    "Wall time of each side of the experiment",
		    "experiment=\"mail-render\",behavior=\"control\"", NULL, 0);
		d->m_dur_candidate = metrics_histogram("experiment_duration_seconds",
		    "Wall time of each side of the experiment",
		    "experiment=\"mail-render\",behavior=\"candidate\"", NULL, 0);
	}

	ec.name = "mail-render";
	ec.compare = compare_rendered;
	ec.clean = clean_rendered;
	ec.publish = publish;
	ec.free_value = rendered_free;
	ec.percent = 100;	/* sampling already happened at submit */
	ec.arg = d;
	d->exp = experiment_new(&ec);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	d->multi = curl_multi_init();
	curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)d->cfg.max_inflight);
	curl_multi_setopt(d->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	    (long)d->cfg.max_inflight);
	thread_start(&d->thread, dispatcher, d);
	return d;
}

void
dispatch_stop(struct dispatch *d)
{
	unsigned i;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = 1;
	pthread_mutex_unlock(&d->lock);
	curl_multi_wakeup(d->multi);
	pthread_join(d->thread, NULL);
	/* what is still queued or in flight past the deadline is dropped */
	for (i = 0; i < d->cfg.max_inflight; i++) {
		struct job *j = d->flying[i];
		if (j == NULL)
			continue;
		curl_multi_remove_handle(d->multi, j->easy);
		curl_easy_cleanup(j->easy);
		j->easy = NULL;
		job_free(j);
	}
	while (d->count > 0) {
		job_free(d->queue[d->head]);
		d->head = (d->head + 1) % d->cfg.queue_max;
		d->count--;
	}
	curl_multi_cleanup(d->multi);
	experiment_free(d->exp);
	free(d->queue);
	free(d->flying);
	free(d->url);
	free(d->auth_header);
	free(d->mail_domain);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
