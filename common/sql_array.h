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

#endif
