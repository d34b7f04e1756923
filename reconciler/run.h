/*
 * run: one reconciliation, from connecting and locking to the report
 * (`reconciler run`, the default command). Returns the process exit code
 * (cli.h). The other commands are cmd_*.c (cmd.h).
 */
#ifndef RECONCILER_RUN_H
#define RECONCILER_RUN_H

#include "reconciler/cli.h"
#include "reconciler/rules.h"

int run_reconcile(const struct cli *c, const struct rules *rules);

#endif
