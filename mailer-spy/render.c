/*
 * render: see render.h. A template is parsed once into a list of pieces
 * (literal text or a placeholder); rendering walks the pieces into a
 * growing string. The destination is computed code point by code point.
 */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"

enum piece_kind { PIECE_TEXT, PIECE_ID, PIECE_SHIP_TO, PIECE_TOTAL,
	PIECE_DESTINATION };

static const struct {
	const char *name;
	enum piece_kind kind;
} placeholders[] = {
	{ "id", PIECE_ID },
	{ "shipTo", PIECE_SHIP_TO },
	{ "total", PIECE_TOTAL },
	{ "destination", PIECE_DESTINATION },
};

struct piece {
	enum piece_kind kind;
	char *text;		/* PIECE_TEXT */
	size_t len;
};

struct render_template {
	struct piece *pieces;
	size_t n;
};

const char render_default_body[] =
    "Hello {shipTo},\n"
    "\n"
    "Payroll {id} shipped to {shipTo} of {total}.\n";

static const char subject_text[] = "Payroll {id} shipped";

static void
add_piece(struct render_template *t, enum piece_kind kind, struct strbuf *text)
{
	struct piece *pc;

	if (kind == PIECE_TEXT && text->len == 0)
		return;
	t->pieces = xrealloc(t->pieces, (t->n + 1) * sizeof(*t->pieces));
	pc = &t->pieces[t->n++];
	pc->kind = kind;
	pc->text = NULL;
	pc->len = 0;
	if (kind == PIECE_TEXT) {
		pc->text = text->p;
		pc->len = text->len;
		text->p = NULL;
		text->len = text->cap = 0;
	}
}

struct render_template *
render_template_parse(const char *s, size_t len, char *err, size_t errlen)
{
	struct render_template *t = xcalloc(1, sizeof(*t));
	struct strbuf lit = { 0 };
	size_t i = 0, j, k;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];

		if (c == '{' && i + 1 < len && s[i + 1] == '{') {
			strbuf_add(&lit, "{", 1);
			i += 2;
		} else if (c == '}' && i + 1 < len && s[i + 1] == '}') {
			strbuf_add(&lit, "}", 1);
			i += 2;
		} else if (c == '{') {
			for (j = i + 1; j < len && s[j] != '}' && s[j] != '{' &&
			    s[j] != '\n'; j++)
				;
			if (j >= len || s[j] != '}') {
				snprintf(err, errlen, "template: '{' at byte %zu is not "
				    "closed (write {{ for a literal brace)", i);
				goto fail;
			}
			for (k = 0; k < nitems(placeholders); k++)
				if (strlen(placeholders[k].name) == j - i - 1 &&
				    memcmp(placeholders[k].name, s + i + 1, j - i - 1) == 0)
					break;
			if (k == nitems(placeholders)) {
				snprintf(err, errlen, "template: unknown placeholder "
				    "'{%.*s}' (known: {id} {shipTo} {total} {destination})",
				    (int)(j - i - 1 > 40 ? 40 : j - i - 1), s + i + 1);
				goto fail;
			}
			add_piece(t, PIECE_TEXT, &lit);
			add_piece(t, placeholders[k].kind, &lit);
			i = j + 1;
		} else if (c == '}') {
			snprintf(err, errlen, "template: stray '}' at byte %zu (write }} "
			    "for a literal brace)", i);
			goto fail;
		} else if (c == '\r' && i + 1 < len && s[i + 1] == '\n') {
			strbuf_add(&lit, "\r\n", 2);
			i += 2;
		} else if (c == '\n') {
			strbuf_add(&lit, "\r\n", 2);
			i++;
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			snprintf(err, errlen, "template: control character 0x%02x at "
			    "byte %zu", c, i);
			goto fail;
		} else {
			strbuf_add(&lit, s + i, 1);
			i++;
		}
	}
	add_piece(t, PIECE_TEXT, &lit);
	return t;
fail:
	free(lit.p);
	render_template_free(t);
	return NULL;
}

struct render_template *
render_template_load(const char *path, char *err, size_t errlen)
{
	struct render_template *t = NULL;
	char *buf = xmalloc(RENDER_TEMPLATE_MAX + 1);
	size_t n;
	FILE *fp;

	if ((fp = fopen(path, "rb")) == NULL) {
		snprintf(err, errlen, "template %s: %s", path, strerror(errno));
		goto out;
	}
	n = fread(buf, 1, RENDER_TEMPLATE_MAX + 1, fp);
	if (ferror(fp)) {
		snprintf(err, errlen, "template %s: read error", path);
	} else if (n > RENDER_TEMPLATE_MAX) {
		snprintf(err, errlen, "template %s: larger than %d bytes", path,
		    RENDER_TEMPLATE_MAX);
	} else if (memchr(buf, '\0', n) != NULL) {
		snprintf(err, errlen, "template %s: contains a NUL byte", path);
	} else {
		t = render_template_parse(buf, n, err, errlen);
	}
	fclose(fp);
out:
	free(buf);
	return t;
}

void
render_template_free(struct render_template *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		free(t->pieces[i].text);
	free(t->pieces);
	free(t);
}

/*
 * Latin-1 Supplement and Latin Extended-A letters, as ranges of code
 * points that fold to one ASCII spelling. × (U+00D7) and ÷ (U+00F7) are
 * not letters and are in no range.
 */
static const struct fold {
	uint32_t first, last;
	const char *ascii;
} folds[] = {
	{ 0x00c0, 0x00c5, "a" }, { 0x00c6, 0x00c6, "ae" }, { 0x00c7, 0x00c7, "c" },
	{ 0x00c8, 0x00cb, "e" }, { 0x00cc, 0x00cf, "i" }, { 0x00d0, 0x00d0, "d" },
	{ 0x00d1, 0x00d1, "n" }, { 0x00d2, 0x00d6, "o" }, { 0x00d8, 0x00d8, "o" },
	{ 0x00d9, 0x00dc, "u" }, { 0x00dd, 0x00dd, "y" }, { 0x00de, 0x00de, "th" },
	{ 0x00df, 0x00df, "ss" },
	{ 0x00e0, 0x00e5, "a" }, { 0x00e6, 0x00e6, "ae" }, { 0x00e7, 0x00e7, "c" },
	{ 0x00e8, 0x00eb, "e" }, { 0x00ec, 0x00ef, "i" }, { 0x00f0, 0x00f0, "d" },
	{ 0x00f1, 0x00f1, "n" }, { 0x00f2, 0x00f6, "o" }, { 0x00f8, 0x00f8, "o" },
	{ 0x00f9, 0x00fc, "u" }, { 0x00fd, 0x00fd, "y" }, { 0x00fe, 0x00fe, "th" },
	{ 0x00ff, 0x00ff, "y" },
	{ 0x0100, 0x0105, "a" }, { 0x0106, 0x010d, "c" }, { 0x010e, 0x0111, "d" },
	{ 0x0112, 0x011b, "e" }, { 0x011c, 0x0123, "g" }, { 0x0124, 0x0127, "h" },
	{ 0x0128, 0x0131, "i" }, { 0x0132, 0x0133, "ij" }, { 0x0134, 0x0135, "j" },
	{ 0x0136, 0x0138, "k" }, { 0x0139, 0x0142, "l" }, { 0x0143, 0x014b, "n" },
	{ 0x014c, 0x0151, "o" }, { 0x0152, 0x0153, "oe" }, { 0x0154, 0x0159, "r" },
	{ 0x015a, 0x0161, "s" }, { 0x0162, 0x0167, "t" }, { 0x0168, 0x0173, "u" },
	{ 0x0174, 0x0175, "w" }, { 0x0176, 0x0178, "y" }, { 0x0179, 0x017e, "z" },
	{ 0x017f, 0x017f, "s" },
};

static const char *
fold_letter(uint32_t cp)
{
	size_t i;

	for (i = 0; i < nitems(folds); i++)
		if (cp >= folds[i].first && cp <= folds[i].last)
			return folds[i].ascii;
	return NULL;
}

/* Decodes one code point; returns bytes used, 0 on malformed UTF-8. */
static size_t
decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
	static const uint32_t min_of[] = { 0, 0x80, 0x800, 0x10000 };
	size_t n, i;
	uint32_t v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		v = s[0] & 0x1fu;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		v = s[0] & 0x0fu;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		v = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3fu);
	}
	if (v < min_of[n - 1] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

static int
ascii_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* RFC 5322 atext, ASCII only. */
static int
atext(int c)
{
	return ascii_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Runs of atext joined by single dots: no dot first, last or doubled. */
static int
dot_atom(const char *s, size_t len)
{
	size_t i;
	int prev_dot = 1;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (prev_dot)
				return 0;
			prev_dot = 1;
		} else if (atext((unsigned char)s[i])) {
			prev_dot = 0;
		} else {
			return 0;
		}
	}
	return !prev_dot;
}

/* Host name: labels of letters, digits and inner hyphens, two or more. */
static int
host_name(const char *s, size_t len)
{
	size_t start = 0, i, labels = 0;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			if (!ascii_alnum((unsigned char)s[i]) && s[i] != '-')
				return 0;
			continue;
		}
		if (i == start || i - start > 63 || s[start] == '-' || s[i - 1] == '-')
			return 0;
		labels++;
		start = i + 1;
	}
	return labels >= 2;
}

int
render_domain_ok(const char *domain)
{
	return domain != NULL && host_name(domain, strlen(domain));
}

static char *
address_destination(const char *ship_to, char *err, size_t errlen)
{
	const char *at = strrchr(ship_to, '@');
	size_t local_len = (size_t)(at - ship_to), host_len = strlen(at + 1), i;
	char *out;

	if (local_len > RENDER_LOCAL_MAX || !dot_atom(ship_to, local_len)) {
		snprintf(err, errlen, "shipTo is not a usable e-mail address: the "
		    "part before '@' must be 1 to %d ASCII characters (letters, "
		    "digits, !#$%%&'*+-/=?^_`{|}~ and single inner dots)",
		    RENDER_LOCAL_MAX);
		return NULL;
	}
	if (!host_name(at + 1, host_len)) {
		snprintf(err, errlen, "shipTo is not a usable e-mail address: the "
		    "part after '@' must be a host name like example.com");
		return NULL;
	}
	if (local_len + 1 + host_len > RENDER_ADDRESS_MAX) {
		snprintf(err, errlen, "shipTo is longer than an e-mail address may "
		    "be (%d bytes)", RENDER_ADDRESS_MAX);
		return NULL;
	}
	out = xstrdup(ship_to);
	for (i = local_len + 1; out[i] != '\0'; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] + ('a' - 'A'));
	return out;
}

static char *
name_destination(const char *ship_to, const char *mail_domain, char *err,
    size_t errlen)
{
	const unsigned char *p = (const unsigned char *)ship_to;
	size_t avail = strlen(ship_to), used;
	struct strbuf local = { 0 };
	char one[2] = { 0, 0 };
	const char *add;
	uint32_t cp;
	char *out;

	while (avail > 0) {
		if ((used = decode(p, avail, &cp)) == 0) {
			snprintf(err, errlen, "shipTo is not valid UTF-8");
			goto fail;
		}
		if (cp == ' ') {
			add = ".";
		} else if (cp < 0x80 && (ascii_alnum((int)cp) || cp == '-' ||
		    cp == '_' || cp == '\'' || cp == '.')) {
			one[0] = (char)(cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp);
			add = one;
		} else if ((add = fold_letter(cp)) == NULL) {
			snprintf(err, errlen, "shipTo cannot make a mail address: "
			    "U+%04" PRIX32 " is not a letter, digit, space, '.', "
			    "'-', '_' or '''", cp);
			goto fail;
		}
		strbuf_str(&local, add);
		if (local.len > RENDER_LOCAL_MAX) {
			snprintf(err, errlen, "shipTo is too long to make a mail "
			    "address (at most %d characters)", RENDER_LOCAL_MAX);
			goto fail;
		}
		p += used;
		avail -= used;
	}
	if (!dot_atom(local.p ? local.p : "", local.len)) {
		snprintf(err, errlen, "shipTo cannot make a mail address: it must "
		    "not be empty, start or end with a space or '.', or have two "
		    "in a row");
		goto fail;
	}
	out = xasprintf("%s@%s", local.p, mail_domain);
	free(local.p);
	if (strlen(out) > RENDER_ADDRESS_MAX) {
		snprintf(err, errlen, "shipTo makes an address longer than %d bytes",
		    RENDER_ADDRESS_MAX);
		free(out);
		return NULL;
	}
	return out;
fail:
	free(local.p);
	return NULL;
}

char *
render_destination(const char *ship_to, const char *mail_domain, char *err,
    size_t errlen)
{
	size_t len, i;

	if (ship_to == NULL || *ship_to == '\0') {
		snprintf(err, errlen, "shipTo must not be empty");
		return NULL;
	}
	len = strlen(ship_to);
	if (len > RENDER_SHIP_TO_MAX) {
		snprintf(err, errlen, "shipTo is longer than %d bytes",
		    RENDER_SHIP_TO_MAX);
		return NULL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)ship_to[i];

		if (c < 0x20 || c == 0x7f) {
			snprintf(err, errlen, "shipTo must not contain control "
			    "characters (byte 0x%02x)", c);
			return NULL;
		}
	}
	if (strchr(ship_to, '@') != NULL)
		return address_destination(ship_to, err, errlen);
	return name_destination(ship_to, mail_domain, err, errlen);
}

static char *
expand(const struct render_template *t, int64_t id, const char *ship_to,
    const char *total, const char *destination)
{
	struct strbuf b = { 0 };
	char num[32];
	size_t i;

	for (i = 0; i < t->n; i++) {
		const struct piece *pc = &t->pieces[i];

		switch (pc->kind) {
		case PIECE_TEXT:
			strbuf_add(&b, pc->text, pc->len);
			break;
		case PIECE_ID:
			snprintf(num, sizeof(num), "%" PRId64, id);
			strbuf_str(&b, num);
			break;
		case PIECE_SHIP_TO:
			strbuf_str(&b, ship_to);
			break;
		case PIECE_TOTAL:
			strbuf_str(&b, total);
			break;
		case PIECE_DESTINATION:
			strbuf_str(&b, destination);
			break;
		}
	}
	return strbuf_take(&b);
}

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static struct render_template *subject_t, *default_t;

/* The built-in templates cannot fail to parse; built once, kept. */
static void
builtin_init(void)
{
	char err[128];

	subject_t = render_template_parse(subject_text, sizeof(subject_text) - 1,
	    err, sizeof(err));
	default_t = render_template_parse(render_default_body,
	    sizeof(render_default_body) - 1, err, sizeof(err));
}

int
render_mail(const struct render_template *body, int64_t payroll_id,
    const char *ship_to, int64_t total_cents, const char *mail_domain,
    struct render_mail *out, char *err, size_t errlen)
{
	char total[32];

	memset(out, 0, sizeof(*out));
	pthread_once(&builtin_once, builtin_init);
	if (body == NULL)
		body = default_t;
	if (total_cents < 0) {
		snprintf(err, errlen, "total must not be negative");
		return -1;
	}
	out->destination = render_destination(ship_to, mail_domain, err, errlen);
	if (out->destination == NULL)
		return -1;
	snprintf(total, sizeof(total), "%" PRId64 ".%02d", total_cents / 100,
	    (int)(total_cents % 100));
	out->subject = expand(subject_t, payroll_id, ship_to, total,
	    out->destination);
	out->body = expand(body, payroll_id, ship_to, total, out->destination);
	return 0;
}

void
render_mail_clear(struct render_mail *m)
{
	if (m == NULL)
		return;
	free(m->destination);
	free(m->subject);
	free(m->body);
	m->destination = m->subject = m->body = NULL;
}
