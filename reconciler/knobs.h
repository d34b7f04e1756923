/*
 * knobs: the run's test and tuning knobs, environment variables only
 * (not in --help; docs/RECONCILER.md, "Testing hooks"). The integration
 * tests use them to make small batches, cut the reads into tiny COPYs,
 * force the spill file and kill the run at a chosen batch and stage.
 * Read once, with the rest of the configuration; a bad value is a
 * configuration error (exit 2) naming the variable.
 */
#ifndef RECONCILER_KNOBS_H
#define RECONCILER_KNOBS_H

#include <stddef.h>

struct knobs {
	long batch_rows;	/* RECONCILER_BATCH_ROWS: pairs per batch */
	long read_chunk;	/* RECONCILER_READ_CHUNK: rows per COPY, 0: one */
	int spill_all;		/* RECONCILER_SPILL_ALL: every batch to the file */
	int overlap;		/* RECONCILER_OVERLAP: mark while reading */
	long crash_batch;	/* RECONCILER_CRASH_AT=B[:S]: _exit(99) at */
	char crash_stage;	/* batch B (0: never), stage S ('a'|'b'|'c') */
};

/* Defaults, then the environment. 0, or -1 with err naming the variable. */
int knobs_load(struct knobs *k, char *err, size_t errlen);

#endif
