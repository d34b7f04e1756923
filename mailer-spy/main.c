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
	{ .env = "SPY_TOKEN", .flag = "token", .type = CONFIG_STRING,
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
	{ .env = "SMTP_HOST", .flag = "smtp-host", .type = CONFIG_STRING,
	  .def = "localhost", .help = "SMTP server (live mode)",
	  .offset = offsetof(struct spy_config, smtp_host) },
	{ .env = "SMTP_PORT", .flag = "smtp-port", .type = CONFIG_INT, .def = "25",
	  .min = 1, .max = 65535, .help = "SMTP port (live mode)",
	  .offset = offsetof(struct spy_config, smtp_port) },
	{ .env = "SMTP_STARTTLS", .flag = "smtp-starttls", .type = CONFIG_CHOICE,
	  .def = "off", .choices = "off|required", .help = "off|required",
	  .offset = offsetof(struct spy_config, smtp_starttls) },
	{ .env = "SMTP_USER", .flag = "smtp-user", .type = CONFIG_STRING,
	  .help = "SMTP AUTH user", .offset = offsetof(struct spy_config, smtp_user) },
	{ .env = "SMTP_PASSWORD", .flag = "smtp-password", .type = CONFIG_STRING,
	  .help = "SMTP AUTH password",
	  .offset = offsetof(struct spy_config, smtp_password) },
	{ .env = "SMTP_AUTH_WITHOUT_TLS", .flag = "smtp-auth-without-tls",
	  .type = CONFIG_BOOL, .def = "false",
	  .help = "allow AUTH with SMTP_STARTTLS=off (a trusted link only)",
	  .offset = offsetof(struct spy_config, smtp_auth_without_tls) },
	{ .env = "SMTP_CA_FILE", .flag = "smtp-ca-file", .type = CONFIG_STRING,
	  .help = "PEM CAs trusted for STARTTLS (default: system)",
	  .offset = offsetof(struct spy_config, smtp_ca_file) },
	{ .env = "SMTP_TLS_VERIFY", .flag = "smtp-tls-verify", .type = CONFIG_BOOL,
	  .def = "true", .help = "check the server certificate",
	  .offset = offsetof(struct spy_config, smtp_tls_verify) },
	{ .env = "SMTP_TIMEOUT_S", .flag = "smtp-timeout", .type = CONFIG_INT,
	  .def = "30", .min = 1, .max = 3600, .help = "SMTP timeout per step, s",
	  .offset = offsetof(struct spy_config, smtp_timeout_s) },
	{ .env = "DELIVERY_WORKERS", .flag = "delivery-workers", .type = CONFIG_INT,
	  .def = "2", .min = 1, .max = 64, .help = "SMTP delivery threads (live)",
	  .offset = offsetof(struct spy_config, delivery_workers) },
	{ .env = "DELIVERY_BATCH", .flag = "delivery-batch", .type = CONFIG_INT,
	  .def = "200", .min = 1, .max = 10000, .help = "mails per SMTP session",
	  .offset = offsetof(struct spy_config, delivery_batch) },
	{ .env = "DELIVERY_POLL_MS", .flag = "delivery-poll-ms", .type = CONFIG_INT,
	  .def = "1000", .min = 10, .max = 3600000,
	  .help = "poll for due retries, ms",
	  .offset = offsetof(struct spy_config, delivery_poll_ms) },
	{ .env = "DELIVERY_RETRY_BASE_MS", .flag = "retry-base-ms",
	  .type = CONFIG_INT, .def = "1000", .min = 1, .max = 86400000,
	  .help = "first retry delay, ms",
	  .offset = offsetof(struct spy_config, retry_base_ms) },
	{ .env = "DELIVERY_RETRY_MAX_MS", .flag = "retry-max-ms",
	  .type = CONFIG_INT, .def = "600000", .min = 1, .max = 86400000,
	  .help = "longest retry delay, ms",
	  .offset = offsetof(struct spy_config, retry_max_ms) },
	{ .env = "DELIVERY_MAX_ATTEMPTS", .flag = "max-attempts",
	  .type = CONFIG_INT, .def = "10", .min = 1, .max = 1000,
	  .help = "attempts before a mail is failed",
	  .offset = offsetof(struct spy_config, max_attempts) },
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
	struct delivery_config dc = {
		.conninfo = cfg->micro_url,
		.store_name = "postgresMicro",
		.table = "spied_mail",
		.smtp = {
			.host = cfg->smtp_host,
			.port = (unsigned)cfg->smtp_port,
			.starttls_required = strcmp(cfg->smtp_starttls, "required") == 0,
			.ca_file = cfg->smtp_ca_file,
			.tls_verify = cfg->smtp_tls_verify,
			.user = cfg->smtp_user,
			.password = cfg->smtp_password,
			.timeout_s = (unsigned)cfg->smtp_timeout_s,
		},
		.mail_from = cfg->mail_from,
		.mail_domain = cfg->mail_domain,
		.workers = (unsigned)cfg->delivery_workers,
		.batch = (size_t)cfg->delivery_batch,
		.poll_ms = (unsigned)cfg->delivery_poll_ms,
		.retry_base_ms = (unsigned)cfg->retry_base_ms,
		.retry_max_ms = (unsigned)cfg->retry_max_ms,
		.max_attempts = (unsigned)cfg->max_attempts,
	};
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
	if (live && (cfg.smtp_user == NULL) != (cfg.smtp_password == NULL)) {
		fprintf(stderr, "mailer-spy: SMTP_USER and SMTP_PASSWORD go "
		    "together\n");
		return 2;
	}
	if (live && (cfg.token == NULL || cfg.token[0] == '\0')) {
		fprintf(stderr, "mailer-spy: SPY_MODE=live needs SPY_TOKEN: a spy "
		    "that sends real mail must not take requests from anyone\n");
		return 2;
	}
	if (live && cfg.smtp_user != NULL &&
	    strcmp(cfg.smtp_starttls, "off") == 0 && !cfg.smtp_auth_without_tls) {
		fprintf(stderr, "mailer-spy: SMTP_USER/SMTP_PASSWORD are set with "
		    "SMTP_STARTTLS=off: the password would cross the network in "
		    "clear; set SMTP_STARTTLS=required (or SMTP_AUTH_WITHOUT_TLS=on "
		    "on a link you trust)\n");
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
		    cfg.smtp_host, cfg.smtp_port, cfg.mail_from,
		    cfg.delivery_workers);

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
