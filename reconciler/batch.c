/*
 * batch: see batch.h.
 */
#include "reconciler/batch.h"

#include <stdlib.h>
#include <string.h>

void
batch_own(struct owned *o, const struct merge_row *r)
{
	size_t total = 0;
	char *p;
	int f;

	memcpy(o->cid, r->cid, 16);
	for (f = 0; f < FIELD_COUNT; f++)
		total += r->mail.len[f] + 1;
	p = xmalloc(total);
	for (f = 0; f < FIELD_COUNT; f++) {
		o->v[f] = p;
		o->len[f] = r->mail.len[f];
		memcpy(p, r->mail.v[f], r->mail.len[f]);
		p[r->mail.len[f]] = '\0';
		p += r->mail.len[f] + 1;
	}
}

void
batch_reset(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->mms.n; i++) {
		free(b->mms.v[i].mono.v[0]);
		free(b->mms.v[i].micro.v[0]);
	}
	for (i = 0; i < b->cand_mono.n; i++)
		free(b->cand_mono.v[i].v[0]);
	for (i = 0; i < b->cand_micro.n; i++)
		free(b->cand_micro.v[i].v[0]);
	b->both.n = b->resolve.n = b->mms.n = 0;
	b->cand_mono.n = b->cand_micro.n = 0;
	b->heal_mono.n = b->heal_micro.n = 0;
	b->bytes = 0;
}

void
batch_free(struct batch *b)
{
	batch_reset(b);
	free(b->both.v);
	free(b->resolve.v);
	free(b->mms.v);
	free(b->cand_mono.v);
	free(b->cand_micro.v);
	free(b->heal_mono.v);
	free(b->heal_micro.v);
}
