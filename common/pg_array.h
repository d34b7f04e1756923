/*
 * pg_array: a one-dimensional array in PostgreSQL's binary array format,
 * sent as one parameter with paramFormats 1 (the server copies each
 * element where it would parse a text literal), so that a batch of rows
 * is one statement that the server unnest()s. The one array builder of the
 * programs: the reconciler's marks, mailer-spy's batch INSERT, mailer-real's
 * outbox and hand-off, and the shared delivery workers' settle. Its bytes
 * live in a common/strbuf.
 */
#ifndef COMMON_PG_ARRAY_H
#define COMMON_PG_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"

#define PG_OID_INT8 20
#define PG_OID_TEXT 25
#define PG_OID_UUID 2950

struct pg_array {
	struct strbuf b;	/* header space, then the elements */
	int n;
	uint32_t oid;
	int has_null;
};

void pg_array_init(struct pg_array *a, uint32_t elem_oid);
void pg_array_reset(struct pg_array *a);
/* Appends an element of len bytes; len -1 appends NULL. */
void pg_array_add(struct pg_array *a, const void *p, int len);
/* Elements in their binary forms: text as its bytes (s NULL appends NULL),
 * a bigint big-endian,
 * a UUID given as 36 characters (8-4-4-4-12 hexadecimal digits, any case)
 * as its 16 bytes; pg_array_add_uuid returns -1, appending nothing, when s
 * is not one. */
void pg_array_add_text(struct pg_array *a, const char *s);
void pg_array_add_int8(struct pg_array *a, int64_t v);
int pg_array_add_uuid(struct pg_array *a, const char *s);
/*
 * The finished parameter value and its length (valid until the next add).
 * Send it with paramFormats 1 and a statement that casts the parameter to
 * an array of the element type ($1::bigint[]): the server checks the type.
 */
const char *pg_array_value(struct pg_array *a, int *len);
void pg_array_free(struct pg_array *a);

#endif
