/*
 * pg_array: see pg_array.h. The header (ndim, has-null flag, element type,
 * size, lower bound) is written when the value is taken; an empty array
 * is sent with no dimensions, as PostgreSQL writes one.
 */
#include "common/pg_array.h"

#include <stdlib.h>
#include <string.h>


#define ARRAY_HEADER 20	/* ndim, flags, oid, dim, lower bound */

static void
put32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

void
pg_array_init(struct pg_array *a, uint32_t elem_oid)
{
	static const char room[ARRAY_HEADER];

	memset(a, 0, sizeof(*a));
	a->oid = elem_oid;
	strbuf_add(&a->b, room, ARRAY_HEADER);
}

void
pg_array_reset(struct pg_array *a)
{
	strbuf_truncate(&a->b, ARRAY_HEADER);
	a->n = 0;
	a->has_null = 0;
}

void
pg_array_add(struct pg_array *a, const void *p, int len)
{
	char n[4];

	put32(n, (uint32_t)len);
	strbuf_add(&a->b, n, 4);
	if (len > 0)
		strbuf_add(&a->b, p, (size_t)len);
	if (len < 0)
		a->has_null = 1;
	a->n++;
}

const char *
pg_array_value(struct pg_array *a, int *len)
{
	char *h = a->b.p;

	if (a->n == 0) {
		/* An empty array has no dimensions: a 12-byte header. */
		put32(h + 8, 0);
		put32(h + 12, 0);
		put32(h + 16, a->oid);
		*len = 12;
		return h + 8;
	}
	put32(h, 1);
	put32(h + 4, (uint32_t)a->has_null);
	put32(h + 8, a->oid);
	put32(h + 12, (uint32_t)a->n);
	put32(h + 16, 1);
	*len = (int)a->b.len;
	return h;
}

void
pg_array_free(struct pg_array *a)
{
	strbuf_free(&a->b);
	memset(a, 0, sizeof(*a));
}

void
pg_array_add_text(struct pg_array *a, const char *s)
{
	if (s == NULL)
		pg_array_add(a, NULL, -1);
	else
		pg_array_add(a, s, (int)strlen(s));
}

void
pg_array_add_int8(struct pg_array *a, int64_t v)
{
	char be[8];

	put32(be, (uint32_t)((uint64_t)v >> 32));
	put32(be + 4, (uint32_t)v);
	pg_array_add(a, be, 8);
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
pg_array_add_uuid(struct pg_array *a, const char *s)
{
	unsigned char b[16];
	int i, j = 0, hi, lo;

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
	pg_array_add(a, b, 16);
	return 0;
}
