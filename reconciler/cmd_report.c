/*
 * cmd_report: `reconciler report [RUN_ID]`, one run (the latest without
 * RUN_ID) in any report format, opening with its clusters.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "reconciler/cmd.h"

int
cmd_report(const struct cli *c)
{
	struct run_summary s;
	PGconn *mono = NULL;
	char err[512];
	int rc, code;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	memset(&s, 0, sizeof(s));
	rc = runstore_load(mono, c->id, &s, err, sizeof(err));
	if (rc != 1) {
		if (rc == 0)
			log_error(c->id ? "report: no run %lld" :
			    "report: no run yet%.0lld", (long long)c->id);
		else
			log_error("%s", err);
		PQfinish(mono);
		return rc == 0 ? EXIT_USAGE : EXIT_DB;
	}
	code = cmd_list(c, mono, &s, RUNSTORE_RUN, s.id);
	run_summary_clear(&s);
	PQfinish(mono);
	return code;
}
