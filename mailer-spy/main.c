/*
 * mailer-spy: the microservice of the Parallel Run. It renders the payroll
 * e-mail with its own code and records what it would have sent in
 * postgresMicro, sending nothing (SPY_MODE=spy). See docs/SPY.md.
 *
 * main only wires: configuration, logging, the template, the store's
 * committer, the HTTP server, and the orderly stop on SIGTERM/SIGINT
 * (drain requests in flight, then the committer, then exit 0).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/http.h"
#include "common/log.h"
#include "handlers.h"
#include "render.h"
#include "store.h"

#define SPY_VERSION "1.0.0"

static const struct config_option options[] = {
	{ .env = "PORT", .flag = "port", .short_flag = 'p', .type = CONFIG_INT,
	  .def = "8081", .min = 1, .max = 65535, .help = "TCP port to listen on",
	  .offset = offsetof(struct spy_config, port) },
	{ .env = "BIND", .flag = "bind", .type = CONFIG_STRING,
	  .help = "IPv4 address to listen on (default all)",
	  .offset = offsetof(struct spy_config, bind) },
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
	  .choices = "spy|live", .help = "spy: record only (live: not yet)",
	  .offset = offsetof(struct spy_config, mode) },
	{ .env = "SPY_TOKEN", .flag = "token", .type = CONFIG_STRING,
	  .help = "require Authorization: Bearer TOKEN",
	  .offset = offsetof(struct spy_config, token) },
	{ .env = "SPY_TEMPLATE", .flag = "template", .type = CONFIG_STRING,
	  .help = "body template file (default: the canonical body)",
	  .offset = offsetof(struct spy_config, template_path) },
	{ .env = "SPY_THREADS", .flag = "threads", .type = CONFIG_INT, .def = "2",
	  .min = 1, .max = 64, .help = "HTTP server threads",
	  .offset = offsetof(struct spy_config, threads) },
	{ .env = "SPY_MAX_BATCH", .flag = "max-batch", .type = CONFIG_INT,
	  .def = "256", .min = 1, .max = 4096, .help = "rows per commit at most",
	  .offset = offsetof(struct spy_config, max_batch) },
	{ .env = "SPY_MAX_PENDING", .flag = "max-pending", .type = CONFIG_INT,
	  .def = "10000", .min = 1, .max = 1000000,
	  .help = "notifications waiting for a commit before 503",
	  .offset = offsetof(struct spy_config, max_pending) },
	{ .env = "MAX_BODY", .flag = "max-body", .type = CONFIG_INT,
	  .def = "65536", .min = 256, .max = 16777216,
	  .help = "largest request body in bytes (else 413)",
	  .offset = offsetof(struct spy_config, max_body) },
	{ .env = "LOG_LEVEL", .flag = "log-level", .type = CONFIG_CHOICE,
	  .def = "info", .choices = "debug|info|warn|error", .help = "log level",
	  .offset = offsetof(struct spy_config, log_level) },
	{ .env = "LOG_FORMAT", .flag = "log-format", .type = CONFIG_CHOICE,
	  .def = "text", .choices = "text|json", .help = "log line format",
	  .offset = offsetof(struct spy_config, log_format) },
	CONFIG_OPTIONS_END
};

int
main(int argc, char **argv)
{
	static struct spy_config cfg;
	struct http_server_config hc;
	struct http_server *srv;
	struct spy spy;
	char err[512];
	int argind, rc;

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
	if (strcmp(cfg.mode, "live") == 0) {
		fprintf(stderr, "mailer-spy: SPY_MODE=live is not implemented in "
		    "this build; use SPY_MODE=spy\n");
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
	spy.store = store_start(cfg.micro_url, (size_t)cfg.max_batch,
	    spy_record_done, &spy);

	memset(&hc, 0, sizeof(hc));
	hc.service = "mailer-spy";
	hc.version = SPY_VERSION;
	hc.bind = cfg.bind;
	hc.port = (unsigned short)cfg.port;
	hc.max_body = (size_t)cfg.max_body;
	hc.threads = (unsigned)cfg.threads;
	hc.routes = spy_routes;
	hc.nroutes = spy_nroutes;
	hc.arg = &spy;
	if ((srv = http_server_start(&hc, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		store_stop(spy.store);
		render_template_free(spy.body_template);
		return 1;
	}
	log_info("listening on port %ld, mode %s, template %s", cfg.port,
	    cfg.mode, cfg.template_path ? cfg.template_path : "canonical");

	http_server_wait_signal(srv);
	store_stop(spy.store);
	http_server_free(srv);
	render_template_free(spy.body_template);
	log_info("stopped");
	return 0;
}
