/*
 * merge: see merge.h. UUIDs compare as 16 bytes with memcmp, which is
 * PostgreSQL's own uuid order, so the streams' ORDER BY and the merge agree.
 */
#include "reconciler/merge.h"

#include <stdio.h>
#include <string.h>

const char *const mismatch_kind_names[KIND_COUNT] = {
	"content", "missing_in_micro", "missing_in_mono"
};

enum mismatch_kind
mismatch_kind_parse(const char *s, size_t len)
{
	int k;

	for (k = 0; k < KIND_COUNT; k++)
		if (strlen(mismatch_kind_names[k]) == len &&
		    memcmp(mismatch_kind_names[k], s, len) == 0)
			return (enum mismatch_kind)k;
	return KIND_COUNT;
}

void
merge_classify(const struct merge_row *mono, const struct merge_row *micro,
    const struct merge_open *open, const struct rules *rules, uint64_t *hits,
    struct verdict *out)
{
	memset(out, 0, sizeof(*out));
	if (open != NULL) {
		/* An open content mismatch stays until acknowledged; an open
		 * "missing" one is compared again once both sides are here. */
		if (mono == NULL && micro == NULL) {
			out->kind = VERDICT_NOTHING;
			return;
		}
		if (open->kind == KIND_CONTENT || mono == NULL || micro == NULL) {
			out->kind = VERDICT_SKIP_OPEN;
			return;
		}
		out->resolve_id = open->id;
	}
	if (mono == NULL) {
		out->kind = VERDICT_ONLY_MICRO;
		return;
	}
	if (micro == NULL) {
		out->kind = VERDICT_ONLY_MONO;
		return;
	}
	out->fields = rules_compare(rules, &mono->mail, &micro->mail, hits,
	    &out->ignored);
	out->kind = out->fields ? VERDICT_CONTENT : VERDICT_MATCH;
	if (out->fields)
		out->ignored = 0;
}

struct cursor {
	const unsigned char *cid;	/* NULL at the end */
	unsigned char last[16];
	int started;
};

/* Records a new head and checks the stream only moves forward. */
static int
advance(struct cursor *c, int rc, const unsigned char *cid, const char *what,
    char *err, size_t errlen)
{
	if (rc < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s stream failed", what);
		return -1;
	}
	if (rc == 0) {
		c->cid = NULL;
		return 0;
	}
	if (c->started && memcmp(cid, c->last, 16) <= 0) {
		snprintf(err, errlen, "%s stream is not in strict correlation-id "
		    "order", what);
		return -1;
	}
	memcpy(c->last, cid, 16);
	c->started = 1;
	c->cid = cid;
	return 0;
}

static const unsigned char *
lowest(const unsigned char *a, const unsigned char *b)
{
	if (a == NULL)
		return b;
	if (b == NULL)
		return a;
	return memcmp(a, b, 16) <= 0 ? a : b;
}

int
merge_run(const struct merge_rows *mono, const struct merge_rows *micro,
    const struct merge_opens *open, const struct rules *rules, uint64_t *hits,
    merge_sink sink, void *sink_ctx, char *err, size_t errlen)
{
	struct merge_row a, b;
	struct merge_open o;
	struct cursor ca = { 0 }, cb = { 0 }, co = { 0 };
	const unsigned char *key;
	unsigned char k[16];
	struct verdict v;
	int take_a, take_b, take_o, rc;

	err[0] = '\0';
	if (advance(&ca, mono->next(mono->ctx, &a), a.cid, "mono", err,
	    errlen) == -1 ||
	    advance(&cb, micro->next(micro->ctx, &b), b.cid, "micro", err,
	    errlen) == -1 ||
	    advance(&co, open->next(open->ctx, &o), o.cid, "open-mismatch", err,
	    errlen) == -1)
		return -1;
	for (;;) {
		key = lowest(lowest(ca.cid, cb.cid), co.cid);
		if (key == NULL)
			return 0;
		memcpy(k, key, 16);
		take_a = ca.cid != NULL && memcmp(ca.cid, k, 16) == 0;
		take_b = cb.cid != NULL && memcmp(cb.cid, k, 16) == 0;
		take_o = co.cid != NULL && memcmp(co.cid, k, 16) == 0;
		merge_classify(take_a ? &a : NULL, take_b ? &b : NULL,
		    take_o ? &o : NULL, rules, hits, &v);
		if ((rc = sink(sink_ctx, take_a ? &a : NULL, take_b ? &b : NULL,
		    take_o ? &o : NULL, &v)) != 0)
			return rc;
		if (take_a && advance(&ca, mono->next(mono->ctx, &a), a.cid,
		    "mono", err, errlen) == -1)
			return -1;
		if (take_b && advance(&cb, micro->next(micro->ctx, &b), b.cid,
		    "micro", err, errlen) == -1)
			return -1;
		if (take_o && advance(&co, open->next(open->ctx, &o), o.cid,
		    "open-mismatch", err, errlen) == -1)
			return -1;
	}
}
