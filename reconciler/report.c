/*
 * report: the dispatch by format (see report.h); each format is a
 * report_*.c of its own.
 */
#include "reconciler/report.h"

#include <string.h>

#include "common/util.h"

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
