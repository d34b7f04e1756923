/*
 * report: what a run found, written as text, JSON, CSV or HTML (fields
 * documented in docs/RECONCILER.md). Writers stream: a run with a million
 * mismatches is written one mismatch at a time from an iterator, never
 * loaded whole.
 */
#ifndef RECONCILER_REPORT_H
#define RECONCILER_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct run_counts {
	int64_t mono_rows, micro_rows;
	int64_t matched, ignored, healed, late, deferred, skipped_open;
	int64_t content, missing_in_micro, missing_in_mono, new_mismatches;
};

/* The counters by name, in report order (also the reconciliation_run
 * column names). */
struct count_field {
	const char *name;
	size_t offset;
};
extern const struct count_field report_count_fields[];
extern const size_t report_ncount_fields;
int64_t *report_count(struct run_counts *c, size_t i);

struct rule_hit {
	char *name;
	int64_t count;
};

struct run_summary {
	int64_t id;		/* 0 for a dry run */
	int dry_run;
	char *status, *started_at, *finished_at, *cutoff, *rules_file, *error;
	long grace;
	int shard_k, shard_n;
	struct run_counts c;
	struct rule_hit *rules;
	size_t nrules;
};

void run_summary_clear(struct run_summary *s);

struct mismatch {
	int64_t id, run_id;	/* 0 in a dry run */
	char *cid, *kind, *fields;	/* fields: "destination,body" */
	char *mono[3], *micro[3];	/* by enum mail_field; NULL: side absent */
	char *found_at, *resolved_at, *resolution, *note;	/* NULL when unset */
	int64_t cluster_id;	/* 0: none yet (a dry run's, or not clustered) */
};

void mismatch_clear(struct mismatch *m);

struct cluster_list;

/* 1 with *m filled (owned by the iterator until the next call), 0 at the
 * end, -1 on error (the iterator's owner knows why). clusters, when set,
 * are the clusters of what is listed: the report opens with them
 * (clusterstore.h). */
struct mismatch_iter {
	int (*next)(void *ctx, struct mismatch *m);
	void *ctx;
	const struct cluster_list *clusters;
};

enum report_format { REPORT_TEXT, REPORT_JSON, REPORT_CSV, REPORT_HTML };
/* -1 when s names no format. */
int report_format_parse(const char *s);

/*
 * Writes a report: the run summary (NULL for a bare list of mismatches)
 * and every mismatch the iterator gives. 0, or -1 with err (write or
 * iterator failure).
 */
int report_write(FILE *fp, enum report_format f, const struct run_summary *s,
    struct mismatch_iter *it, char *err, size_t errlen);

int report_text(FILE *fp, const struct run_summary *s, struct mismatch_iter *it);
int report_json(FILE *fp, const struct run_summary *s, struct mismatch_iter *it);
int report_csv(FILE *fp, const struct run_summary *s, struct mismatch_iter *it);
int report_html(FILE *fp, const struct run_summary *s, struct mismatch_iter *it);

/* For pages built elsewhere (the console): the report's inline CSS, and
 * one mismatch's section with its side-by-side diff. */
const char *report_html_style(void);
void report_html_mismatch(FILE *fp, const struct mismatch *m);

#endif
