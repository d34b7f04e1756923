/*
 * report_html: one self-contained page (inline CSS, no script, nothing
 * fetched): the run summary, then per mismatch its fields and a
 * side-by-side diff of the two bodies. The line diff is libgit2's
 * (git_patch_from_buffers, whole body as context); within a changed line
 * pair the differing middle is wrapped in <mark>. Every byte of content is
 * escaped: a body is untrusted.
 */
#include <stdlib.h>
#include <string.h>

#include <git2.h>

#include "common/util.h"
#include "reconciler/clusterstore.h"
#include "reconciler/escape.h"
#include "reconciler/report.h"

static const char *const field_names[3] = { "destination", "subject", "body" };

static const char style[] =
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}"
    "th{background:#f3f3f3;text-align:left}"
    ".diff td{font-family:monospace;white-space:pre-wrap;border:none}"
    ".diff{border:1px solid #ccc;width:100%;table-layout:fixed}"
    ".ln{color:#999;width:3em;text-align:right}"
    ".del{background:#fdd}.add{background:#dfd}"
    "mark{background:#f99}.add mark{background:#7d7}"
    "mark.eol{font-size:80%;color:#555}"
    ".absent{color:#999;font-style:italic}"
    "section{border-top:2px solid #999;margin-top:1.5em}";

static void
put_esc(FILE *fp, const char *s, size_t len)
{
	char *e = escape_html(s, len);

	fputs(e, fp);
	free(e);
}

static void
put_str(FILE *fp, const char *s)
{
	if (s == NULL)
		fputs("<span class=\"absent\">(absent)</span>", fp);
	else
		put_esc(fp, s, strlen(s));
}

/* Keeps a byte offset on a UTF-8 character boundary. */
static size_t
back_to_boundary(const char *s, size_t off)
{
	while (off > 0 && ((unsigned char)s[off] & 0xC0) == 0x80)
		off--;
	return off;
}

/* A changed line with its differing middle (against other) marked. */
static void
put_marked(FILE *fp, const char *a, size_t alen, const char *b, size_t blen)
{
	size_t pre = 0, suf = 0;

	while (pre < alen && pre < blen && a[pre] == b[pre])
		pre++;
	pre = back_to_boundary(a, pre);
	while (suf < alen - pre && suf < blen - pre &&
	    a[alen - 1 - suf] == b[blen - 1 - suf])
		suf++;
	while (suf > 0 && ((unsigned char)a[alen - suf] & 0xC0) == 0x80)
		suf--;
	put_esc(fp, a, pre);
	fputs("<mark>", fp);
	put_esc(fp, a + pre, alen - pre - suf);
	fputs("</mark>", fp);
	put_esc(fp, a + alen - suf, suf);
}

struct dline {
	const char *s;
	size_t len;		/* without the line end */
	const char *eol;	/* the line end itself, eol_len bytes */
	size_t eol_len;
	int no;
};

/* A line end, visible: bodies that differ only in CRLF versus LF would
 * otherwise show two identical lines. */
static void
put_eol(FILE *fp, const struct dline *l)
{
	static const struct { const char *bytes, *shown; } names[] = {
		{ "\r\n", "[CRLF]" }, { "\n", "[LF]" }, { "\r", "[CR]" },
		{ "", "[no line end]" },
	};
	size_t i;

	fputs("<mark class=\"eol\">", fp);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].bytes) == l->eol_len &&
		    memcmp(names[i].bytes, l->eol, l->eol_len) == 0)
			break;
	fputs(i < sizeof(names) / sizeof(names[0]) ? names[i].shown :
	    "[other line end]", fp);
	fputs("</mark>", fp);
}

static int
same_eol(const struct dline *a, const struct dline *b)
{
	return a->eol_len == b->eol_len &&
	    memcmp(a->eol, b->eol, a->eol_len) == 0;
}

static size_t
strip_eol(const char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	return len;
}

static void
set_line(struct dline *d, const git_diff_line *line, int no)
{
	d->s = line->content;
	d->len = strip_eol(line->content, line->content_len);
	d->eol = line->content + d->len;
	d->eol_len = line->content_len - d->len;
	d->no = no;
}

static void
cell(FILE *fp, const struct dline *l, const struct dline *other,
    const char *cls)
{
	if (l == NULL) {
		fputs("<td class=\"ln\"></td><td></td>", fp);
		return;
	}
	fprintf(fp, "<td class=\"ln\">%d</td><td class=\"%s\">", l->no, cls);
	if (other != NULL && cls[0] != 'c') {
		if (l->len != other->len || memcmp(l->s, other->s, l->len) != 0)
			put_marked(fp, l->s, l->len, other->s, other->len);
		else
			put_esc(fp, l->s, l->len);
		if (!same_eol(l, other))
			put_eol(fp, l);
	} else if (cls[0] != 'c') {
		/* A line with no counterpart differs as a whole. */
		fputs("<mark>", fp);
		put_esc(fp, l->s, l->len);
		fputs("</mark>", fp);
	} else {
		put_esc(fp, l->s, l->len);
	}
	fputs("</td>", fp);
}

/* Pairs up a run of deleted and added lines, row by row. */
static void
flush_run(FILE *fp, struct dline *del, size_t nd, struct dline *add,
    size_t na)
{
	size_t i;

	for (i = 0; i < nd || i < na; i++) {
		fputs("<tr>", fp);
		cell(fp, i < nd ? &del[i] : NULL, i < na ? &add[i] : NULL, "del");
		cell(fp, i < na ? &add[i] : NULL, i < nd ? &del[i] : NULL, "add");
		fputs("</tr>\n", fp);
	}
}

static void
body_diff(FILE *fp, const char *a, const char *b)
{
	git_diff_options opts;
	git_patch *patch = NULL;
	const git_diff_line *line;
	struct dline *del = NULL, *add = NULL, ctx;
	size_t nd = 0, na = 0, cap = 0, h, nh, l, nl;

	git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
	opts.context_lines = 1u << 30;	/* the whole body, not just hunks */
	opts.flags |= GIT_DIFF_FORCE_TEXT;
	if (git_patch_from_buffers(&patch, a, strlen(a), "mono", b, strlen(b),
	    "micro", &opts) != 0) {
		fputs("<p>(no diff: libgit2 failed)</p>\n", fp);
		return;
	}
	fputs("<table class=\"diff\"><tr><th class=\"ln\"></th><th>mono body"
	    "</th><th class=\"ln\"></th><th>micro body</th></tr>\n", fp);
	nh = git_patch_num_hunks(patch);
	for (h = 0; h < nh; h++) {
		if (git_patch_get_hunk(NULL, &nl, patch, h) != 0)
			break;
		for (l = 0; l < nl; l++) {
			if (git_patch_get_line_in_hunk(&line, patch, h, l) != 0)
				break;
			if (nd + na + 1 > cap) {
				cap = cap ? cap * 2 : 64;
				del = xrealloc(del, cap * sizeof(*del));
				add = xrealloc(add, cap * sizeof(*add));
			}
			switch (line->origin) {
			case GIT_DIFF_LINE_DELETION:
				set_line(&del[nd], line, line->old_lineno);
				nd++;
				break;
			case GIT_DIFF_LINE_ADDITION:
				set_line(&add[na], line, line->new_lineno);
				na++;
				break;
			case GIT_DIFF_LINE_CONTEXT:
				flush_run(fp, del, nd, add, na);
				nd = na = 0;
				set_line(&ctx, line, line->old_lineno);
				fputs("<tr>", fp);
				cell(fp, &ctx, NULL, "ctx");
				ctx.no = line->new_lineno;
				cell(fp, &ctx, NULL, "ctx");
				fputs("</tr>\n", fp);
				break;
			default:	/* "no newline at end of file" markers */
				break;
			}
		}
	}
	flush_run(fp, del, nd, add, na);
	fputs("</table>\n", fp);
	free(del);
	free(add);
	git_patch_free(patch);
}

static void
summary(FILE *fp, const struct run_summary *s)
{
	size_t i;

	fputs("<h1>Reconciliation ", fp);
	if (s->dry_run)
		fputs("dry run", fp);
	else
		fprintf(fp, "run %lld", (long long)s->id);
	fputs("</h1>\n<table>\n", fp);
	fputs("<tr><th>status</th><td>", fp);
	put_str(fp, s->dry_run ? "dry run" : s->status);
	fprintf(fp, "</td></tr>\n<tr><th>shard</th><td>%d/%d</td></tr>\n"
	    "<tr><th>grace</th><td>%lds</td></tr>\n", s->shard_k, s->shard_n,
	    s->grace);
	fputs("<tr><th>started</th><td>", fp);
	put_str(fp, s->started_at);
	fputs("</td></tr>\n<tr><th>finished</th><td>", fp);
	put_str(fp, s->finished_at);
	fputs("</td></tr>\n<tr><th>cutoff</th><td>", fp);
	put_str(fp, s->cutoff);
	fputs("</td></tr>\n", fp);
	if (s->rules_file) {
		fputs("<tr><th>rules file</th><td>", fp);
		put_str(fp, s->rules_file);
		fputs("</td></tr>\n", fp);
	}
	for (i = 0; i < run_ncount_fields; i++)
		fprintf(fp, "<tr><th>%s</th><td>%lld</td></tr>\n",
		    run_count_fields[i].name,
		    (long long)*run_count((struct run_counts *)&s->c, i));
	for (i = 0; i < s->nrules; i++) {
		fputs("<tr><th>rule ", fp);
		put_str(fp, s->rules[i].name);
		fprintf(fp, "</th><td>%lld absorbed</td></tr>\n",
		    (long long)s->rules[i].count);
	}
	if (s->error) {
		fputs("<tr><th>error</th><td>", fp);
		put_str(fp, s->error);
		fputs("</td></tr>\n", fp);
	}
	fputs("</table>\n", fp);
}

static void
mismatch(FILE *fp, const struct mismatch *m)
{
	int f;

	if (m->id > 0)
		fprintf(fp, "<section id=\"m%lld\"><h2>Mismatch %lld: ",
		    (long long)m->id, (long long)m->id);
	else	/* a dry run's: never stored, no id */
		fputs("<section><h2>Mismatch (dry run): ", fp);
	put_str(fp, m->kind);
	fputs("</h2>\n<p>correlation id <code>", fp);
	put_str(fp, m->cid);
	fputs("</code>", fp);
	if (m->fields && m->fields[0]) {
		fputs(", differing: ", fp);
		put_str(fp, m->fields);
	}
	if (m->cluster_id)
		fprintf(fp, ", cluster <a href=\"/clusters/%lld\">%lld</a>",
		    (long long)m->cluster_id, (long long)m->cluster_id);
	if (m->resolved_at) {
		fputs(", resolved ", fp);
		put_str(fp, m->resolved_at);
		fputs(" (", fp);
		put_str(fp, m->resolution);
		fputs(")", fp);
	}
	fputs("</p>\n<table><tr><th></th><th>mono</th><th>micro</th></tr>\n", fp);
	for (f = 0; f < 2; f++) {
		int diff = m->fields && strstr(m->fields, field_names[f]);
		fprintf(fp, "<tr><th>%s</th><td%s>", field_names[f],
		    diff ? " class=\"del\"" : "");
		put_str(fp, m->mono[f]);
		fprintf(fp, "</td><td%s>", diff ? " class=\"add\"" : "");
		put_str(fp, m->micro[f]);
		fputs("</td></tr>\n", fp);
	}
	fputs("</table>\n", fp);
	if (m->mono[2] && m->micro[2]) {
		body_diff(fp, m->mono[2], m->micro[2]);
	} else {
		fputs("<table class=\"diff\"><tr><th>mono body</th><th>micro body"
		    "</th></tr><tr><td>", fp);
		put_str(fp, m->mono[2]);
		fputs("</td><td>", fp);
		put_str(fp, m->micro[2]);
		fputs("</td></tr></table>\n", fp);
	}
	if (m->note) {
		fputs("<p>note: ", fp);
		put_str(fp, m->note);
		fputs("</p>\n", fp);
	}
	fputs("</section>\n", fp);
}

int
report_html(FILE *fp, const struct run_summary *s, struct mismatch_iter *it)
{
	struct mismatch m;
	int rc, n = 0;

	git_libgit2_init();
	fprintf(fp, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset="
	    "\"utf-8\"><title>Reconciliation report</title><style>%s</style>"
	    "</head><body>\n", style);
	if (s != NULL)
		summary(fp, s);
	if (it->clusters != NULL)
		report_clusters_html(fp, it->clusters);
	while ((rc = it->next(it->ctx, &m)) == 1) {
		mismatch(fp, &m);
		n++;
	}
	if (n == 0)
		fputs("<p>No mismatches.</p>\n", fp);
	fputs("</body></html>\n", fp);
	git_libgit2_shutdown();
	return rc < 0 ? -1 : 0;
}

const char *
report_html_style(void)
{
	return style;
}

void
report_html_mismatch(FILE *fp, const struct mismatch *m)
{
	git_libgit2_init();
	mismatch(fp, m);
	git_libgit2_shutdown();
}
