/*
 * cmd_mismatches: `reconciler mismatches [--all] [--cluster ID]`, the
 * open mismatches (every one with --all; one cluster's with --cluster)
 * as a report without a run summary.
 */
#include <stdio.h>

#include "reconciler/cmd.h"

int
cmd_mismatches(const struct cli *c)
{
	PGconn *mono = NULL;
	int code;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	if (c->cluster != 0) {
		/* One cluster's members: open ones unless --all. */
		code = cmd_list(c, mono, NULL, c->all ? RUNSTORE_CLUSTER_ALL :
		    RUNSTORE_CLUSTER_OPEN, c->cluster);
		PQfinish(mono);
		return code;
	}
	/* Open ones unless --all (DESIGN.md: "lists open ones"). */
	code = cmd_list(c, mono, NULL, c->all ? RUNSTORE_ALL : RUNSTORE_OPEN, 0);
	PQfinish(mono);
	return code;
}
