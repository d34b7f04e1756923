/*
 * cmd_clusters: `reconciler clusters [--all] [--format F]`, the clusters
 * with open mismatches (every one with --all). The CSV is the clusters'
 * own table; the other formats are a report's cluster section alone.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "reconciler/clusterstore.h"
#include "reconciler/cmd.h"
#include "reconciler/escape.h"
#include "reconciler/report.h"

#define CLUSTERS_LISTED 10000


static void
clusters_csv(FILE *fp, const struct cluster_list *l)
{
	size_t i, k;
	char *e;

	fputs("id,kind,fields,count,open,example,first_seen,last_seen,"
	    "signature\r\n", fp);
	for (i = 0; i < l->n; i++) {
		const struct cluster_row *c = &l->v[i];
		const char *v[6] = { c->kind, c->fields, c->example_cid,
			c->first_seen, c->last_seen, c->signature };
		fprintf(fp, "%lld", (long long)c->id);
		for (k = 0; k < 6; k++) {
			e = escape_csv(v[k]);
			fprintf(fp, ",%s", e);
			free(e);
			if (k == 1)
				fprintf(fp, ",%lld,%lld", (long long)c->count,
				    (long long)c->open);
		}
		fputs("\r\n", fp);
	}
}

int
cmd_clusters(const struct cli *c)
{
	struct cluster_list l;
	PGconn *mono;
	char err[512];
	int code = EXIT_DB;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	if (clusterstore_list(mono, c->all ? CLUSTERS_ALL : CLUSTERS_OPEN, 0,
	    CLUSTERS_LISTED, &l, err, sizeof(err)) == -1) {
		log_error("%s", err);
		goto out;
	}
	switch (c->format) {
	case REPORT_CSV:
		clusters_csv(stdout, &l);
		break;
	case REPORT_JSON:
		fputs("{", stdout);
		report_clusters_json(stdout, &l);
		fputs("\"mismatches\": []}\n", stdout);
		break;
	case REPORT_HTML:
	case REPORT_TEXT:
		if (c->format == REPORT_TEXT)
			report_clusters_text(stdout, &l);
		else
			report_clusters_html(stdout, &l);
		break;
	}
	code = fflush(stdout) == 0 ? EXIT_CLEAN : EXIT_DB;
	cluster_list_clear(&l);
out:
	PQfinish(mono);
	return code;
}
