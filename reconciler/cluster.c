/*
 * cluster: see cluster.h. A value is cut into tokens (blank runs, single
 * punctuation, words, numbers, ids, UUIDs, addresses); the two sides'
 * tokens are compared from both ends to find the changed middle, which
 * is widened to whole lines and written masked. Tokens, not bytes, so a
 * masked part is always a whole name or number whatever its length.
 */
#include "reconciler/cluster.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"

enum tok_class { T_SPACE, T_PUNCT, T_WORD, T_NUM, T_ID, T_UUID, T_EMAIL };

struct tok {
	const char *p;
	size_t len;
	enum tok_class cls;
};

struct toks {
	struct tok *v;
	size_t n, cap;
};

/* Words of the destinations' local parts: the payroll's name. */
#define MAX_NAMES 16
#define MAX_NAME_LEN 64
struct names {
	char v[MAX_NAMES][MAX_NAME_LEN];
	size_t n;
	int keep_domain;	/* an address keeps its domain (destination) */
};

static const char *const field_names[3] = { "destination", "subject", "body" };

static int
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static int
is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	    c == '\f';
}

/* An address's local part (as RFC 5322's common subset). */
static int
is_local(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' ||
	    c == '-';
}

static int
is_domain(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '-';
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int
is_uuid(const char *s, size_t len)
{
	size_t i;

	if (len < 36)
		return 0;
	for (i = 0; i < 36; i++)
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' :
		    !is_hex((unsigned char)s[i]))
			return 0;
	return len == 36 || !is_alnum((unsigned char)s[36]);
}

/* Length of an address starting at s (a local part, @, a domain with a
 * dot, not ending in . or -), or 0. */
static size_t
email_len(const char *s, size_t len)
{
	size_t i = 0, at, dot = 0;

	while (i < len && is_local((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= len || s[i] != '@')
		return 0;
	at = i++;
	while (i < len && is_domain((unsigned char)s[i])) {
		if (s[i] == '.')
			dot = i;
		i++;
	}
	while (i > at + 1 && (s[i - 1] == '.' || s[i - 1] == '-'))
		i--;
	if (dot <= at + 1 || dot >= i - 1)
		return 0;
	return i;
}

static void
push(struct toks *t, const char *p, size_t len, enum tok_class cls)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	t->v[t->n].p = p;
	t->v[t->n].len = len;
	t->v[t->n].cls = cls;
	t->n++;
}

static void
tokenize(const char *s, size_t len, int emails, struct toks *t)
{
	size_t i = 0, j, e;
	int digits, alphas;

	t->n = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		j = i;
		if (is_space(c)) {
			while (j < len && is_space((unsigned char)s[j]))
				j++;
			push(t, s + i, j - i, T_SPACE);
		} else if ((i == 0 || !is_alnum((unsigned char)s[i - 1])) &&
		    is_uuid(s + i, len - i)) {
			j = i + 36;
			push(t, s + i, 36, T_UUID);
		} else if (emails && (i == 0 || !is_local((unsigned char)s[i - 1]))
		    && (e = email_len(s + i, len - i)) > 0) {
			j = i + e;
			push(t, s + i, e, T_EMAIL);
		} else if (is_alnum(c)) {
			digits = alphas = 0;
			while (j < len && is_alnum((unsigned char)s[j])) {
				if (is_digit((unsigned char)s[j]))
					digits = 1;
				else
					alphas = 1;
				j++;
			}
			if (digits && !alphas) {
				/* 1,320.00: separators between digit runs. */
				while (j + 1 < len && (s[j] == '.' || s[j] == ',') &&
				    is_digit((unsigned char)s[j + 1])) {
					j++;
					while (j < len && is_digit((unsigned char)s[j]))
						j++;
				}
			}
			push(t, s + i, j - i, !digits ? T_WORD : alphas ? T_ID :
			    T_NUM);
		} else {
			j = i + 1;
			push(t, s + i, 1, T_PUNCT);
		}
		i = j;
	}
}

static void
names_add_local(struct names *nm, const char *addr)
{
	const char *at;
	struct toks t = { 0 };
	size_t i, k;

	if (addr == NULL || (at = strrchr(addr, '@')) == NULL)
		return;
	tokenize(addr, (size_t)(at - addr), 0, &t);
	for (i = 0; i < t.n && nm->n < MAX_NAMES; i++) {
		if (t.v[i].cls != T_WORD || t.v[i].len < 2 ||
		    t.v[i].len >= MAX_NAME_LEN)
			continue;
		for (k = 0; k < t.v[i].len; k++)
			nm->v[nm->n][k] = (char)lower((unsigned char)t.v[i].p[k]);
		nm->v[nm->n][k] = '\0';
		nm->n++;
	}
	free(t.v);
}

static int
is_name(const struct names *nm, const struct tok *t)
{
	size_t i, k;

	for (i = 0; i < nm->n; i++) {
		if (strlen(nm->v[i]) != t->len)
			continue;
		for (k = 0; k < t->len; k++)
			if (lower((unsigned char)t->p[k]) != (unsigned char)nm->v[i][k])
				break;
		if (k == t->len)
			return 1;
	}
	return 0;
}

/* Appends a value's bytes with \ r n t escaped: a signature stays one
 * line per side whatever the value holds. */
static void
add_escaped(struct strbuf *b, const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		switch (p[i]) {
		case '\\': strbuf_add(b, "\\\\", 2); break;
		case '\r': strbuf_add(b, "\\r", 2); break;
		case '\n': strbuf_add(b, "\\n", 2); break;
		case '\t': strbuf_add(b, "\\t", 2); break;
		default: strbuf_add(b, p + i, 1);
		}
}

/* A name or an address: who the mail is for, in whatever form. */
static int
is_who(const struct names *nm, const struct tok *t)
{
	return t->cls == T_EMAIL || (t->cls == T_WORD && is_name(nm, t));
}

/*
 * A unit is what a mask stands for: one token, or a whole name ("Juan
 * Blaz", several words) so that one- and two-word names read alike.
 */
struct unit {
	size_t from, to;	/* tokens [from, to) */
	const char *p;		/* raw text */
	size_t len;
};

struct units {
	struct unit *v;
	size_t n;
};

static void
units_of(const struct toks *t, const struct names *nm, size_t from,
    size_t to, struct units *u)
{
	size_t i = from, j;

	u->v = xcalloc(to - from + 1, sizeof(*u->v));
	u->n = 0;
	while (i < to) {
		j = i + 1;
		if (is_who(nm, &t->v[i]))
			while (j + 1 < to && t->v[j].cls == T_SPACE &&
			    t->v[j].len == 1 && t->v[j].p[0] == ' ' &&
			    is_who(nm, &t->v[j + 1]))
				j += 2;
		u->v[u->n].from = i;
		u->v[u->n].to = j;
		u->v[u->n].p = t->v[i].p;
		u->v[u->n].len = (size_t)(t->v[j - 1].p + t->v[j - 1].len -
		    t->v[i].p);
		u->n++;
		i = j;
	}
}

static void
mask_unit(struct strbuf *b, const struct names *nm, const struct toks *t,
    const struct unit *u)
{
	const struct tok *k = &t->v[u->from];
	size_t i, last = 0, run = 0;

	if (k->cls == T_EMAIL && nm->keep_domain) {
		const char *at = memchr(k->p, '@', k->len);
		strbuf_str(b, "<name>");
		add_escaped(b, at, k->len - (size_t)(at - k->p));
		return;
	}
	if (is_who(nm, k)) {
		strbuf_str(b, "<name>");
		return;
	}
	switch (k->cls) {
	case T_SPACE:
	case T_PUNCT:
	case T_WORD:
		add_escaped(b, k->p, k->len);
		break;
	case T_ID:
		strbuf_str(b, "<id>");
		break;
	case T_UUID:
		strbuf_str(b, "<uuid>");
		break;
	case T_EMAIL:
		strbuf_str(b, "<name>");
		break;
	case T_NUM:
		/* Any number, with its last separator and the digits after
		 * it (the decimals are the template's format; the thousands
		 * groups only say how big it is). */
		for (i = 0; i < k->len; i++)
			if (!is_digit((unsigned char)k->p[i]))
				last = i;
		strbuf_add(b, "9", 1);
		if (last > 0) {
			strbuf_add(b, k->p + last, 1);
			run = k->len - last - 1;
			while (run-- > 0)
				strbuf_add(b, "9", 1);
		}
		break;
	}
}

static void
mask_units(struct strbuf *b, const struct names *nm, const struct toks *t,
    const struct units *u)
{
	size_t i;

	for (i = 0; i < u->n; i++)
		mask_unit(b, nm, t, &u->v[i]);
}

static int
span_eq_case(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t k;

	if (alen != blen)
		return 0;
	for (k = 0; k < alen; k++)
		if (lower((unsigned char)a[k]) != lower((unsigned char)b[k]))
			return 0;
	return 1;
}

/* How two units that mask alike differ: in case only, or in value. */
static void
unit_change(struct strbuf *b, const struct unit *x, const struct unit *y,
    size_t pos)
{
	strbuf_printf(b, " ~%s:%zu", span_eq_case(x->p, x->len, y->p, y->len) ?
	    "case" : "value", pos);
}

static int
has_newline(const struct tok *t)
{
	return t->cls == T_SPACE && memchr(t->p, '\n', t->len) != NULL;
}

static int
tok_eq(const struct tok *a, const struct tok *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* The changed middle: a[pre .. na - suf) against b[pre .. nb - suf). */
static void
middle(const struct toks *a, const struct toks *b, size_t *pre, size_t *suf)
{
	size_t p = 0, s = 0;

	while (p < a->n && p < b->n && tok_eq(&a->v[p], &b->v[p]))
		p++;
	while (s < a->n - p && s < b->n - p &&
	    tok_eq(&a->v[a->n - 1 - s], &b->v[b->n - 1 - s]))
		s++;
	*pre = p;
	*suf = s;
}

static void
field_signature(struct strbuf *out, struct names *nm, const char *name,
    const char *va, const char *vb)
{
	struct toks a = { 0 }, b = { 0 };
	struct units ua, ub;
	struct strbuf ma = STRBUF_INIT, mb = STRBUF_INIT;
	size_t pre, suf, from, to_a, to_b, k;

	nm->keep_domain = strcmp(name, "destination") == 0;
	tokenize(va ? va : "", va ? strlen(va) : 0, 1, &a);
	tokenize(vb ? vb : "", vb ? strlen(vb) : 0, 1, &b);
	middle(&a, &b, &pre, &suf);
	/* Whole lines: the same on both sides, as the ends are shared. */
	from = pre;
	while (from > 0 && !has_newline(&a.v[from - 1]))
		from--;
	to_a = a.n - suf;
	to_b = b.n - suf;
	while (to_a < a.n && !has_newline(&a.v[to_a])) {
		to_a++;
		to_b++;
	}
	units_of(&a, nm, from, to_a, &ua);
	units_of(&b, nm, from, to_b, &ub);
	mask_units(&ma, nm, &a, &ua);
	mask_units(&mb, nm, &b, &ub);
	strbuf_printf(out, "\n%s -", name);
	strbuf_add(out, ma.p ? ma.p : "", ma.len);
	strbuf_printf(out, "\n%s +", name);
	strbuf_add(out, mb.p ? mb.p : "", mb.len);
	/* Differences inside masked parts, by position: an amount computed
	 * wrong and an id computed wrong are two different changes. */
	if (ua.n == ub.n && ma.len == mb.len &&
	    (ma.len == 0 || memcmp(ma.p, mb.p, ma.len) == 0))
		for (k = 0; k < ua.n; k++)
			if (ua.v[k].len != ub.v[k].len ||
			    memcmp(ua.v[k].p, ub.v[k].p, ua.v[k].len) != 0)
				unit_change(out, &ua.v[k], &ub.v[k], k);
	free(ua.v);
	free(ub.v);
	strbuf_free(&ma);
	strbuf_free(&mb);
	free(a.v);
	free(b.v);
}

static int
field_differs(const char *fields, const char *name)
{
	size_t n = strlen(name);
	const char *p = fields;

	while (p != NULL && *p) {
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
		p = strchr(p, ',');
		p = p ? p + 1 : NULL;
	}
	return 0;
}

char *
cluster_signature(const struct mismatch *m)
{
	struct strbuf out = STRBUF_INIT;
	struct names nm = { .n = 0 };
	struct toks t = { 0 };
	struct units u;
	char *const *side;
	int f;

	names_add_local(&nm, m->mono[0]);
	names_add_local(&nm, m->micro[0]);
	strbuf_printf(&out, "%s [%s]", m->kind ? m->kind : "?",
	    m->fields ? m->fields : "");
	if (m->mono[0] == NULL || m->micro[0] == NULL) {
		side = m->mono[0] ? m->mono : m->micro;
		if (side[1] != NULL) {
			tokenize(side[1], strlen(side[1]), 1, &t);
			units_of(&t, &nm, 0, t.n, &u);
			strbuf_str(&out, "\nsubject ");
			mask_units(&out, &nm, &t, &u);
			free(u.v);
			free(t.v);
		}
		return strbuf_take(&out);
	}
	for (f = 0; f < 3; f++)
		if (field_differs(m->fields, field_names[f]))
			field_signature(&out, &nm, field_names[f], m->mono[f],
			    m->micro[f]);
	return strbuf_take(&out);
}

/* A unit as a POSIX ERE matching every unit of its mask. */
static void
regex_unit(struct strbuf *b, const struct names *nm, const struct toks *t,
    const struct unit *u)
{
	/* A word of letters (any UTF-8 byte), or an address. */
	static const char who[] = "([^[:space:][:punct:][:digit:]]+|"
	    "[^[:space:]@,;:<>()]+@[^[:space:],;:<>()]+)";
	const struct tok *k = &t->v[u->from];
	size_t i, last = 0;

	if (is_who(nm, k)) {
		strbuf_printf(b, "%s([ ]%s)*", who, who);
		return;
	}
	switch (k->cls) {
	case T_SPACE:
		for (i = 0; i < k->len; i++)
			strbuf_str(b, k->p[i] == ' ' ? "[ ]" : k->p[i] == '\t' ?
			    "[[:blank:]]" : k->p[i] == '\n' ? "[[:space:]]" :
			    "[[:cntrl:]]");
		break;
	case T_PUNCT:
		if (strchr(".[]()*+?{}|^$\\", k->p[0]) == NULL)
			strbuf_add(b, k->p, 1);
		else if (k->p[0] == '^' || k->p[0] == '\\')
			strbuf_printf(b, "\\%c", k->p[0]);
		else
			strbuf_printf(b, "[%c]", k->p[0]);
		break;
	case T_WORD:
		strbuf_add(b, k->p, k->len);
		break;
	case T_ID:
		strbuf_str(b, "[[:alnum:]]+");
		break;
	case T_UUID:
		strbuf_str(b, "[0-9a-fA-F-]{36}");
		break;
	case T_EMAIL:
		strbuf_str(b, who);
		break;
	case T_NUM:
		for (i = 0; i < k->len; i++)
			if (!is_digit((unsigned char)k->p[i]))
				last = i;
		strbuf_str(b, "[0-9]+");
		if (last > 0)
			strbuf_printf(b, "([,.][0-9]+)*[%c][0-9]{%zu}", k->p[last],
			    k->len - last - 1);
		else
			strbuf_str(b, "([,.][0-9]{3})*");
		break;
	}
}

/* The units holding tokens [from, to), with one more each side. */
static void
regex_span(struct strbuf *b, const struct names *nm, const struct toks *t,
    const struct units *u, size_t from, size_t to)
{
	size_t i, first = 0, last = u->n;

	for (i = 0; i < u->n; i++) {
		if (u->v[i].to <= from)
			first = i + 1;
		if (u->v[i].from >= to && last == u->n)
			last = i;
	}
	if (first > 0)
		first--;
	if (last < u->n)
		last++;
	for (i = first; i < last; i++)
		regex_unit(b, nm, t, &u->v[i]);
}

/*
 * The changed hunks of a[from, to_a) against b[from, to_b), by a longest
 * common subsequence of tokens; hunk i is a[ha[2i], ha[2i+1]) against
 * b[hb[2i], hb[2i+1]). Returns the count, 0 when the middle is too big
 * to compare token by token (the caller then takes it as one hunk).
 */
#define LCS_MAX_CELLS (4u << 20)
static size_t
hunks(const struct toks *a, const struct toks *b, size_t from, size_t to_a,
    size_t to_b, size_t **ha, size_t **hb)
{
	size_t na = to_a - from, nb = to_b - from, i, j, n = 0, w = nb + 1;
	uint32_t *L;

	if ((na + 1) * (nb + 1) > LCS_MAX_CELLS)
		return 0;
	L = xcalloc((na + 1) * (nb + 1), sizeof(*L));
	for (i = na; i-- > 0;)
		for (j = nb; j-- > 0;)
			L[i * w + j] = tok_eq(&a->v[from + i], &b->v[from + j]) ?
			    L[(i + 1) * w + j + 1] + 1 :
			    L[(i + 1) * w + j] > L[i * w + j + 1] ?
			    L[(i + 1) * w + j] : L[i * w + j + 1];
	*ha = xcalloc(2 * (na + nb + 2), sizeof(**ha));
	*hb = xcalloc(2 * (na + nb + 2), sizeof(**hb));
	i = j = 0;
	while (i < na || j < nb) {
		size_t si = i, sj = j;
		while ((i < na || j < nb) && !(i < na && j < nb &&
		    tok_eq(&a->v[from + i], &b->v[from + j]))) {
			if (j < nb && (i == na ||
			    L[i * w + j + 1] >= L[(i + 1) * w + j]))
				j++;
			else
				i++;
		}
		if (i > si || j > sj) {
			(*ha)[2 * n] = from + si;
			(*ha)[2 * n + 1] = from + i;
			(*hb)[2 * n] = from + sj;
			(*hb)[2 * n + 1] = from + j;
			n++;
		}
		while (i < na && j < nb && tok_eq(&a->v[from + i],
		    &b->v[from + j])) {
			i++;
			j++;
		}
	}
	free(L);
	return n;
}

static void
rule_section(struct strbuf *out, long long cluster_id, int f, size_t part,
    const char *ra, const char *rb)
{
	strbuf_printf(out, "[cluster-%lld-%s-%zu]\nfield = %s\nregex = ",
	    cluster_id, field_names[f], part, field_names[f]);
	if (*ra && *rb && strcmp(ra, rb) != 0)
		strbuf_printf(out, "(%s|%s)", ra, rb);
	else
		strbuf_printf(out, "(%s)", *ra ? ra : rb);
	strbuf_printf(out, "\nreplace = <cluster-%lld>\n\n", cluster_id);
}

char *
cluster_rule(const struct mismatch *m, long long cluster_id, char *err,
    size_t errlen)
{
	struct strbuf out = STRBUF_INIT, ra = STRBUF_INIT, rb = STRBUF_INIT;
	struct names nm = { .n = 0 };
	struct toks a = { 0 }, b = { 0 };
	struct units ua, ub;
	size_t pre, suf, nh, h, one_a[2] = { 0, 0 }, one_b[2] = { 0, 0 }, *ha, *hb;
	int f;

	if (m->mono[0] == NULL || m->micro[0] == NULL) {
		snprintf(err, errlen, "cluster %lld holds %s mismatches: a noise "
		    "rule cannot ignore a missing mail (rules compare pairs)",
		    cluster_id, m->kind ? m->kind : "missing");
		return NULL;
	}
	names_add_local(&nm, m->mono[0]);
	names_add_local(&nm, m->micro[0]);
	for (f = 0; f < 3; f++) {
		if (!field_differs(m->fields, field_names[f]))
			continue;
		tokenize(m->mono[f], strlen(m->mono[f]), 1, &a);
		tokenize(m->micro[f], strlen(m->micro[f]), 1, &b);
		middle(&a, &b, &pre, &suf);
		units_of(&a, &nm, 0, a.n, &ua);
		units_of(&b, &nm, 0, b.n, &ub);
		ha = hb = NULL;
		nh = hunks(&a, &b, pre, a.n - suf, b.n - suf, &ha, &hb);
		if (nh == 0) {
			one_a[0] = one_b[0] = pre;
			one_a[1] = a.n - suf;
			one_b[1] = b.n - suf;
		}
		/* One unit of context each side keeps each pattern to the
		 * place of its change. */
		for (h = 0; h < (nh ? nh : 1); h++) {
			regex_span(&ra, &nm, &a, &ua, nh ? ha[2 * h] : one_a[0],
			    nh ? ha[2 * h + 1] : one_a[1]);
			regex_span(&rb, &nm, &b, &ub, nh ? hb[2 * h] : one_b[0],
			    nh ? hb[2 * h + 1] : one_b[1]);
			rule_section(&out, cluster_id, f, h + 1,
			    ra.p ? ra.p : "", rb.p ? rb.p : "");
			strbuf_free(&ra);
			strbuf_free(&rb);
		}
		free(ha);
		free(hb);
		free(ua.v);
		free(ub.v);
	}
	free(a.v);
	free(b.v);
	if (out.len == 0) {
		snprintf(err, errlen, "cluster %lld names no differing field",
		    cluster_id);
		return NULL;
	}
	return strbuf_take(&out);
}
