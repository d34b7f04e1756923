/*
 * mailer-spy: the microservice of the Parallel Run. It renders the payroll
 * e-mail with its own code and records what it would have sent in
 * postgresMicro, sending nothing (SPY_MODE=spy). See docs/SPY.md. With
 * SPY_MODE=live (the canary's new path, docs/SPY-LIVE.md) each new record
 * is also queued for delivery in the same transaction, and delivery
 * workers (common/delivery.h, on spied_mail) send it over SMTP.
 *
 * main only wires: configuration, logging, the template, the store's
 * committer, the delivery workers in live mode, the HTTP server, and the
 * orderly stop on SIGTERM/SIGINT (drain requests in flight, then the
 * committer, then the batch being delivered, then exit 0).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/db.h"
#include "common/delivery.h"
#include "common/delivery_config.h"
#include "common/http.h"
#include "common/log.h"
#include "common/smtp_send.h"
#include "handlers.h"
#include "render.h"
#include "store.h"

#define SPY_VERSION "1.0.0"

static const struct config_option options[] = {
	{ .env = "PORT", .flag = "port", .short_flag = 'p', .type = CONFIG_INT,
	  .def = "8081", .min = 1, .max = 65535, .help = "TCP port to listen on",
	  .offset = offsetof(struct spy_config, port) },
	{ .env = "BIND", .flag = "bind", .type = CONFIG_STRING,
	  .help = "IPv4 address to listen on (default: all with SPY_TOKEN, "
	  "else 127.0.0.1)",
	  .offset = offsetof(struct spy_config, bind) },
	{ .env = "HTTP_PER_IP_LIMIT", .flag = "per-ip-limit", .type = CONFIG_INT,
	  .def = "1024", .min = 1, .max = 65536,
	  .help = "connections from one address at once",
	  .offset = offsetof(struct spy_config, per_ip_limit) },
	{ .env = "HTTP_REQUEST_DEADLINE_S", .flag = "request-deadline",
	  .type = CONFIG_INT, .def = "10", .min = 1, .max = 3600,
	  .help = "seconds to send a whole request (headers and body)",
	  .offset = offsetof(struct spy_config, request_deadline_s) },
	{ .env = "MICRO_DATABASE_URL", .flag = "micro-database-url",
	  .type = CONFIG_STRING, .help = "postgresMicro conninfo or URI (required)",
	  .offset = offsetof(struct spy_config, micro_url) },
	{ .env = "MAIL_DOMAIN", .flag = "mail-domain", .type = CONFIG_STRING,
	  .def = "example.com", .help = "domain of addresses made from names",
	  .offset = offsetof(struct spy_config, mail_domain) },
	{ .env = "MAIL_FROM", .flag = "mail-from", .type = CONFIG_STRING,
	  .def = "payroll@example.com", .help = "sender (live mode)",
	  .offset = offsetof(struct spy_config, mail_from) },
	{ .env = "SPY_MODE", .flag = "mode", .type = CONFIG_CHOICE, .def = "spy",
	  .choices = "spy|live", .help = "spy: record only; live: record and send",
	  .offset = offsetof(struct spy_config, mode) },
	{ .env = "SPY_TOKEN", .flag = "spy-token", .alias = "token",
	  .type = CONFIG_STRING,
	  .help = "require Authorization: Bearer TOKEN (all but /healthz "
	  "/readyz /metrics; required with SPY_MODE=live)",
	  .offset = offsetof(struct spy_config, token) },
	{ .env = "SPY_TEMPLATE", .flag = "template", .type = CONFIG_STRING,
	  .help = "body template file (default: the canonical body)",
	  .offset = offsetof(struct spy_config, template_path) },
	{ .env = "SPY_THREADS", .flag = "threads", .type = CONFIG_INT, .def = "2",
	  .min = 1, .max = 64, .help = "HTTP server threads",
	  .offset = offsetof(struct spy_config, threads) },
	{ .env = "SPY_MAX_BATCH", .flag = "max-batch", .type = CONFIG_INT,
	  .def = "1024", .min = 1, .max = 4096, .help = "rows per commit at most",
	  .offset = offsetof(struct spy_config, max_batch) },
	{ .env = "SPY_COMMITTERS", .flag = "committers", .type = CONFIG_INT,
	  .def = "2", .min = 1, .max = 64,
	  .help = "commits in flight at once (threads and connections)",
	  .offset = offsetof(struct spy_config, committers) },
	{ .env = "SPY_MAX_PENDING", .flag = "max-pending", .type = CONFIG_INT,
	  .def = "10000", .min = 1, .max = 1000000,
	  .help = "notifications waiting for a commit before 503",
	  .offset = offsetof(struct spy_config, max_pending) },
	{ .env = "MAX_BODY", .flag = "max-body", .type = CONFIG_INT,
	  .def = "65536", .min = 256, .max = 16777216,
	  .help = "largest request body in bytes (else 413)",
	  .offset = offsetof(struct spy_config, max_body) },
	SMTP_CONFIG_OPTIONS(struct spy_config, delivery, " (live mode)"),
	DELIVERY_CONFIG_OPTIONS(struct spy_config, delivery, "2", " (live mode)"),
	{ .env = "LOG_LEVEL", .flag = "log-level", .type = CONFIG_CHOICE,
	  .def = "info", .choices = "debug|info|warn|error", .help = "log level",
	  .offset = offsetof(struct spy_config, log_level) },
	{ .env = "LOG_FORMAT", .flag = "log-format", .type = CONFIG_CHOICE,
	  .def = "text", .choices = "text|json", .help = "log line format",
	  .offset = offsetof(struct spy_config, log_format) },
	CONFIG_OPTIONS_END
};

/* The live mode's workers; NULL in spy mode (delivery_wake ignores NULL). */
static struct delivery *live_delivery;

/* The store's callback: answer the request, then wake a delivery worker. */
static void
record_done(struct spy_record *rec, enum gc_outcome outcome, void *arg)
{
	int queued = outcome == GC_OK && rec->inserted;

	spy_record_done(rec, outcome, arg);
	if (queued)
		delivery_wake(live_delivery);
}

static struct delivery *
live_start(const struct spy_config *cfg)
{
	struct delivery_config dc = delivery_config_make(&cfg->delivery,
	    cfg->micro_url, "postgresMicro", "spied_mail", cfg->mail_from,
	    cfg->mail_domain);
	struct delivery *d;
	char err[512];

	if ((d = delivery_start(&dc, err, sizeof(err))) == NULL)
		fprintf(stderr, "mailer-spy: live mode: %s\n", err);
	return d;
}

int
main(int argc, char **argv)
{
	static struct spy_config cfg;
	struct http_server_config hc;
	struct http_server *srv;
	struct spy spy;
	char err[512];
	int argind, rc, live;

	config_set_synopsis("mailer-spy", "[options]");
	rc = config_load(options, &cfg, argc, argv, &argind, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc == -1) {
		fprintf(stderr, "mailer-spy: %s\n", err);
		return 2;
	}
	if (argind < argc) {
		fprintf(stderr, "mailer-spy: unexpected argument '%s' (see --help)\n",
		    argv[argind]);
		return 2;
	}
	if (log_init("mailer-spy", cfg.log_level, cfg.log_format) == -1) {
		fprintf(stderr, "mailer-spy: bad LOG_LEVEL or LOG_FORMAT\n");
		return 2;
	}
	if (cfg.micro_url == NULL) {
		fprintf(stderr, "mailer-spy: MICRO_DATABASE_URL (or "
		    "--micro-database-url) is required\n");
		return 2;
	}
	live = strcmp(cfg.mode, "live") == 0;
	if (live && !smtp_address_ok(cfg.mail_from)) {
		fprintf(stderr, "mailer-spy: MAIL_FROM '%s' is not a plain address\n",
		    cfg.mail_from);
		return 2;
	}
	if (live && (cfg.token == NULL || cfg.token[0] == '\0')) {
		fprintf(stderr, "mailer-spy: SPY_MODE=live needs SPY_TOKEN: a spy "
		    "that sends real mail must not take requests from anyone\n");
		return 2;
	}
	if (live && delivery_settings_check(&cfg.delivery, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "mailer-spy: %s\n", err);
		return 2;
	}
	if (!render_domain_ok(cfg.mail_domain)) {
		fprintf(stderr, "mailer-spy: MAIL_DOMAIN '%s' is not a host name "
		    "like example.com\n", cfg.mail_domain);
		return 2;
	}

	memset(&spy, 0, sizeof(spy));
	spy.cfg = &cfg;
	if (cfg.template_path != NULL &&
	    (spy.body_template = render_template_load(cfg.template_path, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "mailer-spy: SPY_TEMPLATE: %s\n", err);
		return 2;
	}
	rc = store_schema_ok(cfg.micro_url, live, err, sizeof(err));
	db_redact(cfg.micro_url, err, sizeof(err));
	if (rc == 0) {
		fprintf(stderr, "mailer-spy: %s%s\n", live ? "SPY_MODE=live: " : "",
		    err);
		render_template_free(spy.body_template);
		return 2;
	}
	if (rc == -1)
		log_warnx("cannot check the schema yet: %s", err);
	if (live && (live_delivery = live_start(&cfg)) == NULL) {
		render_template_free(spy.body_template);
		return 2;
	}
	spy.probe = db_probe_start(cfg.micro_url, "postgresMicro");
	spy.store = store_start(cfg.micro_url, (size_t)cfg.max_batch,
	    (unsigned)cfg.committers, live, record_done, &spy);

	memset(&hc, 0, sizeof(hc));
	hc.service = "mailer-spy";
	hc.version = SPY_VERSION;
	hc.bind = cfg.bind;
	hc.token = cfg.token;
	hc.token_name = "SPY_TOKEN";
	hc.per_ip_limit = (unsigned)cfg.per_ip_limit;
	hc.request_deadline_s = (unsigned)cfg.request_deadline_s;
	hc.port = (unsigned short)cfg.port;
	hc.max_body = (size_t)cfg.max_body;
	hc.threads = (unsigned)cfg.threads;
	hc.routes = spy_routes;
	hc.nroutes = spy_nroutes;
	hc.arg = &spy;
	if ((srv = http_server_start(&hc, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		store_stop(spy.store);
		db_probe_stop(spy.probe);
		delivery_stop(live_delivery);
		render_template_free(spy.body_template);
		return 1;
	}
	log_info("listening on port %ld, mode %s, template %s", cfg.port,
	    cfg.mode, cfg.template_path ? cfg.template_path : "canonical");
	if (live)
		log_info("live: delivering over SMTP %s:%ld as %s, %ld worker(s)",
		    cfg.delivery.smtp_host, cfg.delivery.smtp_port, cfg.mail_from,
		    cfg.delivery.workers);

	/*
	 * Reverse order of creation. No handler runs once wait_signal
	 * returns; the store answers the requests it holds, which go out
	 * before the server stops; its done callback wakes the delivery.
	 */
	http_server_wait_signal(srv);
	store_stop(spy.store);
	http_server_free(srv);
	delivery_stop(live_delivery);
	db_probe_stop(spy.probe);
	render_template_free(spy.body_template);
	log_info("stopped");
	return 0;
}
