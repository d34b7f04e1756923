/*
 * sql_array: see sql_array.h. Text elements are always quoted, with `"` and
 * `\` escaped, so any UTF-8 string (commas, braces, spaces) round-trips.
 */
#include "sql_array.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void
raw(struct sql_array *a, const char *s, size_t n)
{
	if (a->len + n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap : 256;

		while (cap < a->len + n + 2)
			cap *= 2;
		a->p = xrealloc(a->p, cap);
		a->cap = cap;
	}
	memcpy(a->p + a->len, s, n);
	a->len += n;
	a->p[a->len] = '\0';
}

static void
sep(struct sql_array *a)
{
	raw(a, a->n++ == 0 ? "{" : ",", 1);
}

void
sql_array_text(struct sql_array *a, const char *s)
{
	const char *p;
	size_t n;

	sep(a);
	if (s == NULL) {
		raw(a, "NULL", 4);
		return;
	}
	raw(a, "\"", 1);
	for (p = s; *p != '\0'; p += n) {
		if (*p == '"' || *p == '\\') {
			raw(a, "\\", 1);
			n = 1;
		} else {
			n = strcspn(p, "\"\\");	/* the run up to the next quote */
		}
		raw(a, p, n);
	}
	raw(a, "\"", 1);
}

void
sql_array_int(struct sql_array *a, int64_t v)
{
	char num[32];

	sep(a);
	snprintf(num, sizeof(num), "%" PRId64, v);
	raw(a, num, strlen(num));
}

const char *
sql_array_done(struct sql_array *a)
{
	if (a->n == 0)
		raw(a, "{", 1);
	raw(a, "}", 1);
	return a->p;
}

void
sql_array_free(struct sql_array *a)
{
	free(a->p);
	memset(a, 0, sizeof(*a));
}
