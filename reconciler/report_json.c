/*
 * report_json: {"run": {...} or null, "mismatches": [...]} written one
 * mismatch at a time. Field names are documented in docs/RECONCILER.md.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/report.h"

static const char *const field_names[3] = { "destination", "subject", "body" };

/* A JSON string; bytes that are not UTF-8 (a database in SQL_ASCII)
 * become U+FFFD rather than failing the report. */
static json_t *
jstr(const char *s)
{
	json_t *j;
	char *fixed;
	size_t i, o = 0, n;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	n = strlen(s);
	fixed = xmalloc(n * 3 + 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			fixed[o++] = (char)c;
		} else {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	fixed[o] = '\0';
	j = json_string(fixed);
	free(fixed);
	return j ? j : json_null();
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

static json_t *
side(const struct mismatch *m, int mono)
{
	char *const *v = mono ? m->mono : m->micro;
	json_t *o;
	int f;

	if (v[0] == NULL)
		return json_null();
	o = json_object();
	for (f = 0; f < 3; f++)
		json_object_set_new(o, field_names[f], jstr(v[f]));
	return o;
}

static json_t *
run_object(const struct run_summary *s)
{
	json_t *o = json_object(), *counts = json_object(), *rules = json_array();
	size_t i;

	json_object_set_new(o, "id", s->id ? json_integer(s->id) : json_null());
	json_object_set_new(o, "dry_run", json_boolean(s->dry_run));
	json_object_set_new(o, "status", jstr(s->status));
	json_object_set_new(o, "started_at", jstr(s->started_at));
	json_object_set_new(o, "finished_at", jstr(s->finished_at));
	json_object_set_new(o, "cutoff", jstr(s->cutoff));
	json_object_set_new(o, "grace_seconds", json_integer(s->grace));
	json_object_set_new(o, "shard", json_pack("{s:i, s:i}", "k", s->shard_k,
	    "n", s->shard_n));
	json_object_set_new(o, "rules_file", jstr(s->rules_file));
	json_object_set_new(o, "error", jstr(s->error));
	for (i = 0; i < run_ncount_fields; i++)
		json_object_set_new(counts, run_count_fields[i].name,
		    json_integer(*run_count((struct run_counts *)&s->c, i)));
	json_object_set_new(o, "counts", counts);
	for (i = 0; i < s->nrules; i++)
		json_array_append_new(rules, json_pack("{s:o, s:I}", "rule",
		    jstr(s->rules[i].name), "absorbed",
		    (json_int_t)s->rules[i].count));
	json_object_set_new(o, "rules", rules);
	return o;
}

int
report_json(FILE *fp, const struct run_summary *s, struct mismatch_iter *it)
{
	struct mismatch m;
	json_t *o;
	int rc, n = 0;

	fputs("{\"run\": ", fp);
	if (s != NULL) {
		o = run_object(s);
		json_dumpf(o, fp, JSON_COMPACT);
		json_decref(o);
	} else {
		fputs("null", fp);
	}
	fputs(",\n", fp);
	if (it->clusters != NULL)
		report_clusters_json(fp, it->clusters);
	fputs("\"mismatches\": [", fp);
	while ((rc = it->next(it->ctx, &m)) == 1) {
		o = json_object();
		json_object_set_new(o, "id", m.id ? json_integer(m.id) :
		    json_null());
		json_object_set_new(o, "run_id", m.run_id ?
		    json_integer(m.run_id) : json_null());
		json_object_set_new(o, "correlation_id", jstr(m.cid));
		json_object_set_new(o, "kind", jstr(m.kind));
		json_object_set_new(o, "fields", jfields(m.fields));
		json_object_set_new(o, "mono", side(&m, 1));
		json_object_set_new(o, "micro", side(&m, 0));
		json_object_set_new(o, "found_at", jstr(m.found_at));
		json_object_set_new(o, "resolved_at", jstr(m.resolved_at));
		json_object_set_new(o, "resolution", jstr(m.resolution));
		json_object_set_new(o, "note", jstr(m.note));
		json_object_set_new(o, "cluster_id", m.cluster_id ?
		    json_integer(m.cluster_id) : json_null());
		fputs(n++ ? ",\n" : "\n", fp);
		json_dumpf(o, fp, JSON_COMPACT);
		json_decref(o);
	}
	fputs("\n]}\n", fp);
	return rc < 0 ? -1 : 0;
}
