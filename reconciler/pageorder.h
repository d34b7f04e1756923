/*
 * pageorder: the ids of one side's matched rows, handed back in the order
 * of the pages that hold them, so that the consumes of a run go through a
 * table region by region instead of all over it.
 *
 * The merge sees the rows in correlation-id order, which for random UUIDs
 * is no order at all on disk. Consumed in that order, every batch of a
 * 10M-row table (600,000 pages, 4.8 GB) touched pages all over it: each
 * update read a page that had left shared_buffers and evicted a dirty one,
 * about 13,000 rows a second a side, and 10M pairs took 34x the time of
 * 1M (docs/BENCHMARKS.md). Here each row's id goes with its ctid (the
 * stream reads it) into the region of 8,192 pages (64 MiB) that holds it;
 * the regions are handed back one after the other, so the pages a batch
 * touches stay in the server's cache for the batches that follow.
 *
 * Within a region the rows come back by rank, then page: the first row
 * of every page, then the second, and so on, and a batch never holds two
 * rows of one page. A consume stays on its page (HOT) only if
 * the page has room, and a packed page gets room by pruning the versions
 * that committed batches left there: two rows of one page in the same
 * batch would leave the second no room, while one row per page per batch
 * leaves only the first consume of each page without it.
 *
 * The records wait in an unlinked temporary file (spill_tmpfile), 24
 * bytes a row, written per region in chunks; memory holds a chunk per
 * region and the part of one region being handed out.
 */
#ifndef RECONCILER_PAGEORDER_H
#define RECONCILER_PAGEORDER_H

#include <stddef.h>
#include <stdint.h>

struct pageorder;

struct pageorder *pageorder_new(void);

/* Adds the row with id cid at page blk, line pointer off. 0, or -1 with
 * err when the file cannot be made or written. */
int pageorder_add(struct pageorder *po, const unsigned char cid[16],
    uint32_t blk, uint16_t off, char *err, size_t errlen);

/* Rows added so far. */
long long pageorder_count(const struct pageorder *po);

/*
 * Once every row is added: the next batch, at most max ids (16 bytes
 * each) into ids, no two of the same page. 1 with *n > 0, 0 when every
 * row was handed out, -1 with err on a read error.
 */
int pageorder_next(struct pageorder *po, unsigned char (*ids)[16],
    size_t max, size_t *n, char *err, size_t errlen);

void pageorder_free(struct pageorder *po);

#endif
