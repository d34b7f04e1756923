/*
 * spill: the file where a run's full batches wait for the writers (mark.c
 * says why the marks wait for the reads). An unlinked temporary file
 * under TMPDIR, made at the first batch: the merge thread appends, the
 * mono writer reads back in order; the file is gone when the run ends.
 * A record is a batch in this process's own memory layout (sizes, enums
 * and ids as they are in memory): no other process ever reads it.
 *
 * Not spool.c: that one keeps a dry run's mismatches for its report, in
 * the report's records; this one keeps the writers' batches.
 */
#ifndef RECONCILER_SPILL_H
#define RECONCILER_SPILL_H

#include <stddef.h>
#include <sys/types.h>

#include "reconciler/batch.h"

/* write_off is the appender's, read_off the reader's; the caller keeps
 * the reader behind the appender (mark.c counts whole batches). */
struct spill {
	int fd;			/* -1 until the first batch */
	off_t write_off, read_off;
};

void spill_init(struct spill *s);

/* A new unlinked temporary file under TMPDIR (else /tmp), read-write, its
 * name starting with what: the descriptor, or -1 with err. */
int spill_tmpfile(const char *what, char *err, size_t errlen);

/* All of len bytes at offset at of such a file, across short transfers
 * and EINTR: 0, or -1 with err. */
int spill_pwrite(int fd, const void *p, size_t len, off_t at, char *err,
    size_t errlen);
int spill_pread(int fd, void *p, size_t len, off_t at, char *err,
    size_t errlen);

/* Appends b. 0, or -1 with err (the file cannot be made or written). */
int spill_append(struct spill *s, const struct batch *b, char *err,
    size_t errlen);

/* Reads the oldest batch not read yet into b (reset). A read error is
 * fatal: the file is this process's own. */
void spill_read(struct spill *s, struct batch *b);

/* Drops every batch appended so far without reading it. */
void spill_skip(struct spill *s);

void spill_close(struct spill *s);

#endif
