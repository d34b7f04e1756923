/*
 * rules: see rules.h. A rule set is parsed once at start; a bad file fails
 * the run before anything is read, naming the line.
 */
#include "reconciler/rules.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"

const char *const mail_field_names[FIELD_COUNT] = {
	"destination", "subject", "body"
};

enum rule_action { ACTION_NONE, ACTION_REGEX, ACTION_LOWERCASE, ACTION_TRIM };

struct rule {
	char *name;
	unsigned fields;	/* FIELD_BIT mask */
	enum rule_action action;
	regex_t re;
	int have_re;
	char *replace;
};

struct rules {
	struct rule *v;
	size_t n;
};

static void
rule_clear(struct rule *r)
{
	free(r->name);
	free(r->replace);
	if (r->have_re)
		regfree(&r->re);
	memset(r, 0, sizeof(*r));
}

void
rules_free(struct rules *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++)
		rule_clear(&r->v[i]);
	free(r->v);
	free(r);
}

size_t
rules_count(const struct rules *r)
{
	return r ? r->n : 0;
}

const char *
rules_name(const struct rules *r, size_t i)
{
	return r->v[i].name;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
parse_fields(const char *v, unsigned *mask)
{
	char *copy = xstrdup(v), *save = NULL, *tok;
	int f, rc = 0;

	*mask = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		tok = trim(tok);
		if (strcmp(tok, "all") == 0) {
			*mask |= FIELD_BIT(FIELD_DESTINATION) |
			    FIELD_BIT(FIELD_SUBJECT) | FIELD_BIT(FIELD_BODY);
			continue;
		}
		for (f = 0; f < FIELD_COUNT; f++)
			if (strcmp(tok, mail_field_names[f]) == 0)
				break;
		if (f == FIELD_COUNT) {
			rc = -1;
			break;
		}
		*mask |= FIELD_BIT(f);
	}
	free(copy);
	return rc == 0 && *mask != 0 ? 0 : -1;
}

static int
yes(const char *v)
{
	return strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
	    strcmp(v, "on") == 0 || strcmp(v, "1") == 0;
}

static int
name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return 0;
	return 1;
}

/* Checks a finished rule; 0 or -1 with err. */
static int
rule_check(const struct rules *rs, const struct rule *r, const char *origin,
    char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i + 1 < rs->n; i++)
		if (strcmp(rs->v[i].name, r->name) == 0) {
			snprintf(err, errlen, "%s: rule [%s] defined twice", origin,
			    r->name);
			return -1;
		}
	if (r->fields == 0) {
		snprintf(err, errlen, "%s: rule [%s] has no 'field ='", origin,
		    r->name);
		return -1;
	}
	if (r->action == ACTION_NONE) {
		snprintf(err, errlen, "%s: rule [%s] has no action (regex, "
		    "lowercase or trim)", origin, r->name);
		return -1;
	}
	if (r->replace != NULL && r->action != ACTION_REGEX) {
		snprintf(err, errlen, "%s: rule [%s]: 'replace' without 'regex'",
		    origin, r->name);
		return -1;
	}
	return 0;
}

static int
set_action(struct rule *r, enum rule_action a, const char *origin, int line,
    char *err, size_t errlen)
{
	if (r->action != ACTION_NONE) {
		snprintf(err, errlen, "%s:%d: rule [%s] has a second action; "
		    "one action per rule", origin, line, r->name);
		return -1;
	}
	r->action = a;
	return 0;
}

struct rules *
rules_parse(const char *text, const char *origin, char *err, size_t errlen)
{
	struct rules *rs = xcalloc(1, sizeof(*rs));
	struct rule *cur = NULL;
	char *copy = xstrdup(text), *p = copy, *nl, *s, *eq, *key, *val;
	int line = 0, rc;

	for (; p != NULL; p = nl) {
		nl = strchr(p, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		line++;
		s = trim(p);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (close == NULL || close[1] != '\0') {
				snprintf(err, errlen, "%s:%d: expected [name] alone on "
				    "its line (comments are whole lines)", origin, line);
				goto fail;
			}
			*close = '\0';
			if (cur != NULL &&
			    rule_check(rs, cur, origin, err, errlen) == -1)
				goto fail;
			if (!name_ok(s + 1)) {
				snprintf(err, errlen, "%s:%d: rule name '%s' must be "
				    "1..64 of [A-Za-z0-9_.-]", origin, line, s + 1);
				goto fail;
			}
			rs->v = xrealloc(rs->v, (rs->n + 1) * sizeof(*rs->v));
			cur = &rs->v[rs->n++];
			memset(cur, 0, sizeof(*cur));
			cur->name = xstrdup(s + 1);
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			snprintf(err, errlen, "%s:%d: expected key = value", origin,
			    line);
			goto fail;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		if (cur == NULL) {
			snprintf(err, errlen, "%s:%d: '%s' before any [rule]", origin,
			    line, key);
			goto fail;
		}
		if (strcmp(key, "field") == 0) {
			if (parse_fields(val, &cur->fields) == -1) {
				snprintf(err, errlen, "%s:%d: field '%s' is not a list "
				    "of destination, subject, body, all", origin, line,
				    val);
				goto fail;
			}
		} else if (strcmp(key, "regex") == 0) {
			if (set_action(cur, ACTION_REGEX, origin, line, err,
			    errlen) == -1)
				goto fail;
			if ((rc = regcomp(&cur->re, val, REG_EXTENDED |
			    REG_NEWLINE)) != 0) {
				char msg[128];
				regerror(rc, &cur->re, msg, sizeof(msg));
				snprintf(err, errlen, "%s:%d: regex '%s': %s", origin,
				    line, val, msg);
				goto fail;
			}
			cur->have_re = 1;
		} else if (strcmp(key, "replace") == 0) {
			free(cur->replace);
			cur->replace = xstrdup(val);
		} else if (strcmp(key, "lowercase") == 0 ||
		    strcmp(key, "trim") == 0) {
			if (!yes(val)) {
				snprintf(err, errlen, "%s:%d: %s = '%s': only 'yes' "
				    "makes sense (leave the key out otherwise)", origin,
				    line, key, val);
				goto fail;
			}
			if (set_action(cur, key[0] == 'l' ? ACTION_LOWERCASE :
			    ACTION_TRIM, origin, line, err, errlen) == -1)
				goto fail;
		} else {
			snprintf(err, errlen, "%s:%d: unknown key '%s' (field, regex, "
			    "replace, lowercase, trim)", origin, line, key);
			goto fail;
		}
	}
	if (cur != NULL && rule_check(rs, cur, origin, err, errlen) == -1)
		goto fail;
	free(copy);
	return rs;
fail:
	free(copy);
	rules_free(rs);
	return NULL;
}

struct rules *
rules_load(const char *path, char *err, size_t errlen)
{
	struct rules *rs = NULL;
	struct strbuf text = STRBUF_INIT;
	char chunk[8192];
	FILE *fp;
	size_t n;

	if (path == NULL)
		return xcalloc(1, sizeof(struct rules));
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "--rules: %s: %s", path, strerror(errno));
		return NULL;
	}
	strbuf_add(&text, "", 0);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (text.len + n > (1u << 20)) {
			snprintf(err, errlen, "--rules: %s: larger than 1 MiB",
			    path);
			goto out;
		}
		strbuf_add(&text, chunk, n);
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "--rules: %s: read error", path);
		goto out;
	}
	if (strlen(text.p) != text.len) {
		snprintf(err, errlen, "--rules: %s: contains a NUL byte", path);
		goto out;
	}
	rs = rules_parse(text.p, path, err, errlen);
out:
	fclose(fp);
	strbuf_free(&text);
	return rs;
}

static char *
apply_regex(const struct rule *r, const char *s)
{
	struct strbuf out = { NULL, 0, 0 };
	const char *rep = r->replace ? r->replace : "", *q;
	regmatch_t m[10];
	int flags = 0;

	strbuf_add(&out, "", 0);
	while (*s != '\0' && regexec(&r->re, s, 10, m, flags) == 0) {
		strbuf_add(&out, s, (size_t)m[0].rm_so);
		for (q = rep; *q; q++) {
			if (q[0] == '\\' && q[1] >= '0' && q[1] <= '9') {
				int g = q[1] - '0';
				if (m[g].rm_so >= 0)
					strbuf_add(&out, s + m[g].rm_so,
					    (size_t)(m[g].rm_eo - m[g].rm_so));
				q++;
			} else if (q[0] == '\\' && q[1] == '\\') {
				strbuf_add(&out, "\\", 1);
				q++;
			} else {
				strbuf_add(&out, q, 1);
			}
		}
		if (m[0].rm_eo == m[0].rm_so) {
			/* An empty match: keep one character and move on. */
			if (s[m[0].rm_eo] == '\0') {
				s += m[0].rm_eo;
				break;
			}
			strbuf_add(&out, s + m[0].rm_eo, 1);
			s += m[0].rm_eo + 1;
		} else {
			s += m[0].rm_eo;
		}
		flags = REG_NOTBOL;
		if (s[-1] == '\n')
			flags = 0;
	}
	strbuf_add(&out, s, strlen(s));
	return out.p;
}

static char *
apply_trim(const char *s)
{
	struct strbuf out = { NULL, 0, 0 };
	const char *line = s, *e, *nl;

	while (*line == ' ' || *line == '\t' || *line == '\r' || *line == '\n')
		line++;
	strbuf_add(&out, "", 0);
	while (*line != '\0') {
		nl = strchr(line, '\n');
		e = nl ? nl : line + strlen(line);
		if (e > line && e[-1] == '\r' && nl != NULL)
			e--;
		while (e > line && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		strbuf_add(&out, line, (size_t)(e - line));
		if (nl == NULL)
			break;
		if (nl > line && nl[-1] == '\r')
			strbuf_add(&out, "\r\n", 2);
		else
			strbuf_add(&out, "\n", 1);
		line = nl + 1;
	}
	while (out.len > 0 && strchr(" \t\r\n", out.p[out.len - 1]) != NULL)
		out.p[--out.len] = '\0';
	return out.p;
}

char *
rules_apply(const struct rules *rs, size_t i, enum mail_field f,
    const char *v, size_t len)
{
	const struct rule *r = &rs->v[i];
	char *s, *out;
	size_t k;

	if (!(r->fields & FIELD_BIT(f)))
		return NULL;
	s = xstrndup(v, len);
	switch (r->action) {
	case ACTION_LOWERCASE:
		for (k = 0; s[k]; k++)
			s[k] = (char)tolower((unsigned char)s[k]);
		return s;
	case ACTION_TRIM:
		out = apply_trim(s);
		break;
	case ACTION_REGEX:
		out = apply_regex(r, s);
		break;
	default:
		out = s;
		s = NULL;
	}
	free(s);
	return out;
}

static int
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* Runs the rules on one differing field; 1 when they make it equal. */
static int
absorb(const struct rules *rs, enum mail_field f, const char *a, size_t alen,
    const char *b, size_t blen, uint64_t *hits)
{
	char *ca = xstrndup(a, alen), *cb = xstrndup(b, blen), *na, *nb;
	size_t i;
	int equal = 0;

	for (i = 0; i < rs->n && !equal; i++) {
		na = rules_apply(rs, i, f, ca, strlen(ca));
		if (na == NULL)
			continue;
		nb = rules_apply(rs, i, f, cb, strlen(cb));
		free(ca);
		free(cb);
		ca = na;
		cb = nb;
		if (strcmp(ca, cb) == 0) {
			equal = 1;
			if (hits != NULL)
				hits[i]++;
		}
	}
	free(ca);
	free(cb);
	return equal;
}

unsigned
rules_compare(const struct rules *rs, const struct mail *a,
    const struct mail *b, uint64_t *hits, int *absorbed)
{
	unsigned mask = 0;
	int f;

	if (absorbed != NULL)
		*absorbed = 0;
	for (f = 0; f < FIELD_COUNT; f++) {
		if (same(a->v[f], a->len[f], b->v[f], b->len[f]))
			continue;
		/* Text from PostgreSQL never holds NUL; a value that does is
		 * compared as stored. */
		if (rs != NULL && rs->n > 0 &&
		    memchr(a->v[f], '\0', a->len[f]) == NULL &&
		    memchr(b->v[f], '\0', b->len[f]) == NULL &&
		    absorb(rs, (enum mail_field)f, a->v[f], a->len[f], b->v[f],
		    b->len[f], hits)) {
			if (absorbed != NULL)
				*absorbed = 1;
			continue;
		}
		mask |= FIELD_BIT(f);
	}
	return mask;
}

const char *
rules_fields_text(unsigned mask, char *buf, size_t len)
{
	size_t off = 0;
	int f;

	buf[0] = '\0';
	for (f = 0; f < FIELD_COUNT; f++) {
		if (!(mask & FIELD_BIT(f)))
			continue;
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0,
		    "%s%s", off ? "," : "", mail_field_names[f]);
	}
	return buf;
}
