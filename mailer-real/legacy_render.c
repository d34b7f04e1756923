/*
 * legacy_render: see legacy_render.h. Plain string building on purpose:
 * every piece of the mail is appended with snprintf into a buffer sized up
 * front, the way the monolith always did it. mailer-spy renders the same
 * mail its own way; nothing here is shared with it.
 *
 * Destination rule (docs/MAILER-REAL.md has the table):
 *  - shipTo with an '@' must be a plain address: a dot-atom local part of
 *    ASCII atext (kept as written) and a host name of letter/digit/hyphen
 *    labels, at least two of them (lower-cased).
 *  - otherwise shipTo is a name: ASCII letters are lower-cased, Latin
 *    letters with diacritics fold to their ASCII base ("Núñez" -> "nunez"),
 *    digits and - _ ' . stay, each space becomes '.'; anything else, an
 *    empty part between dots, or more than 64 bytes is refused. Folding
 *    keeps the address ASCII: SMTP servers without SMTPUTF8 (most of them,
 *    and libesmtp itself) refuse an 8-bit address outright.
 */
#include "legacy_render.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define SHIP_TO_MAX 256		/* bytes */
#define LOCAL_MAX 64

/*
 * U+00C0..U+017F folded to ASCII, one entry per code point: "" marks a
 * character that is not a letter (x and division signs) and so is refused.
 */
static const char *const latin_fold[] = {
	/* U+00C0 */ "a", "a", "a", "a", "a", "a", "ae", "c",
	/* U+00C8 */ "e", "e", "e", "e", "i", "i", "i", "i",
	/* U+00D0 */ "d", "n", "o", "o", "o", "o", "o", "",
	/* U+00D8 */ "o", "u", "u", "u", "u", "y", "th", "ss",
	/* U+00E0 */ "a", "a", "a", "a", "a", "a", "ae", "c",
	/* U+00E8 */ "e", "e", "e", "e", "i", "i", "i", "i",
	/* U+00F0 */ "d", "n", "o", "o", "o", "o", "o", "",
	/* U+00F8 */ "o", "u", "u", "u", "u", "y", "th", "y",
	/* U+0100 */ "a", "a", "a", "a", "a", "a", "c", "c",
	/* U+0108 */ "c", "c", "c", "c", "c", "c", "d", "d",
	/* U+0110 */ "d", "d", "e", "e", "e", "e", "e", "e",
	/* U+0118 */ "e", "e", "e", "e", "g", "g", "g", "g",
	/* U+0120 */ "g", "g", "g", "g", "h", "h", "h", "h",
	/* U+0128 */ "i", "i", "i", "i", "i", "i", "i", "i",
	/* U+0130 */ "i", "i", "ij", "ij", "j", "j", "k", "k",
	/* U+0138 */ "k", "l", "l", "l", "l", "l", "l", "l",
	/* U+0140 */ "l", "l", "l", "n", "n", "n", "n", "n",
	/* U+0148 */ "n", "n", "n", "n", "o", "o", "o", "o",
	/* U+0150 */ "o", "o", "oe", "oe", "r", "r", "r", "r",
	/* U+0158 */ "r", "r", "s", "s", "s", "s", "s", "s",
	/* U+0160 */ "s", "s", "t", "t", "t", "t", "t", "t",
	/* U+0168 */ "u", "u", "u", "u", "u", "u", "u", "u",
	/* U+0170 */ "u", "u", "u", "u", "w", "w", "y", "y",
	/* U+0178 */ "y", "z", "z", "z", "z", "z", "z", "s",
};

/*
 * Decodes one UTF-8 sequence at s (strict: no overlongs, no surrogates,
 * nothing past U+10FFFF); returns its length, 0 when malformed.
 */
static size_t
utf8_next(const unsigned char *s, uint32_t *cp)
{
	uint32_t c;
	size_t n, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		c = s[0] & 0x1f;
		n = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		c = s[0] & 0x0f;
		n = 3;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		c = s[0] & 0x07;
		n = 4;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static int
is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* A dot-atom: atext runs separated by single dots. */
static int
dot_atom_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return 0;
		} else if (!is_atext((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

/* Letter/digit/hyphen labels, at least two, each 1..63, 253 in all. */
static int
host_ok(const char *s, size_t len)
{
	size_t i, label = 0, labels = 1;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			labels++;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return 0;
		if (c == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	if (label == 0 || s[len - 1] == '-')
		return 0;
	return labels >= 2;
}

int
legacy_domain_ok(const char *mail_domain)
{
	return mail_domain != NULL && host_ok(mail_domain, strlen(mail_domain));
}

static int
address_form(const char *ship_to, char *out, size_t outlen, char *err,
    size_t errlen)
{
	const char *at = strrchr(ship_to, '@');
	size_t local = (size_t)(at - ship_to), host = strlen(at + 1), i;

	if (local > LOCAL_MAX || !dot_atom_ok(ship_to, local)) {
		snprintf(err, errlen, "shipTo is not a valid e-mail address "
		    "(its local part must be plain ASCII, 1 to 64 characters)");
		return -1;
	}
	if (!host_ok(at + 1, host)) {
		snprintf(err, errlen, "shipTo is not a valid e-mail address "
		    "(its domain must be a host name such as example.com)");
		return -1;
	}
	if (local + 1 + host > LEGACY_ADDR_MAX || local + 1 + host >= outlen) {
		snprintf(err, errlen, "shipTo is too long for an e-mail address");
		return -1;
	}
	memcpy(out, ship_to, local + 1);
	for (i = 0; i < host; i++) {
		char c = at[1 + i];
		out[local + 1 + i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[local + 1 + host] = '\0';
	return 0;
}

static int
name_form(const char *ship_to, const char *mail_domain, char *out,
    size_t outlen, char *err, size_t errlen)
{
	const unsigned char *p = (const unsigned char *)ship_to;
	char local[LOCAL_MAX + 1];
	size_t n = 0, step, add;
	uint32_t cp;
	const char *piece;
	char one[2] = "";

	while (*p != '\0') {
		step = utf8_next(p, &cp);
		if (step == 0) {
			snprintf(err, errlen, "shipTo is not valid UTF-8");
			return -1;
		}
		piece = NULL;
		if (cp >= 'A' && cp <= 'Z') {
			one[0] = (char)(cp - 'A' + 'a');
			piece = one;
		} else if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9') ||
		    cp == '-' || cp == '_' || cp == '\'' || cp == '.') {
			one[0] = (char)cp;
			piece = one;
		} else if (cp == ' ') {
			piece = ".";
		} else if (cp >= 0xc0 && cp <= 0x17f &&
		    latin_fold[cp - 0xc0][0] != '\0') {
			piece = latin_fold[cp - 0xc0];
		}
		if (piece == NULL) {
			snprintf(err, errlen, "shipTo cannot make a mail address: "
			    "character U+%04" PRIX32 " is not allowed in a name", cp);
			return -1;
		}
		add = strlen(piece);
		if (n + add > LOCAL_MAX) {
			snprintf(err, errlen, "shipTo is too long to make a mail "
			    "address (at most %d characters)", LOCAL_MAX);
			return -1;
		}
		memcpy(local + n, piece, add);
		n += add;
		p += step;
	}
	local[n] = '\0';
	if (!dot_atom_ok(local, n)) {
		snprintf(err, errlen, "shipTo cannot make a mail address: it may "
		    "not start or end with a space or dot, nor hold two in a row");
		return -1;
	}
	if ((size_t)snprintf(out, outlen, "%s@%s", local, mail_domain) >= outlen ||
	    n + 1 + strlen(mail_domain) > LEGACY_ADDR_MAX) {
		snprintf(err, errlen, "shipTo makes a mail address that is too long");
		return -1;
	}
	return 0;
}

int
legacy_destination(const char *ship_to, const char *mail_domain, char *out,
    size_t outlen, char *err, size_t errlen)
{
	size_t len, i;

	if (ship_to == NULL || ship_to[0] == '\0') {
		snprintf(err, errlen, "shipTo must not be empty");
		return -1;
	}
	len = strlen(ship_to);
	if (len > SHIP_TO_MAX) {
		snprintf(err, errlen, "shipTo is longer than %d bytes", SHIP_TO_MAX);
		return -1;
	}
	/* CR, LF and every other control character: never near a header */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)ship_to[i];
		if (c < 0x20 || c == 0x7f) {
			snprintf(err, errlen, "shipTo must not contain control "
			    "characters (found 0x%02x)", c);
			return -1;
		}
	}
	if (strchr(ship_to, '@') != NULL)
		return address_form(ship_to, out, outlen, err, errlen);
	return name_form(ship_to, mail_domain, out, outlen, err, errlen);
}

void
legacy_format_total(int64_t cents, char *out, size_t outlen)
{
	const char *sign = cents < 0 ? "-" : "";
	uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;

	snprintf(out, outlen, "%s%" PRIu64 ".%02" PRIu64, sign, mag / 100,
	    mag % 100);
}

int
legacy_render(int64_t payroll_id, const char *ship_to, int64_t total_cents,
    const char *mail_domain, struct legacy_mail *out, char *err, size_t errlen)
{
	char total[32];
	size_t cap;
	int n;

	memset(out, 0, sizeof(*out));
	if (legacy_destination(ship_to, mail_domain, out->destination,
	    sizeof(out->destination), err, errlen) != 0)
		return -1;
	snprintf(out->subject, sizeof(out->subject), "Payroll %" PRId64 " shipped",
	    payroll_id);
	legacy_format_total(total_cents, total, sizeof(total));

	cap = 2 * strlen(ship_to) + strlen(total) + 96;
	out->body = xmalloc(cap);
	n = snprintf(out->body, cap,
	    "Hello %s,\r\n"
	    "\r\n"
	    "Payroll %" PRId64 " shipped to %s of %s.\r\n",
	    ship_to, payroll_id, ship_to, total);
	if (n < 0 || (size_t)n >= cap) {
		legacy_mail_clear(out);
		snprintf(err, errlen, "mail body does not fit");
		return -1;
	}
	return 0;
}

void
legacy_mail_clear(struct legacy_mail *m)
{
	if (m == NULL)
		return;
	free(m->body);
	m->body = NULL;
}
