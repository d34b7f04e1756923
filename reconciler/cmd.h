/*
 * cmd: the reconciler's commands, one file each like tmux's cmd-*.c
 * (cmd_report.c, cmd_mismatches.c, cmd_ack.c, cmd_clusters.c,
 * cmd_rule.c; the run itself is run.c, purge purge.c, serve serve.c).
 * Each takes the parsed command line and returns the process exit code
 * (cli.h). cmd.c holds what more than one of them does.
 */
#ifndef RECONCILER_CMD_H
#define RECONCILER_CMD_H

#include <stdint.h>

#include <libpq-fe.h>

#include "reconciler/cli.h"
#include "reconciler/result.h"
#include "reconciler/runstore.h"

int cmd_report(const struct cli *c);
int cmd_mismatches(const struct cli *c);
int cmd_ack(const struct cli *c);	/* ACK_ID, or --cluster ID */
int cmd_clusters(const struct cli *c);
int cmd_rule(const struct cli *c);

/* A connection to postgresMono, or NULL with the reason logged. */
PGconn *cmd_connect_mono(const struct cli *c);

/*
 * Writes, in c->format, the report of what f and id select (a run, the
 * open or all mismatches, one cluster's), opening with its clusters; s
 * is the run's summary or NULL. The exit code: EXIT_USAGE for a cluster
 * that does not exist, EXIT_DB when reading or writing failed.
 */
int cmd_list(const struct cli *c, PGconn *mono, const struct run_summary *s,
    enum runstore_filter f, int64_t id);

#endif
