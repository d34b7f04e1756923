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
/* The string, owned by the caller ("" when nothing was added); b is emptied. */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

#endif
