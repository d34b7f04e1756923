/*
 * reconciler: the batch job that joins postgresMono's sent_mail with
 * postgresMicro's spied_mail by correlation id (docs/RECONCILER.md).
 * This file only wires: command line, logging, rules, then one command.
 */
#include <stdio.h>

#include "common/log.h"
#include "reconciler/cli.h"
#include "reconciler/rules.h"
#include "reconciler/run.h"

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
		return rc;
	case CMD_REPORT:
		return run_report(&c);
	case CMD_MISMATCHES:
		return run_mismatches(&c);
	case CMD_ACK:
		return run_ack(&c);
	}
	return EXIT_USAGE;
}
