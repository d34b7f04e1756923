/*
 * cmd_ack: `reconciler ack MISMATCH_ID [--note TEXT]` resolves one
 * mismatch by hand and consumes its rows; `reconciler ack --cluster ID
 * --note TEXT` every open one of a cluster.
 */
#include <stdio.h>

#include "common/log.h"
#include "reconciler/clusterstore.h"
#include "reconciler/cmd.h"
#include "reconciler/pg.h"

int
cmd_ack(const struct cli *c)
{
	PGconn *mono = NULL, *micro = NULL;
	char err[512];
	int64_t acked = 0;
	int rc, code = EXIT_DB;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	if ((micro = pg_connect(c->micro_url, "postgresMicro", err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	if (c->cluster != 0)
		rc = clusterstore_ack(mono, micro, c->cluster, c->note, &acked,
		    err, sizeof(err));
	else
		rc = runstore_ack(mono, micro, c->id, c->note, err, sizeof(err));
	if (rc != 0) {
		log_error("ack: %s", err);
		code = rc == 1 ? EXIT_USAGE : EXIT_DB;
		goto out;
	}
	if (!c->quiet && c->cluster != 0)
		printf("cluster %ld: %lld mismatches acknowledged\n", c->cluster,
		    (long long)acked);
	else if (!c->quiet)
		printf("mismatch %lld acknowledged\n", (long long)c->id);
	code = EXIT_CLEAN;
out:
	PQfinish(micro);
	PQfinish(mono);
	return code;
}
