/*
 * escape: see escape.h.
 */
#include "reconciler/escape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct sb {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2 + 16;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

char *
escape_html(const char *s, size_t len)
{
	struct sb b = { NULL, 0, 0 };
	size_t i;

	sb_add(&b, "", 0);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '&': sb_add(&b, "&amp;", 5); break;
		case '<': sb_add(&b, "&lt;", 4); break;
		case '>': sb_add(&b, "&gt;", 4); break;
		case '"': sb_add(&b, "&quot;", 6); break;
		case '\'': sb_add(&b, "&#39;", 5); break;
		default:
			if (c < 0x20 && c != '\t' && c != '\n')
				break;
			if (c == 0x7f)
				break;
			sb_add(&b, (const char *)&s[i], 1);
		}
	}
	return b.p;
}

char *
escape_csv(const char *s)
{
	struct sb b = { NULL, 0, 0 };

	if (s == NULL)
		return xstrdup("");
	if (strpbrk(s, ",\"\r\n") == NULL && s[0] != ' ')
		return xstrdup(s);
	sb_add(&b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"')
			sb_add(&b, "\"\"", 2);
		else
			sb_add(&b, s, 1);
	}
	sb_add(&b, "\"", 1);
	return b.p;
}

char *
escape_text(const char *s)
{
	struct sb b = { NULL, 0, 0 };
	char hex[8];

	sb_add(&b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '\r': sb_add(&b, "\\r", 2); break;
		case '\n': sb_add(&b, "\\n", 2); break;
		case '\t': sb_add(&b, "\\t", 2); break;
		case '\\': sb_add(&b, "\\\\", 2); break;
		case '"': sb_add(&b, "\\\"", 2); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(hex, sizeof(hex), "\\x%02x", c);
				sb_add(&b, hex, 4);
			} else {
				sb_add(&b, s, 1);
			}
		}
	}
	sb_add(&b, "\"", 1);
	return b.p;
}
