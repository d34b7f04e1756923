/*
 * cmd: see cmd.h. What the listing commands (report, mismatches) share.
 */
#include "reconciler/cmd.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/pg.h"
#include "reconciler/report.h"

PGconn *
cmd_connect_mono(const struct cli *c)
{
	char err[512];
	PGconn *conn;

	if ((conn = pg_connect(c->mono_url, "postgresMono", err,
	    sizeof(err))) == NULL)
		log_error("%s", err);
	return conn;
}

/* The clusters of what a listing shows; -1 with err, or EXIT_USAGE's
 * case (no such cluster) as -2. */
static int
clusters_of(PGconn *mono, enum runstore_filter f, int64_t id,
    struct cluster_list *cl, char *err, size_t errlen)
{
	static const enum cluster_scope scope[] = {
		[RUNSTORE_RUN] = CLUSTERS_RUN,
		[RUNSTORE_OPEN] = CLUSTERS_OPEN,
		[RUNSTORE_ALL] = CLUSTERS_ALL,
	};
	int rc;

	if (f != RUNSTORE_CLUSTER_OPEN && f != RUNSTORE_CLUSTER_ALL)
		return clusterstore_list(mono, scope[f], id, REPORT_CLUSTERS, cl,
		    err, errlen);
	cl->v = xcalloc(1, sizeof(*cl->v));
	if ((rc = clusterstore_get(mono, id, &cl->v[0], err, errlen)) == 1)
		cl->n = 1;
	else if (rc == 0)
		snprintf(err, errlen, "cluster %lld does not exist",
		    (long long)id);
	return rc == 1 ? 0 : rc == 0 ? -2 : -1;
}

int
cmd_list(const struct cli *c, PGconn *mono, const struct run_summary *s,
    enum runstore_filter f, int64_t id)
{
	struct mismatch_iter it = { 0 };
	struct cluster_list cl = { 0 };
	char err[512];
	int rc;

	/* The report opens with the clusters of what it lists. */
	if ((rc = clusters_of(mono, f, id, &cl, err, sizeof(err))) != 0 ||
	    runstore_mismatches(mono, f, id, &it, err, sizeof(err)) == -1) {
		log_error("%s", err);
		cluster_list_clear(&cl);
		return rc == -2 ? EXIT_USAGE : EXIT_DB;
	}
	it.clusters = &cl;
	rc = report_write(stdout, c->format, s, &it, err, sizeof(err));
	cluster_list_clear(&cl);
	if (rc == -1)
		log_error("%s", runstore_iter_error(&it)[0] ?
		    runstore_iter_error(&it) : err);
	runstore_iter_free(&it);
	return rc == 0 ? EXIT_CLEAN : EXIT_DB;
}
