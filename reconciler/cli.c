/*
 * cli: see cli.h. The settings are one table; the command word and its
 * positional arguments are checked here so that a bad command line fails
 * before any database is touched.
 */
#include "reconciler/cli.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/config.h"
#include "common/db.h"
#include "reconciler/report.h"

static const char synopsis[] =
    "[run|report [RUN_ID]|mismatches [--all]|ack MISMATCH_ID|purge|clusters|\n"
    "    rule --cluster ID|serve] [options]\n\n"
    "  run          compare both stores, record mismatches, consume matches\n"
    "  report       show a run (the latest without RUN_ID)\n"
    "  mismatches   list the open (unresolved) mismatches (--all: every one;\n"
    "               --cluster ID: one cluster's)\n"
    "  ack          resolve a mismatch by hand and consume its rows\n"
    "               (--cluster ID --note TEXT: every open one of a cluster)\n"
    "  purge        delete consumed mail and resolved mismatches older than\n"
    "               --older-than DAYS, on both databases\n"
    "  clusters     list clusters with open mismatches (--all: every one)\n"
    "  rule         print the noise rule that would ignore a cluster\n"
    "  serve        the web console (RECONCILER_WEB_PORT)\n\n"
    "exit: 0 no new mismatch, 1 new mismatches, 2 usage, 3 database, 4 locked";

static const struct config_option options[] = {
	{ .env = "MONO_DATABASE_URL", .flag = "mono-database-url",
	  .alias = "mono", .type = CONFIG_STRING,
	  .help = "postgresMono conninfo or URI",
	  .offset = offsetof(struct cli, mono_url) },
	{ .env = "MICRO_DATABASE_URL", .flag = "micro-database-url",
	  .alias = "micro", .type = CONFIG_STRING,
	  .help = "postgresMicro conninfo or URI",
	  .offset = offsetof(struct cli, micro_url) },
	{ .env = "RECONCILER_GRACE", .flag = "grace", .type = CONFIG_INT,
	  .def = "60", .min = 0, .max = 365L * 86400,
	  .help = "run: leave rows younger than this many seconds",
	  .offset = offsetof(struct cli, grace) },
	{ .flag = "dry-run", .short_flag = 'n', .type = CONFIG_BOOL,
	  .def = "false", .help = "run, purge: report only, change nothing",
	  .offset = offsetof(struct cli, dry_run) },
	{ .env = "RECONCILER_SHARD", .flag = "shard", .type = CONFIG_STRING,
	  .def = "1/1", .help = "run: only shard K of N (own lock per shard)",
	  .offset = offsetof(struct cli, shard_text) },
	{ .env = "RECONCILER_RULES", .flag = "rules", .type = CONFIG_STRING,
	  .help = "run: noise rules file (docs/RECONCILER.md)",
	  .offset = offsetof(struct cli, rules_file) },
	{ .flag = "quiet", .short_flag = 'q', .type = CONFIG_BOOL,
	  .def = "false", .help = "print only when there is something to say",
	  .offset = offsetof(struct cli, quiet) },
	{ .flag = "format", .short_flag = 'f', .type = CONFIG_CHOICE,
	  .def = "text", .choices = "text|json|csv|html",
	  .help = "report format: text, json, csv, html",
	  .offset = offsetof(struct cli, format_text) },
	{ .flag = "open", .type = CONFIG_BOOL, .def = "false",
	  .help = "mismatches: only unresolved ones (the default)",
	  .offset = offsetof(struct cli, open) },
	{ .flag = "all", .type = CONFIG_BOOL, .def = "false",
	  .help = "mismatches: resolved ones too",
	  .offset = offsetof(struct cli, all) },
	{ .flag = "older-than", .type = CONFIG_INT, .min = 1, .max = 36500,
	  .help = "purge: rows consumed or resolved more than DAYS ago",
	  .offset = offsetof(struct cli, older_than) },
	{ .flag = "note", .type = CONFIG_STRING,
	  .help = "ack: why it was resolved by hand",
	  .offset = offsetof(struct cli, note) },
	{ .flag = "cluster", .type = CONFIG_INT, .min = 1, .max = LONG_MAX,
	  .help = "mismatches, ack, rule: the cluster ID",
	  .offset = offsetof(struct cli, cluster) },
	{ .env = "RECONCILER_WEB_PORT", .flag = "web-port", .type = CONFIG_INT,
	  .def = "8090", .min = 1, .max = 65535,
	  .help = "serve: port (127.0.0.1 only unless a token is set)",
	  .offset = offsetof(struct cli, web_port) },
	{ .env = "RECONCILER_WEB_TOKEN", .flag = "web-token",
	  .type = CONFIG_STRING,
	  .help = "serve: bearer token / login; set: listen on every address",
	  .offset = offsetof(struct cli, web_token) },
	{ .env = "LOG_LEVEL", .flag = "log-level", .type = CONFIG_CHOICE,
	  .def = "info", .choices = "debug|info|warn|error",
	  .help = "log level", .offset = offsetof(struct cli, log_level) },
	{ .env = "LOG_FORMAT", .flag = "log-format", .type = CONFIG_CHOICE,
	  .def = "text", .choices = "text|json",
	  .help = "log format", .offset = offsetof(struct cli, log_format) },
	CONFIG_OPTIONS_END
};

static const struct {
	const char *name;
	enum cli_command cmd;
	int min_args, max_args;
} commands[] = {
	{ "run", CMD_RUN, 0, 0 },
	{ "report", CMD_REPORT, 0, 1 },
	{ "mismatches", CMD_MISMATCHES, 0, 0 },
	{ "ack", CMD_ACK, 0, 1 },
	{ "purge", CMD_PURGE, 0, 0 },
	{ "clusters", CMD_CLUSTERS, 0, 0 },
	{ "rule", CMD_RULE, 0, 0 },
	{ "serve", CMD_SERVE, 0, 0 },
};

void
cli_usage(void)
{
	config_usage(stderr, "reconciler", synopsis, options);
}

static int
parse_id(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return -1;
	*out = v;
	return 0;
}

/* libpq checks ports only when it connects; a comma list of 1..65535. */
static const char *
bad_port(const PQconninfoOption *o)
{
	const char *p;
	long v;

	for (; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "port") != 0 || o->val == NULL)
			continue;
		for (p = o->val; *p != '\0'; p++) {
			v = 0;
			while (*p >= '0' && *p <= '9' && v <= 65535)
				v = v * 10 + (*p++ - '0');
			if ((*p != ',' && *p != '\0') || v < 1 || v > 65535)
				return "the port is not a number in 1..65535";
			if (*p == '\0')
				break;
		}
	}
	return NULL;
}

/*
 * A connection string libpq cannot parse is a configuration error (exit
 * 2, retrying will not help), not an unreachable database (exit 3). Like
 * libpq, only a value holding '=' or starting with a postgres URI prefix
 * is a connection string; anything else is a database name. The message
 * names the setting but never repeats the value (it may hold a password).
 */
static int
check_conninfo(const char *v, const char *flag, const char *env, char *err,
    size_t errlen)
{
	PQconninfoOption *opts;
	char *perr = NULL;
	size_t n;

	if (v == NULL || (strchr(v, '=') == NULL &&
	    strncmp(v, "postgresql://", 13) != 0 &&
	    strncmp(v, "postgres://", 11) != 0))
		return 0;
	if ((opts = PQconninfoParse(v, &perr)) != NULL) {
		const char *bad = bad_port(opts);
		PQconninfoFree(opts);
		if (bad == NULL)
			return 0;
		snprintf(err, errlen, "--%s (or %s): not a valid connection "
		    "string: %s", flag, env, bad);
		return -1;
	}
	snprintf(err, errlen, "--%s (or %s): not a valid connection string: %s",
	    flag, env, perr ? perr : "out of memory");
	/* libpq quotes what it could not parse; it may hold a password. */
	db_redact(v, err, errlen);
	n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
	PQfreemem(perr);
	return -1;
}

int
cli_parse(struct cli *c, int argc, char **argv, char *err, size_t errlen)
{
	const char *word = "run";
	int argind = 0, rc, nargs, i;
	size_t k;

	memset(c, 0, sizeof(*c));
	config_set_synopsis("reconciler", synopsis);
	rc = config_load(options, c, argc, argv, &argind, err, errlen);
	if (rc != 0)
		return rc;
	if (argind < argc)
		word = argv[argind++];
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(word, commands[k].name) == 0)
			break;
	if (k == sizeof(commands) / sizeof(commands[0])) {
		snprintf(err, errlen, "unknown command '%s' (run, report, "
		    "mismatches, ack, purge, clusters, rule, serve)", word);
		return -1;
	}
	c->command = commands[k].cmd;
	nargs = argc - argind;
	if (nargs < commands[k].min_args || nargs > commands[k].max_args) {
		snprintf(err, errlen, "%s: %s", word, commands[k].max_args == 0 ?
		    "takes no arguments" : commands[k].min_args ?
		    "needs exactly one id" : commands[k].cmd == CMD_ACK ?
		    "needs exactly one id (MISMATCH_ID) or --cluster ID" :
		    "takes at most one RUN_ID");
		return -1;
	}
	if (c->command == CMD_ACK && (nargs == 1) == (c->cluster != 0)) {
		snprintf(err, errlen, "ack: needs exactly one id (MISMATCH_ID) or --cluster "
		    "ID");
		return -1;
	}
	if (c->cluster != 0 && c->command != CMD_ACK &&
	    c->command != CMD_MISMATCHES && c->command != CMD_RULE) {
		snprintf(err, errlen, "--cluster only goes with mismatches, ack "
		    "and rule");
		return -1;
	}
	if (c->command == CMD_RULE && c->cluster == 0) {
		snprintf(err, errlen, "rule: needs --cluster ID");
		return -1;
	}
	if (c->command == CMD_ACK && c->cluster != 0 &&
	    (c->note == NULL || c->note[0] == '\0')) {
		snprintf(err, errlen, "ack --cluster: needs --note TEXT (why a "
		    "whole cluster is acknowledged)");
		return -1;
	}
	for (i = argind; i < argc; i++)
		if (parse_id(argv[i], &c->id) == -1) {
			snprintf(err, errlen, "%s: '%s' is not a positive integer id",
			    word, argv[i]);
			return -1;
		}
	if (shard_parse(c->shard_text, &c->shard, err, errlen) == -1)
		return -1;
	c->format = report_format_parse(c->format_text);
	if (c->mono_url == NULL) {
		snprintf(err, errlen, "no postgresMono: set MONO_DATABASE_URL or "
		    "--mono-database-url");
		return -1;
	}
	if (c->micro_url == NULL && (c->command == CMD_RUN ||
	    c->command == CMD_ACK || c->command == CMD_PURGE ||
	    c->command == CMD_SERVE)) {
		snprintf(err, errlen, "no postgresMicro: set MICRO_DATABASE_URL or "
		    "--micro-database-url");
		return -1;
	}
	if (check_conninfo(c->mono_url, "mono-database-url", "MONO_DATABASE_URL", err,
	    errlen) == -1 || ((c->command == CMD_RUN || c->command == CMD_ACK ||
	    c->command == CMD_PURGE || c->command == CMD_SERVE) &&
	    check_conninfo(c->micro_url, "micro-database-url", "MICRO_DATABASE_URL", err,
	    errlen) == -1))
		return -1;
	if (c->command == CMD_PURGE && c->older_than == 0) {
		snprintf(err, errlen, "purge: --older-than DAYS is required "
		    "(1..36500)");
		return -1;
	}
	if (c->older_than != 0 && c->command != CMD_PURGE) {
		snprintf(err, errlen, "--older-than is for purge only");
		return -1;
	}
	if (c->note != NULL && c->command != CMD_ACK) {
		snprintf(err, errlen, "--note only goes with ack");
		return -1;
	}
	if ((c->open || c->all) && c->command != CMD_MISMATCHES &&
	    c->command != CMD_CLUSTERS) {
		snprintf(err, errlen, "--%s only goes with mismatches", c->open ?
		    "open" : "all");
		return -1;
	}
	if (c->open && c->all) {
		snprintf(err, errlen, "mismatches: --open and --all exclude each "
		    "other");
		return -1;
	}
	if (c->dry_run && c->command != CMD_RUN && c->command != CMD_PURGE) {
		snprintf(err, errlen, "--dry-run only goes with run or purge");
		return -1;
	}
	if (c->command == CMD_RUN && knobs_load(&c->knobs, err, errlen) == -1)
		return -1;
	return 0;
}
