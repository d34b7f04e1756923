/*
 * clusterstore: clusters in postgresMono (sql/reconciler.sql version 101):
 * giving every new mismatch its cluster after a run, reading clusters
 * back for the reports and the console, acknowledging a whole cluster.
 *
 * Member counts are kept on the cluster row (members, open_members) plus
 * reconciliation_cluster_delta, the changes a trigger appends when a
 * member is resolved or deleted; readers add the two, the assigning step
 * folds the deltas in. Only one session assigns at a time (a transaction
 * advisory lock), so shards running side by side never deadlock on
 * cluster rows.
 */
#ifndef RECONCILER_CLUSTERSTORE_H
#define RECONCILER_CLUSTERSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <libpq-fe.h>

struct cluster_row {
	int64_t id;
	char *kind, *fields;		/* fields: "subject,body" */
	char *signature;		/* masked, for people */
	char *example_cid;		/* correlation id of its first member */
	int64_t example_id;
	char *first_seen, *last_seen;	/* ISO 8601 UTC */
	int64_t count, open;		/* members, open members (all runs) */
	int64_t in_run;			/* members found by the run listed, or -1 */
};

struct cluster_list {
	struct cluster_row *v;
	size_t n;
	int64_t more;		/* clusters left out past the limit */
};

void cluster_list_clear(struct cluster_list *l);

/*
 * Gives every mismatch without a cluster its cluster (creating clusters
 * as needed) and folds pending count changes. Batches of a few thousand,
 * each its own transaction: a kill leaves the rest for the next call.
 * 0, or -1 with err.
 */
int clusterstore_assign(PGconn *mono, char *err, size_t errlen);

/* Folds pending count changes into the cluster rows. 0 or -1. */
int clusterstore_fold(PGconn *mono, char *err, size_t errlen);

enum cluster_scope {
	CLUSTERS_RUN,		/* clusters of run_id's mismatches, by size there */
	CLUSTERS_OPEN,		/* clusters with open members, most open first */
	CLUSTERS_ALL,		/* every cluster, newest first */
};

/* At most limit clusters into l. 0 or -1 with err. */
int clusterstore_list(PGconn *mono, enum cluster_scope scope, int64_t run_id,
    size_t limit, struct cluster_list *l, char *err, size_t errlen);

/* One cluster: 1 found, 0 none, -1 error. */
int clusterstore_get(PGconn *mono, int64_t id, struct cluster_row *c,
    char *err, size_t errlen);
void cluster_row_clear(struct cluster_row *c);

struct mismatch;
/* The cluster's example mismatch, owned by the caller (mismatch_clear).
 * 1, 0 no such cluster (err), -1 error. */
int clusterstore_example(PGconn *mono, int64_t id, struct mismatch *m,
    char *err, size_t errlen);

/*
 * Acknowledges every open member of cluster id with note, consuming their
 * rows as `ack ID` does (micro first, then the resolutions and mono's rows
 * in one transaction). *acked is how many were resolved. 0 done, 1 no
 * such cluster or no open member (err says which), -1 database error.
 */
int clusterstore_ack(PGconn *mono, PGconn *micro, int64_t id,
    const char *note, int64_t *acked, char *err, size_t errlen);

/*
 * Clusters of mismatches that are not stored (a dry run's): signatures
 * computed as the iterator gives them, at most limit clusters (the first
 * seen; l->more then counts the mismatches of the clusters left out,
 * whose signatures are not kept), id 0, example by correlation id.
 * 0, or -1 when the iterator failed.
 */
struct mismatch_iter;
int cluster_list_of(struct mismatch_iter *it, size_t limit,
    struct cluster_list *l);

/* Report sections: the clusters that open every report. */
void report_clusters_text(FILE *fp, const struct cluster_list *l);
void report_clusters_html(FILE *fp, const struct cluster_list *l);
/* The API's object: {"id", "kind", "fields", "count", "open", "example",
 * "firstSeen", "lastSeen", "signature"} (+ "inRun"). */
json_t *cluster_json(const struct cluster_row *c);
/* Writes "\"clusters\": [...]," (JSON members of the report object). */
void report_clusters_json(FILE *fp, const struct cluster_list *l);

#endif
