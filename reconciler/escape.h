/*
 * escape: making untrusted text (a body is whatever a renderer produced)
 * safe for each report format. Every function returns a new string the
 * caller frees.
 */
#ifndef RECONCILER_ESCAPE_H
#define RECONCILER_ESCAPE_H

#include <stddef.h>

/* & < > " ' as entities; NUL and other C0 controls but \t \n dropped. */
char *escape_html(const char *s, size_t len);

/* One RFC 4180 field: quoted (with "" inside) when it holds , " CR or LF,
 * or starts with a space. A value a spreadsheet would run as a formula
 * (starting with = + - @ TAB or CR, OWASP's list) gets a leading '.
 * NULL becomes the empty field. */
char *escape_csv(const char *s);

/* A C-like quoted string: "..." with \r \n \t \\ \" and \xNN for other
 * control bytes (C1 controls too), so a text report stays one line per value. */
char *escape_text(const char *s);

/* For names and stamps in a line of words: s itself when it is printable
 * and holds no space, quote or backslash; else escape_text(s). NULL is "-". */
char *escape_word(const char *s);

#endif
