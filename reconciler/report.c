/*
 * report: the shared parts of the report writers (see report.h) and the
 * dispatch by format.
 */
#include "reconciler/report.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define COUNT(n) { #n, offsetof(struct run_counts, n) }
const struct count_field report_count_fields[] = {
	COUNT(mono_rows), COUNT(micro_rows), COUNT(matched), COUNT(ignored),
	COUNT(healed), COUNT(late), COUNT(deferred), COUNT(skipped_open),
	COUNT(content), COUNT(missing_in_micro), COUNT(missing_in_mono),
	COUNT(new_mismatches),
};
#undef COUNT
const size_t report_ncount_fields = nitems(report_count_fields);

int64_t *
report_count(struct run_counts *c, size_t i)
{
	return (int64_t *)(void *)((char *)c + report_count_fields[i].offset);
}

void
run_summary_clear(struct run_summary *s)
{
	size_t i;

	free(s->status);
	free(s->started_at);
	free(s->finished_at);
	free(s->cutoff);
	free(s->rules_file);
	free(s->error);
	for (i = 0; i < s->nrules; i++)
		free(s->rules[i].name);
	free(s->rules);
	memset(s, 0, sizeof(*s));
}

void
mismatch_clear(struct mismatch *m)
{
	int f;

	free(m->cid);
	free(m->kind);
	free(m->fields);
	for (f = 0; f < 3; f++) {
		free(m->mono[f]);
		free(m->micro[f]);
	}
	free(m->found_at);
	free(m->resolved_at);
	free(m->resolution);
	free(m->note);
	memset(m, 0, sizeof(*m));
}

int
report_format_parse(const char *s)
{
	static const char *const names[] = { "text", "json", "csv", "html" };
	size_t i;

	for (i = 0; i < nitems(names); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

int
report_write(FILE *fp, enum report_format f, const struct run_summary *s,
    struct mismatch_iter *it, char *err, size_t errlen)
{
	int rc = -1;

	switch (f) {
	case REPORT_TEXT:
		rc = report_text(fp, s, it);
		break;
	case REPORT_JSON:
		rc = report_json(fp, s, it);
		break;
	case REPORT_CSV:
		rc = report_csv(fp, s, it);
		break;
	case REPORT_HTML:
		rc = report_html(fp, s, it);
		break;
	}
	if (fflush(fp) != 0 || ferror(fp)) {
		snprintf(err, errlen, "writing the report failed");
		return -1;
	}
	if (rc == -1)
		snprintf(err, errlen, "reading mismatches failed");
	return rc;
}
