/*
 * strbuf: a growing NUL-terminated byte string, for building messages,
 * escaped text and rendered mail. Starts empty ({ NULL, 0, 0 } or
 * STRBUF_INIT); after any add, p is a valid C string of len bytes.
 * Allocation failure is fatal (common/util's x* functions).
 */
#ifndef COMMON_STRBUF_H
#define COMMON_STRBUF_H

#include <stddef.h>

struct strbuf {
	char *p;
	size_t len, cap;
};

#define STRBUF_INIT { NULL, 0, 0 }

void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_str(struct strbuf *b, const char *s);
void strbuf_printf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Appends s as a JSON string literal, quotes included, escaped as jansson's
 * json_dumps escapes it (", \, control characters; UTF-8 passes as is),
 * so a hand-built document reads byte for byte like a dumped one. s must
 * be valid UTF-8; s NULL appends null. With strbuf_printf for numbers, the
 * one way the programs write JSON text (jansson parses; its trees are for
 * documents whose shape varies: reports, run records, error bodies).
 */
void strbuf_json_string(struct strbuf *b, const char *s);
/* Keeps the first len bytes (len <= b->len) and the allocation. */
void strbuf_truncate(struct strbuf *b, size_t len);
/* The string, owned by the caller ("" when nothing was added); b is emptied. */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

#endif
