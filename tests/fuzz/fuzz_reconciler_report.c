/*
 * fuzz_reconciler_report: the reconciler's escaping and its four report
 * writers on mismatches whose fields are arbitrary bytes (a body is
 * whatever a renderer produced). Input: up to six NUL-separated values
 * (mono destination, subject, body, micro destination, subject, body).
 * Oracles: escape_html leaves no < > " ' and no & outside an entity; the
 * HTML report holds no markup from a body (no <script, <img, <svg, ...);
 * the JSON report parses; the text report has no control byte but LF;
 * escape_csv quotes every field holding a separator.
 */
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "fuzz_common.h"
#include "reconciler/escape.h"
#include "reconciler/report.h"

struct one {
	struct mismatch *m;
	int given;
};

static int
next_one(void *ctx, struct mismatch *m)
{
	struct one *o = ctx;

	if (o->given)
		return 0;
	o->given = 1;
	*m = *o->m;
	return 1;
}

static char *
render(enum report_format f, struct mismatch *m, size_t *len)
{
	struct run_summary s;
	struct one o = { m, 0 };
	struct mismatch_iter it = { next_one, &o, NULL };
	char err[256], *buf = NULL;
	FILE *fp = open_memstream(&buf, len);

	memset(&s, 0, sizeof(s));
	s.id = 7;
	s.status = "done";
	s.started_at = s.finished_at = s.cutoff = "2026-01-01 00:00:00+00";
	s.grace = 60;
	s.shard_k = s.shard_n = 1;
	FUZZ_CHECK(fp != NULL, "open_memstream");
	FUZZ_CHECK(report_write(fp, f, &s, &it, err, sizeof(err)) == 0, "report_write: %s", err);
	fclose(fp);
	return buf;
}

static void
check_html_escape(const char *in, size_t len)
{
	char *e = escape_html(in, len);

	for (const char *p = e; *p; p++) {
		FUZZ_CHECK(strchr("<>\"'", *p) == NULL, "raw %c after escape_html", *p);
		if (*p == '&')
			FUZZ_CHECK(strncmp(p, "&amp;", 5) == 0 || strncmp(p, "&lt;", 4) == 0 ||
			    strncmp(p, "&gt;", 4) == 0 || strncmp(p, "&quot;", 6) == 0 ||
			    strncmp(p, "&#39;", 5) == 0 || strncmp(p, "&#x27;", 6) == 0 ||
			    strncmp(p, "&apos;", 6) == 0, "bare & after escape_html");
	}
	free(e);
}

/*
 * Every '<' left in the page is markup the report wrote (a body's '<' is
 * &lt;): none may open an active element or carry an on* handler.
 */
static void
check_html_tags(const char *out, const char **bad)
{
	for (const char *p = strchr(out, '<'); p != NULL; p = strchr(p + 1, '<')) {
		const char *end = strchr(p, '>');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char tag[256];

		if (n >= sizeof(tag))
			n = sizeof(tag) - 1;
		memcpy(tag, p, n);
		tag[n] = '\0';
		for (int i = 0; bad[i]; i++)
			FUZZ_CHECK(fuzz_find_ci(tag, bad[i]) != tag, "%s in the HTML report", bad[i]);
		FUZZ_CHECK(fuzz_find_ci(tag, " on") == NULL, "attribute on* in tag %s", tag);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *all = fuzz_cstr(data, size), *v[6] = { 0 }, *out, *e;
	static const char *bad[] = { "<script", "<img", "<svg", "<iframe", "<object",
	    "<embed", "<link", "<base", "<form", "<input", "<textarea", "<meta http", NULL };
	struct mismatch m;
	size_t off = 0, len;
	json_t *j;
	json_error_t jerr;

	for (int i = 0; i < 6; i++) {
		size_t n = off < size ? strnlen((const char *)data + off, size - off) : 0;

		v[i] = strndup(off < size ? (const char *)data + off : "", n);
		off += n + 1;
	}
	check_html_escape((const char *)data, size);
	e = escape_csv(all);
	if (strpbrk(all, ",\"\r\n") != NULL)
		FUZZ_CHECK(e[0] == '"', "csv field with a separator is not quoted");
	free(e);
	e = escape_text(all);
	FUZZ_CHECK(!fuzz_has_ctl(e, ""), "control byte after escape_text");
	free(e);

	memset(&m, 0, sizeof(m));
	m.id = 1;
	m.run_id = 7;
	m.cid = "0b5d3c52-8a55-4b0e-9f3e-1234567890ab";
	m.kind = "content";
	m.fields = "destination,subject,body";
	m.found_at = "2026-01-01 00:00:00+00";
	for (int i = 0; i < 3; i++) {
		m.mono[i] = v[i];
		m.micro[i] = v[3 + i];
	}
	out = render(REPORT_HTML, &m, &len);
	check_html_tags(out, bad);
	free(out);
	out = render(REPORT_JSON, &m, &len);
	j = json_loadb(out, len, 0, &jerr);
	FUZZ_CHECK(j != NULL, "JSON report does not parse: %s", jerr.text);
	json_decref(j);
	free(out);
	out = render(REPORT_TEXT, &m, &len);
	FUZZ_CHECK(strlen(out) == len && !fuzz_has_ctl(out, "\n"), "control byte in the text report");
	free(out);
	out = render(REPORT_CSV, &m, &len);
	free(out);
	for (int i = 0; i < 6; i++)
		free(v[i]);
	free(all);
	return 0;
}
