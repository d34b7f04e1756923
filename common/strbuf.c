/* strbuf: see strbuf.h. Capacity doubles, so n adds cost O(total length). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static void
reserve(struct strbuf *b, size_t more)
{
	size_t cap;

	if (b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 64;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void
strbuf_add(struct strbuf *b, const char *s, size_t n)
{
	reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
strbuf_str(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

void
strbuf_json_string(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[7];
	size_t n;

	if (s == NULL) {
		strbuf_add(b, "null", 4);
		return;
	}
	strbuf_add(b, "\"", 1);
	while (*s != '\0') {
		/* the run that needs no escape */
		for (n = 0; s[n] != '\0' && s[n] != '"' && s[n] != '\\' &&
		    (unsigned char)s[n] >= 0x20; n++)
			;
		strbuf_add(b, s, n);
		s += n;
		if (*s == '\0')
			break;
		esc[0] = '\\';
		switch (*s) {
		case '"': esc[1] = '"'; n = 2; break;
		case '\\': esc[1] = '\\'; n = 2; break;
		case '\b': esc[1] = 'b'; n = 2; break;
		case '\f': esc[1] = 'f'; n = 2; break;
		case '\n': esc[1] = 'n'; n = 2; break;
		case '\r': esc[1] = 'r'; n = 2; break;
		case '\t': esc[1] = 't'; n = 2; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[((unsigned char)*s >> 4) & 0xf];
			esc[5] = hex[(unsigned char)*s & 0xf];
			n = 6;
			break;
		}
		strbuf_add(b, esc, n);
		s++;
	}
	strbuf_add(b, "\"", 1);
}

void
strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("strbuf_printf: bad format");
	reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
strbuf_truncate(struct strbuf *b, size_t len)
{
	if (b->p == NULL || len > b->len)
		return;
	b->len = len;
	b->p[len] = '\0';
}

char *
strbuf_take(struct strbuf *b)
{
	char *p = b->p != NULL ? b->p : xstrdup("");

	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

void
strbuf_free(struct strbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
