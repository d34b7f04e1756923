/*
 * sql_array: builds PostgreSQL array literals ({"a","b",NULL}, {1,2}) to
 * send a whole batch as one parameter that the server unnest()s, so a batch
 * of a hundred rows costs one statement, not a hundred. Used by the
 * monolith's outbox writer and by the shared delivery workers.
 */
#ifndef COMMON_SQL_ARRAY_H
#define COMMON_SQL_ARRAY_H

#include <stddef.h>
#include <stdint.h>

struct sql_array {
	char *p;
	size_t len, cap;
	int n;
};

/* Appends an element; s NULL appends SQL NULL. */
void sql_array_text(struct sql_array *a, const char *s);
void sql_array_int(struct sql_array *a, int64_t v);
/* Closes the literal ("{}" when empty) and returns it; owned by a. */
const char *sql_array_done(struct sql_array *a);
/* Frees the text; a can be reused after. */
void sql_array_free(struct sql_array *a);

/*
 * The same in PostgreSQL's binary array format (a parameter sent with
 * paramFormats 1): the server copies each element instead of parsing a
 * literal, and a text element needs no escaping. One dimension, no NULLs.
 * Element types: SQL_BIN_TEXT (text), SQL_BIN_INT8 (bigint), SQL_BIN_UUID.
 */
#define SQL_BIN_INT8	20u
#define SQL_BIN_TEXT	25u
#define SQL_BIN_UUID	2950u

struct sql_binarray {
	char *p;
	size_t len, cap;
	uint32_t elem_oid;
	int32_t n;
};

void sql_binarray_init(struct sql_binarray *a, uint32_t elem_oid);
void sql_binarray_text(struct sql_binarray *a, const char *s);
void sql_binarray_int8(struct sql_binarray *a, int64_t v);
/* s: a UUID as 36 characters, 8-4-4-4-12 hexadecimal digits (any case).
 * -1 (nothing appended) when it is not one. */
int sql_binarray_uuid(struct sql_binarray *a, const char *s);
/* The parameter's bytes and their number; owned by a. */
const char *sql_binarray_done(struct sql_binarray *a, int *len);
void sql_binarray_free(struct sql_binarray *a);

#endif
