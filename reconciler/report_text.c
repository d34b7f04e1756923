/*
 * report_text: for people and cron mail. The summary comes first, then
 * one block per mismatch with each differing field of both sides quoted
 * on one line (control characters escaped). Every value printed, down to
 * names and stamps read back from the database, goes through escape.h:
 * a stored value cannot start a line of its own or send a terminal
 * control sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "reconciler/clusterstore.h"
#include "reconciler/escape.h"
#include "reconciler/report.h"

static const char *const field_names[3] = { "destination", "subject", "body" };

/* s as a word of the line (escape_word), written after prefix. */
static void
word(FILE *fp, const char *prefix, const char *s)
{
	char *e = escape_word(s);

	fprintf(fp, "%s%s", prefix, e);
	free(e);
}

static void
summary(FILE *fp, const struct run_summary *s)
{
	size_t i;

	if (s->dry_run) {
		fprintf(fp, "reconciliation dry run (nothing written)");
	} else {
		fprintf(fp, "reconciliation run %lld", (long long)s->id);
		word(fp, " (", s->status ? s->status : "?");
		fputc(')', fp);
	}
	fprintf(fp, ", shard %d/%d, grace %lds\n", s->shard_k, s->shard_n,
	    s->grace);
	if (s->started_at) {
		word(fp, "started ", s->started_at);
		word(fp, ", finished ", s->finished_at);
		word(fp, ", cutoff ", s->cutoff);
		fputc('\n', fp);
	}
	for (i = 0; i < run_ncount_fields; i++)
		fprintf(fp, "%s%s %lld", i ? ", " : "",
		    run_count_fields[i].name,
		    (long long)*run_count((struct run_counts *)&s->c, i));
	fputc('\n', fp);
	if (s->rules_file) {
		char *e = escape_text(s->rules_file);
		fprintf(fp, "rules file %s\n", e);
		free(e);
	}
	if (s->nrules > 0) {
		fprintf(fp, "rules (differences absorbed):");
		for (i = 0; i < s->nrules; i++) {
			word(fp, " ", s->rules[i].name);
			fprintf(fp, " %lld", (long long)s->rules[i].count);
		}
		fputc('\n', fp);
	}
	if (s->error) {
		char *e = escape_text(s->error);
		fprintf(fp, "error: %s\n", e);
		free(e);
	}
}

static int
differs(const struct mismatch *m, int f)
{
	const char *p = m->fields ? strstr(m->fields, field_names[f]) : NULL;

	return p != NULL;
}

int
report_text(FILE *fp, const struct run_summary *s, struct mismatch_iter *it)
{
	struct mismatch m;
	int rc, f, n = 0;
	char *a, *b;

	if (s != NULL)
		summary(fp, s);
	if (it->clusters != NULL)
		report_clusters_text(fp, it->clusters);
	while ((rc = it->next(it->ctx, &m)) == 1) {
		if (n++ == 0 && s != NULL)
			fputc('\n', fp);
		/* A dry run's mismatches were never stored: no id. */
		if (m.id > 0)
			fprintf(fp, "mismatch %lld", (long long)m.id);
		else
			fprintf(fp, "mismatch -");
		word(fp, " ", m.cid);
		word(fp, " ", m.kind);
		if (m.fields && m.fields[0]) {
			word(fp, " [", m.fields);
			fputc(']', fp);
		}
		if (m.cluster_id)
			fprintf(fp, " cluster %lld", (long long)m.cluster_id);
		if (m.resolved_at) {
			word(fp, " resolved ", m.resolved_at);
			word(fp, " (", m.resolution ? m.resolution : "?");
			fputc(')', fp);
		}
		fputc('\n', fp);
		if (m.mono[0] == NULL || m.micro[0] == NULL) {
			/* Missing: the side that exists, whole. */
			const char *side = m.mono[0] ? "mono " : "micro";
			char *const *v = m.mono[0] ? m.mono : m.micro;
			for (f = 0; f < 3 && v[0] != NULL; f++) {
				a = escape_text(v[f]);
				fprintf(fp, "  %s %-11s %s\n", side, field_names[f], a);
				free(a);
			}
			fprintf(fp, "  %s (absent)\n", m.mono[0] ? "micro" : "mono ");
		}
		for (f = 0; f < 3 && m.mono[0] && m.micro[0]; f++) {
			if (!differs(&m, f))
				continue;
			a = escape_text(m.mono[f]);
			b = escape_text(m.micro[f]);
			fprintf(fp, "  mono  %-11s %s\n", field_names[f], a);
			fprintf(fp, "  micro %-11s %s\n", field_names[f], b);
			free(a);
			free(b);
		}
		if (m.note) {
			a = escape_text(m.note);
			fprintf(fp, "  note: %s\n", a);
			free(a);
		}
	}
	return rc < 0 ? -1 : 0;
}
