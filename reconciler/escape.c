/*
 * escape: see escape.h.
 */
#include "reconciler/escape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"

char *
escape_html(const char *s, size_t len)
{
	struct strbuf b = { NULL, 0, 0 };
	size_t i;

	strbuf_add(&b, "", 0);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '&': strbuf_add(&b, "&amp;", 5); break;
		case '<': strbuf_add(&b, "&lt;", 4); break;
		case '>': strbuf_add(&b, "&gt;", 4); break;
		case '"': strbuf_add(&b, "&quot;", 6); break;
		case '\'': strbuf_add(&b, "&#39;", 5); break;
		default:
			if (c < 0x20 && c != '\t' && c != '\n')
				break;
			if (c == 0x7f)
				break;
			strbuf_add(&b, (const char *)&s[i], 1);
		}
	}
	return b.p;
}

/* OWASP's CSV injection rule: a spreadsheet reads these as a formula. */
static int
formula_lead(char c)
{
	return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' ||
	    c == '\r';
}

char *
escape_csv(const char *s)
{
	struct strbuf b = { NULL, 0, 0 };
	int quote;

	if (s == NULL)
		return xstrdup("");
	quote = strpbrk(s, ",\"\r\n") != NULL || s[0] == ' ';
	if (!quote && !formula_lead(s[0]))
		return xstrdup(s);
	strbuf_add(&b, "", 0);
	if (quote)
		strbuf_add(&b, "\"", 1);
	if (formula_lead(s[0]))
		strbuf_add(&b, "'", 1);
	for (; *s; s++) {
		if (*s == '"')
			strbuf_add(&b, "\"\"", 2);
		else
			strbuf_add(&b, s, 1);
	}
	if (quote)
		strbuf_add(&b, "\"", 1);
	return b.p;
}

char *
escape_text(const char *s)
{
	struct strbuf b = { NULL, 0, 0 };
	char hex[16];

	strbuf_add(&b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '\r': strbuf_add(&b, "\\r", 2); break;
		case '\n': strbuf_add(&b, "\\n", 2); break;
		case '\t': strbuf_add(&b, "\\t", 2); break;
		case '\\': strbuf_add(&b, "\\\\", 2); break;
		case '"': strbuf_add(&b, "\\\"", 2); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(hex, sizeof(hex), "\\x%02x", c);
				strbuf_add(&b, hex, 4);
			} else if (c == 0xc2 && (unsigned char)s[1] >= 0x80 &&
			    (unsigned char)s[1] <= 0x9f) {
				/* a C1 control (U+0080..U+009F): CSI is one */
				snprintf(hex, sizeof(hex), "\\xc2\\x%02x",
				    (unsigned char)s[1]);
				strbuf_add(&b, hex, 8);
				s++;
			} else {
				strbuf_add(&b, s, 1);
			}
		}
	}
	strbuf_add(&b, "\"", 1);
	return b.p;
}

char *
escape_word(const char *s)
{
	const unsigned char *p;

	if (s == NULL)
		return xstrdup("-");
	for (p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' ||
		    (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
			break;
	if (*s != '\0' && *p == '\0')
		return xstrdup(s);
	return escape_text(s);
}
