/*
 * report_clusters: the section that opens every report (clusterstore.h):
 * one line, object or row per cluster with its id, kind, fields, counts,
 * first and last seen and an example (a correlation id). CSV has no such
 * section: it is one table, one record per mismatch, and carries each
 * mismatch's cluster_id instead.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/escape.h"

void
cluster_list_clear(struct cluster_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		cluster_row_clear(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void
cluster_row_clear(struct cluster_row *c)
{
	free(c->kind);
	free(c->fields);
	free(c->signature);
	free(c->example_cid);
	free(c->first_seen);
	free(c->last_seen);
	memset(c, 0, sizeof(*c));
}

void
report_clusters_text(FILE *fp, const struct cluster_list *l)
{
	size_t i;
	char *e;

	fprintf(fp, "\nclusters: %zu%s\n", l->n, l->more ? " (largest first)" :
	    "");
	for (i = 0; i < l->n; i++) {
		const struct cluster_row *c = &l->v[i];
		if (c->id > 0)
			fprintf(fp, "cluster %lld %s", (long long)c->id, c->kind);
		else	/* a dry run's: not stored, no id */
			fprintf(fp, "cluster - %s", c->kind);
		if (c->fields && c->fields[0])
			fprintf(fp, " [%s]", c->fields);
		if (c->in_run >= 0)
			fprintf(fp, " in this run %lld,", (long long)c->in_run);
		fprintf(fp, " count %lld, open %lld, first seen %s, last seen %s, "
		    "example %s\n", (long long)c->count, (long long)c->open,
		    c->first_seen, c->last_seen, c->example_cid ?
		    c->example_cid : "-");
		e = escape_text(c->signature);
		fprintf(fp, "  signature %s\n", e);
		free(e);
	}
	if (l->more > 0)
		fprintf(fp, "(%lld more clusters: reconciler clusters --all)\n",
		    (long long)l->more);
}

static json_t *
jstr(const char *s)
{
	json_t *j;

	if (s == NULL)
		return json_null();
	/* Not UTF-8 (a database in SQL_ASCII): better null than no report. */
	return (j = json_string(s)) != NULL ? j : json_null();
}

static json_t *
jfields(const char *csv)
{
	json_t *a = json_array();
	const char *p = csv, *c;

	while (p != NULL && *p) {
		c = strchr(p, ',');
		json_array_append_new(a, json_stringn(p, c ? (size_t)(c - p) :
		    strlen(p)));
		p = c ? c + 1 : NULL;
	}
	return a;
}

json_t *
cluster_json(const struct cluster_row *c)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", c->id > 0 ? json_integer(c->id) :
	    json_null());
	json_object_set_new(o, "kind", jstr(c->kind));
	json_object_set_new(o, "fields", jfields(c->fields));
	json_object_set_new(o, "count", json_integer(c->count));
	json_object_set_new(o, "open", json_integer(c->open));
	json_object_set_new(o, "example", jstr(c->example_cid));
	json_object_set_new(o, "firstSeen", jstr(c->first_seen));
	json_object_set_new(o, "lastSeen", jstr(c->last_seen));
	json_object_set_new(o, "signature", jstr(c->signature));
	if (c->in_run >= 0)
		json_object_set_new(o, "inRun", json_integer(c->in_run));
	return o;
}

void
report_clusters_json(FILE *fp, const struct cluster_list *l)
{
	json_t *o;
	size_t i;

	fputs("\"clusters\": [", fp);
	for (i = 0; i < l->n; i++) {
		o = cluster_json(&l->v[i]);
		fputs(i ? ",\n" : "\n", fp);
		json_dumpf(o, fp, JSON_COMPACT);
		json_decref(o);
	}
	fprintf(fp, "\n], \"clusters_more\": %lld,\n", (long long)l->more);
}

static void
put(FILE *fp, const char *s)
{
	char *e = escape_html(s ? s : "", s ? strlen(s) : 0);

	fputs(e, fp);
	free(e);
}

void
report_clusters_html(FILE *fp, const struct cluster_list *l)
{
	size_t i;

	fputs("<h2>Clusters</h2>\n", fp);
	if (l->n == 0) {
		fputs("<p>No clusters.</p>\n", fp);
		return;
	}
	fputs("<table class=\"clusters\"><tr><th>cluster</th><th>kind</th>"
	    "<th>fields</th>", fp);
	if (l->v[0].in_run >= 0)
		fputs("<th>in this run</th>", fp);
	fputs("<th>count</th><th>open</th><th>first seen</th><th>last seen</th>"
	    "<th>example</th><th>signature</th></tr>\n", fp);
	for (i = 0; i < l->n; i++) {
		const struct cluster_row *c = &l->v[i];
		if (c->id > 0)
			fprintf(fp, "<tr><td><a href=\"/clusters/%lld\">%lld</a></td>"
			    "<td>", (long long)c->id, (long long)c->id);
		else
			fputs("<tr><td>-</td><td>", fp);
		put(fp, c->kind);
		fputs("</td><td>", fp);
		put(fp, c->fields);
		fputs("</td>", fp);
		if (c->in_run >= 0)
			fprintf(fp, "<td>%lld</td>", (long long)c->in_run);
		fprintf(fp, "<td>%lld</td><td>%lld</td><td>", (long long)c->count,
		    (long long)c->open);
		put(fp, c->first_seen);
		fputs("</td><td>", fp);
		put(fp, c->last_seen);
		fputs("</td><td><code>", fp);
		put(fp, c->example_cid);
		fputs("</code></td><td><pre>", fp);
		put(fp, c->signature);
		fputs("</pre></td></tr>\n", fp);
	}
	fputs("</table>\n", fp);
	if (l->more > 0)
		fprintf(fp, "<p>%lld more clusters.</p>\n", (long long)l->more);
}
