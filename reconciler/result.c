/*
 * result: see result.h.
 */
#include "reconciler/result.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define COUNT(n) { #n, offsetof(struct run_counts, n) }
const struct count_field run_count_fields[] = {
	COUNT(mono_rows), COUNT(micro_rows), COUNT(matched), COUNT(ignored),
	COUNT(healed), COUNT(late), COUNT(deferred), COUNT(skipped_open),
	COUNT(content), COUNT(missing_in_micro), COUNT(missing_in_mono),
	COUNT(new_mismatches),
};
#undef COUNT
const size_t run_ncount_fields = nitems(run_count_fields);

int64_t *
run_count(struct run_counts *c, size_t i)
{
	return (int64_t *)(void *)((char *)c + run_count_fields[i].offset);
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
