/*
 * reconciler: the batch job that joins postgresMono's sent_mail with
 * postgresMicro's spied_mail by correlation id (docs/RECONCILER.md).
 * This file only wires: command line, logging, rules, then one command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "reconciler/cli.h"
#include "reconciler/cmd.h"
#include "reconciler/purge.h"
#include "reconciler/rules.h"
#include "reconciler/run.h"
#include "reconciler/serve.h"

/*
 * The process's peak resident memory in KiB, or -1. VmHWM, not
 * getrusage's ru_maxrss: the latter also counts the memory of the process
 * that forked us, up to the exec (a test driver's, often larger than ours).
 */
static long
peak_rss_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[128];
	long kib = -1;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0) {
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(fp);
	return kib;
}

static int
done(int rc)
{
	log_debug("peak memory %ld KiB", peak_rss_kib());
	return rc;
}

int
main(int argc, char **argv)
{
	struct cli c;
	struct rules *rules = NULL;
	char err[512];
	int rc;

	rc = cli_parse(&c, argc, argv, err, sizeof(err));
	if (rc == 1)
		return EXIT_CLEAN;
	if (rc == -1) {
		fprintf(stderr, "reconciler: %s\n", err);
		cli_usage();
		return EXIT_USAGE;
	}
	if (log_init("reconciler", c.quiet ? "warn" : c.log_level,
	    c.log_format) == -1) {
		fprintf(stderr, "reconciler: bad LOG_LEVEL or LOG_FORMAT\n");
		return EXIT_USAGE;
	}
	switch (c.command) {
	case CMD_RUN:
		if ((rules = rules_load(c.rules_file, err, sizeof(err))) == NULL) {
			fprintf(stderr, "reconciler: %s\n", err);
			return EXIT_USAGE;
		}
		rc = run_reconcile(&c, rules);
		rules_free(rules);
		return done(rc);
	case CMD_REPORT:
		return done(cmd_report(&c));
	case CMD_MISMATCHES:
		return done(cmd_mismatches(&c));
	case CMD_ACK:
		return done(cmd_ack(&c));
	case CMD_PURGE:
		return done(purge_run(&c));
	case CMD_CLUSTERS:
		return done(cmd_clusters(&c));
	case CMD_RULE:
		return done(cmd_rule(&c));
	case CMD_SERVE:
		return done(run_serve(&c));
	}
	return EXIT_USAGE;
}
