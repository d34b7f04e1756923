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

static int
ack_mismatch(const struct cli *c)
{
	PGconn *mono = NULL, *micro = NULL;
	char err[512];
	int rc, code = EXIT_DB;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	if ((micro = pg_connect(c->micro_url, "postgresMicro", err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	rc = runstore_ack(mono, micro, c->id, c->note, err, sizeof(err));
	if (rc == 0) {
		if (!c->quiet)
			printf("mismatch %lld acknowledged\n", (long long)c->id);
		code = EXIT_CLEAN;
	} else {
		log_error("ack: %s", err);
		code = rc == 1 ? EXIT_USAGE : EXIT_DB;
	}
out:
	PQfinish(micro);
	PQfinish(mono);
	return code;
}

static int
ack_cluster(const struct cli *c)
{
	PGconn *mono = NULL, *micro = NULL;
	char err[512];
	int64_t acked;
	int rc, code = EXIT_DB;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	if ((micro = pg_connect(c->micro_url, "postgresMicro", err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	rc = clusterstore_ack(mono, micro, c->cluster, c->note, &acked, err,
	    sizeof(err));
	if (rc == 0) {
		if (!c->quiet)
			printf("cluster %ld: %lld mismatches acknowledged\n",
			    c->cluster, (long long)acked);
		code = EXIT_CLEAN;
	} else {
		log_error("ack: %s", err);
		code = rc == 1 ? EXIT_USAGE : EXIT_DB;
	}
out:
	PQfinish(micro);
	PQfinish(mono);
	return code;
}

int
cmd_ack(const struct cli *c)
{
	return c->cluster ? ack_cluster(c) : ack_mismatch(c);
}
