/*
 * pageorder: see pageorder.h. Each region keeps one chunk of records in
 * memory; a full chunk is appended to the file and its offset kept. A
 * region is read back in parts of at most LOAD_MAX records, in the order
 * they were added (8,192 pages of the benchmark's sent_mail hold about
 * 140,000 rows: five parts), each part sorted by the rank of a row
 * among the part's rows of its page, then page.
 * A part stays within its region's 64 MiB, which is what keeps the pages
 * in the server's cache; the bound keeps the run's memory flat
 * (test_reconciler.Memory).
 */
#include "reconciler/pageorder.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/util.h"
#include "reconciler/spill.h"

#define REGION_SHIFT 13		/* 8,192 pages, 64 MiB of table */
#define CHUNK_RECS 512		/* 12 KiB */
#define LOAD_MAX (64u * CHUNK_RECS)	/* 768 KiB sorted at once */

struct rec {
	unsigned char cid[16];
	uint32_t blk;
	uint16_t off;
	uint16_t rank;		/* among the part's rows of its page, from 0 */
};

struct region {
	struct rec *buf;	/* the chunk being filled */
	size_t nbuf;
	off_t *chunks;		/* file offsets of the full ones */
	size_t nchunks, capchunks;
};

struct pageorder {
	int fd;
	off_t end;
	struct region *r;
	size_t nr;
	long long count;
	/* Handing out: region cur, its chunks before next_chunk are loaded
	 * (and its buf once buf_loaded); load[pos..nload) is what is left
	 * of the part in hand. */
	size_t cur, next_chunk;
	int buf_loaded;
	struct rec *load;
	size_t nload, pos;
};

struct pageorder *
pageorder_new(void)
{
	struct pageorder *po = xcalloc(1, sizeof(*po));

	po->fd = -1;
	return po;
}

int
pageorder_add(struct pageorder *po, const unsigned char cid[16],
    uint32_t blk, uint16_t off, char *err, size_t errlen)
{
	size_t k = blk >> REGION_SHIFT;
	struct region *g;
	struct rec *rc;

	if (k >= po->nr) {
		size_t n = k + 1;
		po->r = xrealloc(po->r, n * sizeof(*po->r));
		memset(po->r + po->nr, 0, (n - po->nr) * sizeof(*po->r));
		po->nr = n;
	}
	g = &po->r[k];
	if (g->buf == NULL)
		g->buf = xmalloc(CHUNK_RECS * sizeof(*g->buf));
	rc = &g->buf[g->nbuf++];
	memcpy(rc->cid, cid, 16);
	rc->blk = blk;
	rc->off = off;
	rc->rank = 0;
	po->count++;
	if (g->nbuf < CHUNK_RECS)
		return 0;
	if (po->fd == -1 &&
	    (po->fd = spill_tmpfile("reconciler-pages", err, errlen)) == -1)
		return -1;
	if (spill_pwrite(po->fd, g->buf, CHUNK_RECS * sizeof(*g->buf), po->end,
	    err, errlen) == -1)
		return -1;
	if (g->nchunks == g->capchunks) {
		g->capchunks = g->capchunks ? 2 * g->capchunks : 16;
		g->chunks = xrealloc(g->chunks,
		    g->capchunks * sizeof(*g->chunks));
	}
	g->chunks[g->nchunks++] = po->end;
	po->end += (off_t)(CHUNK_RECS * sizeof(*g->buf));
	g->nbuf = 0;
	return 0;
}

long long
pageorder_count(const struct pageorder *po)
{
	return po->count;
}

static int
by_place(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return 0;
}

static int
by_rank(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	return 0;
}

/* Orders a part for pageorder_next: the first of its rows on each page,
 * page by page, then the second of each, and so on. */
static void
sort_part(struct rec *v, size_t n)
{
	size_t i;

	qsort(v, n, sizeof(*v), by_place);
	for (i = 0; i < n; i++)
		v[i].rank = (uint16_t)(i > 0 && v[i].blk == v[i - 1].blk ?
		    v[i - 1].rank + 1 : 0);
	qsort(v, n, sizeof(*v), by_rank);
}

/* The next part of the current region into load (sorted); moves to the
 * next region when this one is done. 1, 0 at the end, -1 on error. */
static int
load_part(struct pageorder *po, char *err, size_t errlen)
{
	while (po->cur < po->nr) {
		struct region *g = &po->r[po->cur];
		size_t n = 0;

		if (po->load == NULL)
			po->load = xmalloc(LOAD_MAX * sizeof(*po->load));
		while (po->next_chunk < g->nchunks && n + CHUNK_RECS <= LOAD_MAX) {
			if (spill_pread(po->fd, po->load + n, CHUNK_RECS *
			    sizeof(*po->load), g->chunks[po->next_chunk], err,
			    errlen) == -1)
				return -1;
			po->next_chunk++;
			n += CHUNK_RECS;
		}
		if (po->next_chunk == g->nchunks && !po->buf_loaded &&
		    n + g->nbuf <= LOAD_MAX) {
			if (g->nbuf > 0)
				memcpy(po->load + n, g->buf,
				    g->nbuf * sizeof(*g->buf));
			n += g->nbuf;
			po->buf_loaded = 1;
		}
		if (n > 0) {
			sort_part(po->load, n);
			po->nload = n;
			po->pos = 0;
			return 1;
		}
		po->cur++;
		po->next_chunk = 0;
		po->buf_loaded = 0;
	}
	return 0;
}

/*
 * A batch is a run of the sorted part: rows of one rank on pages going
 * up, and then, while the pages stay below the batch's first page, rows
 * of the next rank (which start again at the region's first pages). So no
 * page appears twice in it.
 */
int
pageorder_next(struct pageorder *po, unsigned char (*ids)[16], size_t max,
    size_t *n, char *err, size_t errlen)
{
	uint32_t first_blk = 0;
	uint16_t rank = 0;
	int slices = 0, rc;

	*n = 0;
	if (po->pos == po->nload && (rc = load_part(po, err, errlen)) != 1)
		return rc;
	while (po->pos < po->nload && *n < max) {
		const struct rec *r = &po->load[po->pos];

		if (slices == 0) {
			first_blk = r->blk;
			rank = r->rank;
			slices = 1;
		} else if (r->rank != rank) {
			if (slices == 2 || r->blk >= first_blk)
				break;
			rank = r->rank;
			slices = 2;
		} else if (slices == 2 && r->blk >= first_blk) {
			break;
		}
		memcpy(ids[(*n)++], r->cid, 16);
		po->pos++;
	}
	return 1;
}

void
pageorder_free(struct pageorder *po)
{
	size_t k;

	if (po == NULL)
		return;
	for (k = 0; k < po->nr; k++) {
		free(po->r[k].buf);
		free(po->r[k].chunks);
	}
	free(po->r);
	free(po->load);
	if (po->fd != -1)
		close(po->fd);
	free(po);
}
