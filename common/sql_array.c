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

/* ---- binary format ---- */

#define BIN_HEADER 20	/* ndim, has-null flags, element type, size, lower */

static void
put32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

static char *
bin_room(struct sql_binarray *a, size_t n)
{
	char *at;

	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 256;

		while (cap < a->len + n)
			cap *= 2;
		a->p = xrealloc(a->p, cap);
		a->cap = cap;
	}
	at = a->p + a->len;
	a->len += n;
	return at;
}

void
sql_binarray_init(struct sql_binarray *a, uint32_t elem_oid)
{
	memset(a, 0, sizeof(*a));
	a->elem_oid = elem_oid;
	(void)bin_room(a, BIN_HEADER);
}

void
sql_binarray_text(struct sql_binarray *a, const char *s)
{
	size_t n = strlen(s);
	char *at = bin_room(a, 4 + n);

	put32(at, (uint32_t)n);
	memcpy(at + 4, s, n);
	a->n++;
}

void
sql_binarray_int8(struct sql_binarray *a, int64_t v)
{
	char *at = bin_room(a, 4 + 8);
	uint64_t u = (uint64_t)v;

	put32(at, 8);
	put32(at + 4, (uint32_t)(u >> 32));
	put32(at + 8, (uint32_t)u);
	a->n++;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
sql_binarray_uuid(struct sql_binarray *a, const char *s)
{
	unsigned char b[16];
	int i, j = 0, hi, lo;
	char *at;

	for (i = 0; i < 36; i++)
		if (s[i] == '\0')
			return -1;
	if (s[36] != '\0' || s[8] != '-' || s[13] != '-' || s[18] != '-' ||
	    s[23] != '-')
		return -1;
	for (i = 0; i < 36; i += 2) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			i++;
		if ((hi = hexval(s[i])) < 0 || (lo = hexval(s[i + 1])) < 0)
			return -1;
		b[j++] = (unsigned char)(hi << 4 | lo);
	}
	at = bin_room(a, 4 + 16);
	put32(at, 16);
	memcpy(at + 4, b, 16);
	a->n++;
	return 0;
}

const char *
sql_binarray_done(struct sql_binarray *a, int *len)
{
	put32(a->p, 1);				/* one dimension */
	put32(a->p + 4, 0);			/* no NULLs */
	put32(a->p + 8, a->elem_oid);
	put32(a->p + 12, (uint32_t)a->n);	/* its size */
	put32(a->p + 16, 1);			/* its lower bound */
	*len = (int)a->len;
	return a->p;
}

void
sql_binarray_free(struct sql_binarray *a)
{
	free(a->p);
	memset(a, 0, sizeof(*a));
}
