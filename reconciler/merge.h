/*
 * merge: the heart of a run, free of any database. Three streams sorted
 * by correlation id (unconsumed mono rows, unconsumed micro rows, open
 * mismatches) are walked together; each correlation id seen gets one
 * verdict from the outcome table of docs/DESIGN.md. Memory is one row per
 * stream, whatever the table sizes.
 *
 * A row present on one side only is a *candidate*: whether it is missing,
 * healed (its partner was consumed by a run that crashed between its two
 * marks) or deferred (its partner is still in its grace period) needs a
 * look at the other database, which the caller (mark.c) does in batches.
 */
#ifndef RECONCILER_MERGE_H
#define RECONCILER_MERGE_H

#include <stdint.h>

#include "reconciler/rules.h"

enum mismatch_kind { KIND_CONTENT, KIND_MISSING_IN_MICRO, KIND_MISSING_IN_MONO,
	KIND_COUNT };
extern const char *const mismatch_kind_names[KIND_COUNT];
/* KIND_COUNT when s names no kind. */
enum mismatch_kind mismatch_kind_parse(const char *s, size_t len);

struct merge_row {
	unsigned char cid[16];
	struct mail mail;
	/* Where the row is (its ctid), for the consumes' page order; 0/0
	 * where the row did not come from a stream. */
	uint32_t blk;
	uint16_t off;
};

struct merge_open {
	unsigned char cid[16];
	int64_t id;
	enum mismatch_kind kind;
};

enum verdict_kind {
	VERDICT_MATCH,		/* equal: consume both */
	VERDICT_CONTENT,	/* new content mismatch (fields) */
	VERDICT_ONLY_MONO,	/* candidate: look the partner up in micro */
	VERDICT_ONLY_MICRO,	/* candidate: look the partner up in mono */
	VERDICT_SKIP_OPEN,	/* already in an open mismatch: not reported again */
	VERDICT_NOTHING,	/* an open mismatch with no unconsumed row left */
};

struct verdict {
	enum verdict_kind kind;
	unsigned fields;	/* VERDICT_CONTENT: FIELD_BIT mask */
	int ignored;		/* VERDICT_MATCH only thanks to a rule */
	int64_t resolve_id;	/* open "missing" mismatch this pair resolves as late, or 0 */
};

/*
 * Classifies what was found under one correlation id; mono, micro and open
 * may each be NULL. hits (rules_count entries) counts rule absorptions.
 */
void merge_classify(const struct merge_row *mono, const struct merge_row *micro,
    const struct merge_open *open, const struct rules *rules, uint64_t *hits,
    struct verdict *out);

/* A stream: next() returns 1 with a row (valid until the next call), 0 at
 * the clean end, -1 on error. */
struct merge_rows {
	int (*next)(void *ctx, struct merge_row *row);
	void *ctx;
};
struct merge_opens {
	int (*next)(void *ctx, struct merge_open *open);
	void *ctx;
};

/* Called once per correlation id; a non-zero return stops the merge. */
typedef int (*merge_sink)(void *ctx, const struct merge_row *mono,
    const struct merge_row *micro, const struct merge_open *open,
    const struct verdict *v);

/*
 * Runs the merge to the end of all three streams. Returns 0, -1 when a
 * stream failed or went out of order (err says which), or the sink's
 * non-zero value.
 */
int merge_run(const struct merge_rows *mono, const struct merge_rows *micro,
    const struct merge_opens *open, const struct rules *rules, uint64_t *hits,
    merge_sink sink, void *sink_ctx, char *err, size_t errlen);

#endif
