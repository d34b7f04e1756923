/*
 * validate: see validate.h. jansson does the parsing (with duplicate keys
 * rejected and NUL allowed inside strings, so that a NUL is reported
 * against its member instead of as a bare syntax error); everything else
 * is checked here, member by member, from the caller's table.
 */
#include "validate.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

int
validate_fail(struct validate_error *e, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	/* a truncated name would be a wrong name */
	if (field != NULL && strlen(field) >= sizeof(e->field))
		e->field[0] = '\0';
	return -1;
}

/*
 * Which top-level member holds byte pos of a JSON text: a small scanner
 * that tracks strings and nesting, enough to put a name on a parse error.
 */
static void
member_at(const char *buf, size_t len, size_t pos, char *out, size_t outlen)
{
	size_t i, start = 0;
	int depth = 0, in_str = 0, esc = 0, is_key = 0, expect_key = 0;
	int key_done = 0, key_clean = 1;

	out[0] = '\0';
	if (pos > len)
		pos = len;
	for (i = 0; i < pos; i++) {
		char c = buf[i];

		if (in_str) {
			if (esc) {
				esc = 0;
			} else if (c == '\\') {
				esc = 1;
				key_clean = 0;
			} else if (c == '"') {
				in_str = 0;
				if (is_key && key_clean && i - start < outlen) {
					memcpy(out, buf + start, i - start);
					out[i - start] = '\0';
					key_done = 1;
				}
			} else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f) {
				key_clean = 0;
			}
			continue;
		}
		switch (c) {
		case '"':
			in_str = 1;
			start = i + 1;
			is_key = depth == 1 && expect_key;
			if (is_key) {
				expect_key = 0;
				key_done = 0;
				key_clean = 1;
				out[0] = '\0';
			}
			break;
		case '{':
		case '[':
			depth++;
			if (depth == 1)
				expect_key = 1;
			break;
		case '}':
		case ']':
			depth--;
			break;
		case ',':
			if (depth == 1) {
				expect_key = 1;
				key_done = 0;
				out[0] = '\0';
			}
			break;
		default:
			break;
		}
	}
	if (!key_done || (in_str && is_key))
		out[0] = '\0';
}

json_t *
validate_parse_object(const char *body, size_t len, struct validate_error *e)
{
	json_error_t jerr;
	json_t *root;
	char field[64];

	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (root == NULL) {
		member_at(body, len, (size_t)jerr.position, field, sizeof(field));
		validate_fail(e, field[0] ? field : NULL, "invalid JSON: %s%s%s",
		    jerr.text, field[0] ? " in " : "", field);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		validate_fail(e, NULL, "the body must be a JSON object");
		return NULL;
	}
	return root;
}

int
validate_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned c = *p;
		size_t n, i;
		unsigned long cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) <= n)
			return 0;
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += n + 1;
	}
	return 1;
}

int
validate_text(const char *s, size_t len, const char *field, size_t max_len,
    int allow_empty, struct validate_error *e)
{
	size_t i;

	if (max_len == 0)
		max_len = VALIDATE_TEXT_MAX_DEFAULT;
	if (len == 0 && !allow_empty)
		return validate_fail(e, field, "%s must not be empty", field);
	if (len > max_len)
		return validate_fail(e, field, "%s is longer than %zu bytes", field,
		    max_len);
	if (!validate_utf8(s, len))
		return validate_fail(e, field, "%s is not valid UTF-8", field);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		/* C1 controls U+0080..U+009F are encoded C2 80..C2 9F */
		if (c < 0x20 || c == 0x7f ||
		    (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] <= 0x9f))
			return validate_fail(e, field,
			    "%s must not contain control characters (CR, LF, NUL, ...)",
			    field);
	}
	return 0;
}

static size_t
skip_ws(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
	    s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is '"': the index just past the closing quote. */
static size_t
skip_string(const char *s, size_t i, size_t len)
{
	for (i++; i < len && s[i] != '"'; i++)
		if (s[i] == '\\')
			i++;
	return i < len ? i + 1 : len;
}

static size_t
skip_value(const char *s, size_t i, size_t len)
{
	int depth = 0;

	if (i < len && s[i] == '"')
		return skip_string(s, i, len);
	if (i < len && s[i] != '{' && s[i] != '[') {
		while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
		    s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			i++;
		return i;
	}
	while (i < len) {
		if (s[i] == '"') {
			i = skip_string(s, i, len);
			continue;
		}
		if (s[i] == '{' || s[i] == '[')
			depth++;
		else if (s[i] == '}' || s[i] == ']')
			depth--;
		i++;
		if (depth == 0)
			break;
	}
	return i;
}

static int
key_is(const char *s, size_t klen, const char *name)
{
	json_t *k;
	int same;

	if (memchr(s + 1, '\\', klen - 2) == NULL)
		return klen - 2 == strlen(name) && memcmp(s + 1, name, klen - 2) == 0;
	k = json_loadb(s, klen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	same = json_is_string(k) && json_string_length(k) == strlen(name) &&
	    memcmp(json_string_value(k), name, json_string_length(k)) == 0;
	json_decref(k);
	return same;
}

/*
 * The raw text of top-level member `name` of the JSON object in
 * body[0..len), which jansson has already accepted (so the scan can trust
 * the grammar and needs to track only strings and nesting). Keys are
 * compared decoded: "tot\u0061l" is "total". 0 with *off and *vlen set,
 * -1 when there is no such member.
 */
static int
member_text(const char *body, size_t len, const char *name, size_t *off,
    size_t *vlen)
{
	size_t i = skip_ws(body, 0, len), k;

	if (i >= len || body[i] != '{')
		return -1;
	i = skip_ws(body, i + 1, len);
	while (i < len && body[i] == '"') {
		k = skip_string(body, i, len);
		if (k - i < 2)
			return -1;
		if (key_is(body + i, k - i, name)) {
			i = skip_ws(body, k, len);
			i = skip_ws(body, i + 1, len);	/* past ':' */
			*off = i;
			*vlen = skip_value(body, i, len) - i;
			return 0;
		}
		i = skip_ws(body, k, len);
		i = skip_ws(body, i + 1, len);
		i = skip_ws(body, skip_value(body, i, len), len);
		if (i < len && body[i] == ',')
			i = skip_ws(body, i + 1, len);
	}
	return -1;
}

int
validate_money_text(const char *text, size_t len, const char *field,
    int64_t *cents, struct validate_error *e)
{
	const char *p = text, *end = text + len;
	size_t nd = 0, ndigits_total = 0, trailing_zeros = 0;
	long long exp10 = 0, ex = 0;
	int exneg = 0, in_frac = 0;
	int64_t v = 0;
	char digits[16];	/* the first significant digits: 12 reach the cap */
	size_t i;

	if (p < end && *p == '-')
		return validate_fail(e, field, "%s must not be negative", field);
	if (p == end || (*p < '0' || *p > '9'))
		return validate_fail(e, field, "%s must be a number", field);
	/*
	 * value = D * 10^exp10 with D the digits read so far. Leading zeros
	 * are dropped; a run of zeros is held back (trailing_zeros) until a
	 * non-zero digit follows, so that 320.000 is 32 * 10^1 and not a
	 * number with three decimals.
	 */
	for (; p < end && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
		if (*p == '.') {
			in_frac = 1;
			continue;
		}
		if (in_frac)
			exp10--;
		if (*p == '0') {
			if (nd > 0)
				trailing_zeros++;
			continue;
		}
		/* flush the zeros held back: they sit between two digits */
		while (trailing_zeros > 0) {
			if (nd < sizeof(digits))
				digits[nd] = '0';
			nd++;
			trailing_zeros--;
		}
		if (nd < sizeof(digits))
			digits[nd] = *p;
		nd++;
	}
	ndigits_total = nd;
	/* the zeros after the last non-zero digit scale D instead */
	exp10 += (long long)trailing_zeros;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			exneg = *p++ == '-';
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			if (ex < 1000000000LL)
				ex = ex * 10 + (*p - '0');
		exp10 += exneg ? -ex : ex;
	}
	if (p != end)
		return validate_fail(e, field, "%s must be a number", field);
	if (ndigits_total == 0) {
		*cents = 0;
		return 0;
	}
	if (exp10 < -2)
		return validate_fail(e, field, "%s must have at most two decimals",
		    field);
	/* cents = D * 10^(exp10 + 2): more than 12 digits is over the cap */
	if ((long long)ndigits_total + exp10 + 2 > 12)
		return validate_fail(e, field, "%s must be at most %lld", field,
		    VALIDATE_MONEY_MAX_CENTS / 100);
	for (i = 0; i < ndigits_total; i++)
		v = v * 10 + (digits[i] - '0');
	for (ex = 0; ex < exp10 + 2; ex++)
		v *= 10;
	if (v > VALIDATE_MONEY_MAX_CENTS)
		return validate_fail(e, field, "%s must be at most %lld", field,
		    VALIDATE_MONEY_MAX_CENTS / 100);
	*cents = v;
	return 0;
}

int
validate_money(const json_t *v, const char *body, size_t len,
    const char *field, int64_t *cents, struct validate_error *e)
{
	size_t off, vlen;

	if (!json_is_number(v))
		return validate_fail(e, field, "%s must be a number", field);
	if (body == NULL || member_text(body, len, field, &off, &vlen) != 0)
		return validate_fail(e, field, "%s: the number's text is not at "
		    "the top level of the document", field);
	return validate_money_text(body + off, vlen, field, cents, e);
}

static int
one_field(const json_t *v, const char *body, size_t len,
    const struct validate_field *f, void *target, struct validate_error *e)
{
	char *dst = (char *)target + f->offset;

	switch (f->type) {
	case VALIDATE_TEXT:
		if (!json_is_string(v))
			return validate_fail(e, f->name, "%s must be a string", f->name);
		if (validate_text(json_string_value(v), json_string_length(v),
		    f->name, f->max_len, f->allow_empty, e) == -1)
			return -1;
		*(const char **)(void *)dst = json_string_value(v);
		return 0;
	case VALIDATE_UUID: {
		const char *s;
		size_t i;

		if (!json_is_string(v))
			return validate_fail(e, f->name, "%s must be a string", f->name);
		s = json_string_value(v);
		if (json_string_length(v) != IDS_UUID_LEN || !ids_uuid_valid(s))
			return validate_fail(e, f->name,
			    "%s must be a UUID (8-4-4-4-12 hex digits)", f->name);
		for (i = 0; i <= IDS_UUID_LEN; i++)
			dst[i] = (char)tolower((unsigned char)s[i]);
		return 0;
	}
	case VALIDATE_INT: {
		json_int_t n;

		if (!json_is_integer(v))
			return validate_fail(e, f->name, "%s must be an integer", f->name);
		n = json_integer_value(v);
		if (n < f->min || n > f->max)
			return validate_fail(e, f->name, "%s must be in %lld..%lld",
			    f->name, (long long)f->min, (long long)f->max);
		*(int64_t *)(void *)dst = (int64_t)n;
		return 0;
	}
	case VALIDATE_MONEY:
		return validate_money(v, body, len, f->name,
		    (int64_t *)(void *)dst, e);
	}
	return validate_fail(e, f->name, "%s: unknown type", f->name);
}

int
validate_object(const json_t *obj, const char *body, size_t len,
    const struct validate_field *fields, void *target,
    struct validate_error *e)
{
	const struct validate_field *f;
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return validate_fail(e, NULL, "the body must be a JSON object");
	/* json_object_foreach wants a non-const object; it does not modify it. */
	json_object_foreach((json_t *)obj, key, v) {
		for (f = fields; f->name != NULL; f++)
			if (strcmp(f->name, key) == 0)
				break;
		if (f->name == NULL)
			return validate_fail(e, key, "unknown field '%.64s'", key);
	}
	for (f = fields; f->name != NULL; f++) {
		v = json_object_get(obj, f->name);
		if (v == NULL) {
			if (f->required)
				return validate_fail(e, f->name, "%s is required", f->name);
			continue;
		}
		if (one_field(v, body, len, f, target, e) == -1)
			return -1;
	}
	return 0;
}
