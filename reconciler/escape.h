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
 * or starts with a space. NULL becomes the empty field. */
char *escape_csv(const char *s);

/* A C-like quoted string: "..." with \r \n \t \\ \" and \xNN for other
 * control bytes, so a text report stays one line per value. */
char *escape_text(const char *s);

#endif
