/*
 * mailer-real: the payroll monolith. Wires the configuration, the HTTP
 * API (payroll.c), the group committer writing the outbox (outbox.c), the
 * SMTP delivery workers (common/delivery.c, on sent_mail) and the Parallel
 * Run dispatcher (dispatch.c). docs/MAILER-REAL.md describes the whole.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/db.h"
#include "common/delivery_config.h"
#include "common/group_commit.h"
#include "common/http.h"
#include "common/log.h"
#include "common/smtp_send.h"
#include "common/util.h"
#include "dispatch.h"
#include "handoff.h"
#include "legacy_render.h"
#include "payroll.h"

#define VERSION "1.0.0"

struct mono_config {
	long port;
	const char *bind;
	const char *database_url;
	struct delivery_settings delivery;	/* SMTP_*, DELIVERY_* */
	const char *mail_from;
	const char *mail_domain;
	const char *notifier;
	const char *canary_path;
	const char *spy_url;
	const char *spy_token;
	long percent;
	long spy_timeout_ms;
	long dispatch_queue;
	long dispatch_inflight;
	long handoff_after_ms;
	long http_threads;
	const char *api_token;
	long per_ip_limit;
	long request_deadline_s;
	long commit_batch;
	const char *log_level;
	const char *log_format;
};

/* The offset, then no alias: rows are positional, one line each. */
#define O(f) offsetof(struct mono_config, f), NULL
static const struct config_option options[] = {
	{ "PORT", "port", 'p', CONFIG_INT, "8080", "HTTP port", 1, 65535, NULL, O(port) },
	{ "BIND", "bind", 0, CONFIG_STRING, NULL, "address to listen on (default: all with API_TOKEN, else 127.0.0.1)", 0, 0, NULL, O(bind) },
	{ "API_TOKEN", "api-token", 0, CONFIG_STRING, NULL, "bearer token every endpoint but /healthz /readyz /metrics requires", 0, 0, NULL, O(api_token) },
	{ "HTTP_PER_IP_LIMIT", "per-ip-limit", 0, CONFIG_INT, "1024", "connections from one address at once", 1, 65536, NULL, O(per_ip_limit) },
	{ "HTTP_REQUEST_DEADLINE_S", "request-deadline", 0, CONFIG_INT, "10", "seconds to send a whole request (headers and body)", 1, 3600, NULL, O(request_deadline_s) },
	{ "MONO_DATABASE_URL", "mono-database-url", 0, CONFIG_STRING, NULL, "postgresMono conninfo or URI (required)", 0, 0, NULL, offsetof(struct mono_config, database_url), "database-url" },
	SMTP_CONFIG_OPTIONS(struct mono_config, delivery, ""),
	{ "MAIL_FROM", "mail-from", 0, CONFIG_STRING, "payroll@example.com", "sender address", 0, 0, NULL, O(mail_from) },
	{ "MAIL_DOMAIN", "mail-domain", 0, CONFIG_STRING, "example.com", "domain for names and Message-Ids", 0, 0, NULL, O(mail_domain) },
	{ "NOTIFIER", "notifier", 0, CONFIG_CHOICE, "parallel", "smtp|parallel|remote", 0, 0, "smtp|parallel|remote", O(notifier) },
	{ "CANARY_PATH", "canary-path", 0, CONFIG_CHOICE, NULL, "old|new, as GET /inventory names it (default: from NOTIFIER)", 0, 0, "old|new", O(canary_path) },
	{ "SPY_URL", "spy-url", 0, CONFIG_STRING, "http://localhost:8081", "mailer-spy base URL", 0, 0, NULL, O(spy_url) },
	{ "SPY_TOKEN", "spy-token", 0, CONFIG_STRING, NULL, "bearer token for mailer-spy", 0, 0, NULL, O(spy_token) },
	{ "PARALLEL_RUN_PERCENT", "parallel-run-percent", 0, CONFIG_INT, "100", "share of payrolls sent to the spy", 0, 100, NULL, O(percent) },
	{ "SPY_TIMEOUT_MS", "spy-timeout-ms", 0, CONFIG_INT, "2000", "whole request to the spy, ms", 10, 600000, NULL, O(spy_timeout_ms) },
	{ "DISPATCH_QUEUE", "dispatch-queue", 0, CONFIG_INT, "10000", "payrolls waiting for the spy, at most", 1, 10000000, NULL, O(dispatch_queue) },
	{ "DISPATCH_INFLIGHT", "dispatch-inflight", 0, CONFIG_INT, "64", "requests to the spy at once", 1, 4096, NULL, O(dispatch_inflight) },
	{ "HANDOFF_AFTER_MS", "handoff-after-ms", 0, CONFIG_INT, "10000", "NOTIFIER=remote: a payroll the spy has not acknowledged this long is handed over again, ms", 100, 86400000, NULL, O(handoff_after_ms) },
	DELIVERY_CONFIG_OPTIONS(struct mono_config, delivery, "4", ""),
	{ "HTTP_THREADS", "http-threads", 0, CONFIG_INT, "4", "HTTP server threads", 1, 256, NULL, O(http_threads) },
	{ "COMMIT_BATCH", "commit-batch", 0, CONFIG_INT, "256", "payrolls per group commit, at most", 1, 10000, NULL, O(commit_batch) },
	{ "LOG_LEVEL", "log-level", 0, CONFIG_CHOICE, "info", "debug|info|warn|error", 0, 0, "debug|info|warn|error", O(log_level) },
	{ "LOG_FORMAT", "log-format", 0, CONFIG_CHOICE, "text", "text|json", 0, 0, "text|json", O(log_format) },
	CONFIG_OPTIONS_END
};
#undef O

int
main(int argc, char **argv)
{
	struct mono_config cfg;
	struct payroll_api api;
	struct gc_config gcc;
	struct http_server_config hc;
	struct http_server *srv;
	char err[512] = "";
	struct handoff *handoff = NULL;
	int argind = 0, rc, remote, smtp_only;

	memset(&cfg, 0, sizeof(cfg));
	config_set_synopsis("mailer-real", "[options]");
	rc = config_load(options, &cfg, argc, argv, &argind, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc != 0) {
		fprintf(stderr, "mailer-real: %s\n", err);
		config_usage(stderr, "mailer-real", "[options]", options);
		return 2;
	}
	if (argind < argc) {
		fprintf(stderr, "mailer-real: unexpected argument %s\n", argv[argind]);
		return 2;
	}
	if (log_init("mailer-real", cfg.log_level, cfg.log_format) != 0) {
		fprintf(stderr, "mailer-real: bad LOG_LEVEL or LOG_FORMAT\n");
		return 2;
	}
	if (cfg.database_url == NULL || cfg.database_url[0] == '\0') {
		fprintf(stderr, "mailer-real: MONO_DATABASE_URL (or --mono-database-url) is required\n");
		return 2;
	}
	if (!legacy_domain_ok(cfg.mail_domain)) {
		fprintf(stderr, "mailer-real: MAIL_DOMAIN %s is not a host name\n",
		    cfg.mail_domain);
		return 2;
	}
	if (!smtp_address_ok(cfg.mail_from)) {
		fprintf(stderr, "mailer-real: MAIL_FROM %s is not a plain address\n",
		    cfg.mail_from);
		return 2;
	}
	if (delivery_settings_check(&cfg.delivery, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailer-real: %s\n", err);
		return 2;
	}
	remote = strcmp(cfg.notifier, "remote") == 0;
	smtp_only = strcmp(cfg.notifier, "smtp") == 0;

	memset(&api, 0, sizeof(api));
	payroll_api_init(&api);
	api.outbox.mail_domain = cfg.mail_domain;
	api.outbox.initial_status = remote ? "delegated" : "pending";
	api.conninfo = cfg.database_url;
	api.version = VERSION;
	api.notifier = cfg.notifier;
	if (cfg.canary_path != NULL)
		api.canary_path = cfg.canary_path;
	else
		api.canary_path = remote ? "new" : "old";
	api.probe = db_probe_start(cfg.database_url, "postgresMono");

	if (!remote) {
		struct delivery_config dc = delivery_config_make(&cfg.delivery,
		    cfg.database_url, "postgresMono", "sent_mail", cfg.mail_from,
		    cfg.mail_domain);

		api.delivery = delivery_start(&dc, err, sizeof(err));
		if (api.delivery == NULL) {
			fprintf(stderr, "mailer-real: delivery: %s\n", err);
			return 2;
		}
	}
	if (!smtp_only) {
		struct dispatch_config pc = {
			.spy_url = cfg.spy_url,
			.spy_token = cfg.spy_token,
			/* the microservice sends in remote mode: every payroll goes */
			.percent = remote ? 100 : (unsigned)cfg.percent,
			.queue_max = (size_t)cfg.dispatch_queue,
			.max_inflight = (unsigned)cfg.dispatch_inflight,
			.timeout_ms = (unsigned)cfg.spy_timeout_ms,
			.mail_domain = cfg.mail_domain,
			/* the experiment yields to the users; the mail does not */
			.background = !remote,
		};
		if (remote) {
			struct handoff_config hoc = {
				.conninfo = cfg.database_url,
				.poll_ms = (unsigned)cfg.delivery.poll_ms,
				.after_ms = (unsigned)cfg.handoff_after_ms,
				.retry_base_ms = (unsigned)cfg.delivery.retry_base_ms,
				.retry_max_ms = (unsigned)cfg.delivery.retry_max_ms,
			};
			handoff = handoff_new(&hoc);
			pc.acknowledged = handoff_acknowledged;
			pc.ack_arg = handoff;
		}
		api.dispatch = dispatch_start(&pc, err, sizeof(err));
		if (api.dispatch == NULL) {
			fprintf(stderr, "mailer-real: %s\n", err);
			return 2;
		}
		if (handoff != NULL)
			handoff_start(handoff, api.dispatch);
	}
	memset(&gcc, 0, sizeof(gcc));
	gcc.conninfo = cfg.database_url;
	gcc.name = "postgresMono";
	gcc.max_batch = (size_t)cfg.commit_batch;
	/* One committer: outbox_apply inserts idempotency keys in id order,
	 * not key order, so concurrent batches repeating keys could deadlock. */
	gcc.committers = 1;
	gcc.setup = outbox_setup;
	gcc.apply = outbox_apply;
	gcc.done = payroll_committed;
	gcc.batch_done = payroll_batch_done;
	gcc.arg = &api;
	api.gc = group_commit_start(&gcc);

	memset(&hc, 0, sizeof(hc));
	hc.service = "mailer-real";
	hc.version = VERSION;
	hc.bind = cfg.bind;
	hc.token = cfg.api_token;
	hc.token_name = "API_TOKEN";
	hc.per_ip_limit = (unsigned)cfg.per_ip_limit;
	hc.request_deadline_s = (unsigned)cfg.request_deadline_s;
	hc.port = (unsigned short)cfg.port;
	hc.threads = (unsigned)cfg.http_threads;
	hc.routes = payroll_routes;
	hc.nroutes = payroll_nroutes;
	hc.arg = &api;
	srv = http_server_start(&hc, err, sizeof(err));
	if (srv == NULL)
		fatalx("http: %s", err);
	log_info("listening on port %ld, NOTIFIER=%s, SMTP %s:%ld, spy %s (%ld%%)",
	    cfg.port, cfg.notifier, cfg.delivery.smtp_host,
	    cfg.delivery.smtp_port,
	    smtp_only ? "off" : cfg.spy_url, remote ? 100 : cfg.percent);

	/*
	 * Reverse order of creation. No handler runs once wait_signal
	 * returns; the committer answers the requests it holds (its done
	 * callback uses the dispatcher and the delivery, stopped after it),
	 * and those answers go out before the server stops.
	 */
	http_server_wait_signal(srv);
	group_commit_stop(api.gc);
	http_server_free(srv);
	handoff_halt(handoff);	/* its sweeps submit to the dispatcher */
	dispatch_stop(api.dispatch);
	handoff_stop(handoff);
	delivery_stop(api.delivery);
	payroll_api_cleanup(&api);
	log_info("stopped");
	return 0;
}
