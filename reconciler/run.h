/*
 * run: one reconciliation, from connecting and locking to the report.
 * Also the other commands (report, mismatches, ack), which are thin.
 * Each returns the process exit code (cli.h).
 */
#ifndef RECONCILER_RUN_H
#define RECONCILER_RUN_H

#include "reconciler/cli.h"
#include "reconciler/rules.h"

int run_reconcile(const struct cli *c, const struct rules *rules);
int run_report(const struct cli *c);
int run_mismatches(const struct cli *c);
int run_ack(const struct cli *c);

/* cmd_cluster.c: clusters, ack --cluster, rule --cluster. */
int run_clusters(const struct cli *c);
int run_ack_cluster(const struct cli *c);
int run_rule(const struct cli *c);

#endif
