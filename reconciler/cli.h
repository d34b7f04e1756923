/*
 * cli: the reconciler's command line. One table of settings (environment
 * variable, flag, default, help) read through common/config, then the
 * command word and its arguments:
 *
 *	reconciler [run] [--dry-run] [--grace S] [--shard K/N] [--rules F] [--quiet]
 *	reconciler report [RUN_ID] [--format text|json|csv|html]
 *	reconciler mismatches [--open|--all] [--format ...]
 *	reconciler ack MISMATCH_ID [--note TEXT]
 *	reconciler purge --older-than DAYS [--dry-run]
 *	reconciler ack --cluster ID --note TEXT
 *	reconciler clusters [--all] [--format ...]
 *	reconciler mismatches --cluster ID [--all]
 *	reconciler rule --cluster ID
 *	reconciler serve [--web-port P]
 */
#ifndef RECONCILER_CLI_H
#define RECONCILER_CLI_H

#include <stdint.h>

#include "reconciler/knobs.h"
#include "reconciler/shard.h"

/* Exit codes, for cron and alerting (docs/DESIGN.md). */
enum {
	EXIT_CLEAN = 0,		/* no new mismatch */
	EXIT_MISMATCH = 1,	/* new mismatches */
	EXIT_USAGE = 2,		/* usage or configuration error */
	EXIT_DB = 3,		/* a database unreachable or failing */
	EXIT_LOCKED = 4,	/* another run holds the lock */
};

enum cli_command { CMD_RUN, CMD_REPORT, CMD_MISMATCHES, CMD_ACK, CMD_PURGE,
	CMD_CLUSTERS, CMD_RULE, CMD_SERVE };

struct cli {
	/* From the settings table. */
	const char *mono_url, *micro_url;
	long grace;
	long older_than;	/* purge: days; 0 when not given */
	int dry_run, quiet, open, all;
	const char *shard_text, *rules_file, *format_text, *note;
	const char *log_level, *log_format;
	long cluster;		/* --cluster ID (0: none) */
	long web_port;
	const char *web_token;
	struct knobs knobs;	/* run: test and tuning knobs (knobs.h) */
	/* Derived. */
	enum cli_command command;
	struct shard shard;
	int format;		/* enum report_format */
	int64_t id;		/* report RUN_ID (0: latest) / ack MISMATCH_ID */
};

/*
 * Fills c from defaults, environment and argv. Returns 0, 1 when --help
 * was printed (exit 0), or -1 with err (exit EXIT_USAGE).
 */
int cli_parse(struct cli *c, int argc, char **argv, char *err, size_t errlen);

void cli_usage(void);

#endif
