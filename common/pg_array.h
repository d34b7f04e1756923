/*
 * pg_array: a one-dimensional array in PostgreSQL's binary array format,
 * sent as one parameter with paramFormats 1 (the server copies each
 * element where it would parse a text literal). Used by the reconciler's
 * marks and by mailer-spy's batch INSERT.
 */
#ifndef COMMON_PG_ARRAY_H
#define COMMON_PG_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#define PG_OID_INT8 20
#define PG_OID_TEXT 25
#define PG_OID_UUID 2950

struct pg_array {
	char *buf;
	size_t len, cap;
	int n;
	uint32_t oid;
	int has_null;
};

void pg_array_init(struct pg_array *a, uint32_t elem_oid);
void pg_array_reset(struct pg_array *a);
/* Appends an element of len bytes; len -1 appends NULL. */
void pg_array_add(struct pg_array *a, const void *p, int len);
/* Elements in their binary forms: text as its bytes, a bigint big-endian,
 * a UUID given as 36 characters (8-4-4-4-12 hexadecimal digits, any case)
 * as its 16 bytes; pg_array_add_uuid returns -1, appending nothing, when s
 * is not one. */
void pg_array_add_text(struct pg_array *a, const char *s);
void pg_array_add_int8(struct pg_array *a, int64_t v);
int pg_array_add_uuid(struct pg_array *a, const char *s);
/* The finished parameter value and its length (valid until the next add). */
const char *pg_array_value(struct pg_array *a, int *len);
void pg_array_free(struct pg_array *a);

#endif
