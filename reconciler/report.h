/*
 * report: what a run found, written as text, JSON, CSV or HTML (fields
 * documented in docs/RECONCILER.md). Writers stream: a run with a million
 * mismatches is written one mismatch at a time from an iterator, never
 * loaded whole.
 */
#ifndef RECONCILER_REPORT_H
#define RECONCILER_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "reconciler/result.h"

/* Clusters a report opens with, at most (the largest). */
#define REPORT_CLUSTERS 200

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
