/*
 * spool: mismatches of a dry run, kept in an unlinked temporary file
 * rather than memory (a dry run over a broken day may find millions), and
 * read back for the report once the summary is known.
 */
#ifndef RECONCILER_SPOOL_H
#define RECONCILER_SPOOL_H

#include <stdio.h>

#include "reconciler/result.h"

/* 0, or -1 on a write error. */
int spool_write(FILE *fp, const struct mismatch *m);

/* An iterator over a spool from its start; free with spool_iter_free. */
void spool_iter_init(struct mismatch_iter *it, FILE *fp);
void spool_iter_free(struct mismatch_iter *it);

#endif
