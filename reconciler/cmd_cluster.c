/*
 * cmd_cluster: the commands about clusters (run.h): `clusters` lists
 * them, `ack --cluster` acknowledges one whole, `rule --cluster` prints
 * the noise rule that would ignore one (checked against its example,
 * never applied).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "reconciler/cluster.h"
#include "reconciler/clusterstore.h"
#include "reconciler/escape.h"
#include "reconciler/pg.h"
#include "reconciler/rules.h"
#include "reconciler/run.h"
#include "reconciler/runstore.h"

#define CLUSTERS_LISTED 10000

static PGconn *
mono_connect(const struct cli *c)
{
	char err[512];
	PGconn *conn;

	if ((conn = pg_connect(c->mono_url, "postgresMono", err,
	    sizeof(err))) == NULL)
		log_error("%s", err);
	return conn;
}

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
run_clusters(const struct cli *c)
{
	struct cluster_list l;
	PGconn *mono;
	char err[512];
	int code = EXIT_DB;

	if ((mono = mono_connect(c)) == NULL)
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

int
run_ack_cluster(const struct cli *c)
{
	PGconn *mono = NULL, *micro = NULL;
	char err[512];
	int64_t acked;
	int rc, code = EXIT_DB;

	if ((mono = mono_connect(c)) == NULL)
		return EXIT_DB;
	if ((micro = pg_connect(c->micro_url, "postgresMicro", err,
	    sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	rc = clusterstore_ack(mono, micro, c->cluster, c->note, &acked, err,
	    sizeof(err));
	if (rc == 0) {
		if (!c->quiet)
			printf("cluster %ld: %lld mismatches acknowledged\n",
			    c->cluster, (long long)acked);
		code = EXIT_CLEAN;
	} else {
		log_error("ack: %s", err);
		code = rc == 1 ? EXIT_USAGE : EXIT_DB;
	}
out:
	PQfinish(micro);
	PQfinish(mono);
	return code;
}

int
run_rule(const struct cli *c)
{
	struct mismatch ex = { 0 };
	struct rules *r = NULL;
	struct mail a, b;
	PGconn *mono;
	char err[512], *text = NULL;
	int rc, f, code = EXIT_DB;

	if ((mono = mono_connect(c)) == NULL)
		return EXIT_DB;
	rc = clusterstore_example(mono, c->cluster, &ex, err, sizeof(err));
	if (rc != 1) {
		log_error("rule: %s", err);
		code = rc == 0 ? EXIT_USAGE : EXIT_DB;
		goto out;
	}
	if ((text = cluster_rule(&ex, c->cluster, err, sizeof(err))) == NULL) {
		log_error("rule: %s", err);
		code = EXIT_USAGE;
		goto out;
	}
	/* Checked the way a run would apply it, on the example. */
	if ((r = rules_parse(text, "cluster rule", err, sizeof(err))) == NULL) {
		log_error("rule: the rule made for cluster %ld does not parse: "
		    "%s", c->cluster, err);
		goto out;
	}
	for (f = 0; f < FIELD_COUNT; f++) {
		a.v[f] = ex.mono[f];
		a.len[f] = strlen(ex.mono[f]);
		b.v[f] = ex.micro[f];
		b.len[f] = strlen(ex.micro[f]);
	}
	printf("# Ignores cluster %ld (%s: %s), checked on its example %s.\n"
	    "# Printed, never applied: add it to the rules file (--rules)\n"
	    "# only if this difference is noise. Rules ignore matching pairs\n"
	    "# for good: they are consumed, counted as ignored.\n",
	    c->cluster, ex.kind, ex.fields, ex.cid);
	if (rules_compare(r, &a, &b, NULL, NULL) != 0)
		printf("# WARNING: the example still differs under this rule; "
		    "edit it before use.\n");
	fputs(text, stdout);
	code = EXIT_CLEAN;
out:
	rules_free(r);
	free(text);
	mismatch_clear(&ex);
	PQfinish(mono);
	return code;
}

int
cluster_list_of(struct mismatch_iter *it, size_t limit, struct cluster_list *l)
{
	struct mismatch m;
	char **sigs;
	size_t i;
	int rc;

	memset(l, 0, sizeof(*l));
	l->v = xcalloc(limit + 1, sizeof(*l->v));
	sigs = xcalloc(limit + 1, sizeof(*sigs));
	while ((rc = it->next(it->ctx, &m)) == 1) {
		char *sig = cluster_signature(&m);
		for (i = 0; i < l->n && strcmp(sigs[i], sig) != 0; i++)
			;
		if (i == l->n && l->n == limit) {
			l->more++;
			free(sig);
			continue;
		}
		if (i == l->n) {
			struct cluster_row *c = &l->v[l->n++];
			sigs[i] = sig;
			sig = NULL;
			c->kind = xstrdup(m.kind ? m.kind : "");
			c->fields = xstrdup(m.fields ? m.fields : "");
			c->signature = xstrdup(sigs[i]);
			c->example_cid = xstrdup(m.cid ? m.cid : "");
			c->first_seen = xstrdup(m.found_at ? m.found_at : "-");
			c->last_seen = xstrdup(m.found_at ? m.found_at : "-");
		}
		free(sig);
		l->v[i].count++;
		l->v[i].open++;
		l->v[i].in_run = l->v[i].count;
		if (m.found_at != NULL) {
			free(l->v[i].last_seen);
			l->v[i].last_seen = xstrdup(m.found_at);
		}
	}
	for (i = 0; i < l->n; i++)
		free(sigs[i]);
	free(sigs);
	if (rc == -1)
		cluster_list_clear(l);
	return rc == -1 ? -1 : 0;
}
