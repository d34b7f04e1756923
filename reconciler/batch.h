/*
 * batch: one batch of a run's writes as the merge fills it and the
 * writers take it (mark.c): pairs matched, open mismatches resolved as
 * late, new mismatches, one-sided candidates still to be looked up, and
 * the ids those lookups heal. A batch owns copies of its rows' text (the
 * merge's rows only live until the next row); batch_reset frees them and
 * keeps the vectors' memory for the next fill. spill.c writes batches to
 * disk and reads them back.
 */
#ifndef RECONCILER_BATCH_H
#define RECONCILER_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "reconciler/merge.h"

typedef unsigned char uuid_t16[16];	/* a correlation id, binary */

/* A copy of one row's mail, owned by the batch. */
struct owned {
	uuid_t16 cid;
	char *v[FIELD_COUNT];	/* one allocation, v[0] owns it */
	size_t len[FIELD_COUNT];
};

/* A new mismatch. */
struct pend {
	uuid_t16 cid;
	enum mismatch_kind kind;
	unsigned fields;
	struct owned mono, micro;	/* v[0] NULL: side absent */
};

#define BATCH_VEC(T) struct { T *v; size_t n, cap; }

struct idvec {
	uuid_t16 *v;
	size_t n, cap;
};

struct batch {
	long seq;
	struct idvec both;		/* matched: consume on both sides */
	BATCH_VEC(int64_t) resolve;		/* open mismatches resolved as late */
	BATCH_VEC(struct pend) mms;		/* new mismatches */
	BATCH_VEC(struct owned) cand_mono, cand_micro;
	struct idvec heal_mono, heal_micro;
	size_t bytes;
};

/* Appends one element to a vector, growing it; the new element. */
#define BATCH_PUSH(vec) (((vec).n == (vec).cap ? \
	((vec).cap = (vec).cap ? (vec).cap * 2 : 256, \
	 (vec).v = xrealloc((vec).v, (vec).cap * sizeof(*(vec).v))) : 0), \
	&(vec).v[(vec).n++])

/* o becomes a copy of r's id and mail (one allocation, o->v[0]). */
void batch_own(struct owned *o, const struct merge_row *r);

/* Empties b: frees the rows it owns, keeps its vectors for the next fill. */
void batch_reset(struct batch *b);
/* Frees everything b holds (b itself is the caller's). */
void batch_free(struct batch *b);

#endif
