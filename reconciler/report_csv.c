/*
 * report_csv: one header line, then exactly one RFC 4180 record per
 * mismatch (bodies with CRLF stay inside quotes). Columns are listed in
 * docs/RECONCILER.md.
 */
#include <stdlib.h>

#include "reconciler/escape.h"
#include "reconciler/report.h"

static void
field(FILE *fp, const char *v, int last)
{
	char *e = escape_csv(v);

	fputs(e, fp);
	fputs(last ? "\r\n" : ",", fp);
	free(e);
}

int
report_csv(FILE *fp, const struct run_summary *s, struct mismatch_iter *it)
{
	struct mismatch m;
	char id[24], run[24];
	int rc, f;

	(void)s;
	fputs("id,run_id,correlation_id,kind,fields,mono_destination,"
	    "micro_destination,mono_subject,micro_subject,mono_body,micro_body,"
	    "found_at,resolved_at,resolution,note,cluster_id\r\n", fp);
	while ((rc = it->next(it->ctx, &m)) == 1) {
		snprintf(id, sizeof(id), "%lld", (long long)m.id);
		snprintf(run, sizeof(run), "%lld", (long long)m.run_id);
		field(fp, m.id ? id : NULL, 0);
		field(fp, m.run_id ? run : NULL, 0);
		field(fp, m.cid, 0);
		field(fp, m.kind, 0);
		field(fp, m.fields, 0);
		for (f = 0; f < 3; f++) {
			field(fp, m.mono[f], 0);
			field(fp, m.micro[f], 0);
		}
		field(fp, m.found_at, 0);
		field(fp, m.resolved_at, 0);
		field(fp, m.resolution, 0);
		field(fp, m.note, 0);
		snprintf(id, sizeof(id), "%lld", (long long)m.cluster_id);
		field(fp, m.cluster_id ? id : NULL, 1);
	}
	return rc < 0 ? -1 : 0;
}
