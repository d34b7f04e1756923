/*
 * Unit tests for reconciler/cluster: one template change in payrolls with
 * different names, addresses, amounts, ids and dates gives one signature;
 * changes that differ (in wording, in format, in which masked part is
 * computed wrong, in line ends, in the field) never share one; the noise
 * rule printed for a cluster makes every member's sides equal under
 * rules.c and leaves other changes alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "reconciler/cluster.h"
#include "reconciler/rules.h"

struct payroll {
	const char *name, *dest;
	int id;
	const char *total;
};

static const struct payroll people[] = {
	{ "Juablaz", "juablaz@example.com", 3, "320.00" },
	{ "Ann", "ann@example.com", 41, "15.50" },
	{ "Juan Blaz", "juan.blaz@example.com", 1234567, "1,999.99" },
	{ "bob@corp.example.org", "bob@corp.example.org", 7, "0.10" },
	{ "Zoë", "zoë@example.com", 99, "1000000.00" },
};

/* The canonical mail (DESIGN.md) and variants of its template. */
enum variant { V_LEGACY, V_HI, V_DOLLAR, V_NOCRLF, V_UPPER, V_AMOUNT_OFF,
	V_ID_OFF, V_DATE, V_DATE2, V_ENDING };

static char *
body(const struct payroll *p, enum variant v)
{
	switch (v) {
	case V_HI:
		return xasprintf("Hi %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s.\r\n", p->name, p->id, p->name, p->total);
	case V_DOLLAR:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "$%s.\r\n", p->name, p->id, p->name, p->total);
	case V_NOCRLF:
		return xasprintf("Hello %s,\n\nPayroll %d shipped to %s of "
		    "%s.\n", p->name, p->id, p->name, p->total);
	case V_UPPER: {
		char *b = xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s.\r\n", p->name, p->id, p->name, p->total), *q;
		/* The greeting's name upper-cased (ASCII). */
		for (q = b + 6; *q != ','; q++)
			if (*q >= 'a' && *q <= 'z')
				*q = (char)(*q - 32);
		return b;
	}
	case V_AMOUNT_OFF:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s1.\r\n", p->name, p->id, p->name, p->total);
	case V_ID_OFF:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d1 shipped to %s of "
		    "%s.\r\n", p->name, p->id, p->name, p->total);
	case V_DATE:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s.\r\nSent 2026-%02d-%02dT10:%02d:00Z ref %08x-1111-4222-"
		    "8333-%012d\r\n", p->name, p->id, p->name, p->total,
		    1 + p->id % 12, 1 + p->id % 28, p->id % 60,
		    (unsigned)p->id * 2654435761u, p->id);
	case V_DATE2:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s.\r\nSent %02d/%02d/2026\r\n", p->name, p->id, p->name,
		    p->total, 1 + p->id % 28, 1 + p->id % 12);
	case V_ENDING:
		return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of "
		    "%s.\r\n-- \r\nPayroll team\r\n", p->name, p->id, p->name,
		    p->total);
	case V_LEGACY:
		break;
	}
	return xasprintf("Hello %s,\r\n\r\nPayroll %d shipped to %s of %s.\r\n",
	    p->name, p->id, p->name, p->total);
}

/* A content mismatch of p's body: legacy against variant v. */
static void
pair(struct mismatch *m, const struct payroll *p, enum variant v)
{
	memset(m, 0, sizeof(*m));
	m->kind = xstrdup("content");
	m->fields = xstrdup("body");
	m->cid = xstrdup("00000000-0000-4000-8000-000000000001");
	m->mono[0] = xstrdup(p->dest);
	m->micro[0] = xstrdup(p->dest);
	m->mono[1] = xasprintf("Payroll %d shipped", p->id);
	m->micro[1] = xasprintf("Payroll %d shipped", p->id);
	m->mono[2] = body(p, V_LEGACY);
	m->micro[2] = body(p, v);
}

static char *
sig(const struct payroll *p, enum variant v)
{
	struct mismatch m;
	char *s;

	pair(&m, p, v);
	s = cluster_signature(&m);
	mismatch_clear(&m);
	return s;
}

static const enum variant changes[] = { V_HI, V_DOLLAR, V_NOCRLF, V_UPPER,
	V_AMOUNT_OFF, V_ID_OFF, V_DATE, V_DATE2, V_ENDING };

/* Every payroll with the same change: one signature. */
static void
test_same_change_one_signature(void **state)
{
	size_t v, i;
	char *first, *s;

	(void)state;
	for (v = 0; v < nitems(changes); v++) {
		first = sig(&people[0], changes[v]);
		for (i = 1; i < nitems(people); i++) {
			s = sig(&people[i], changes[v]);
			if (strcmp(first, s) != 0)
				fail_msg("variant %zu, payroll %zu:\n%s\n---\n%s",
				    v, i, first, s);
			free(s);
		}
		free(first);
	}
}

/* Different changes: different signatures, for every payroll. */
static void
test_different_changes_never_share(void **state)
{
	size_t v, w, i, j;
	char *a, *b;

	(void)state;
	for (v = 0; v < nitems(changes); v++)
		for (w = v + 1; w < nitems(changes); w++)
			for (i = 0; i < nitems(people); i++)
				for (j = 0; j < nitems(people); j++) {
					a = sig(&people[i], changes[v]);
					b = sig(&people[j], changes[w]);
					if (strcmp(a, b) == 0)
						fail_msg("variants %zu and %zu share "
						    "%s", v, w, a);
					free(a);
					free(b);
				}
}

/* The signature says what changed, with the variable parts masked. */
static void
test_signature_reads(void **state)
{
	char *s = sig(&people[2], V_HI);

	(void)state;
	assert_string_equal(s, "content [body]\n"
	    "body -Hello <name>,\n"
	    "body +Hi <name>,");
	free(s);
	s = sig(&people[2], V_DOLLAR);
	assert_non_null(strstr(s, "-Payroll 9 shipped to <name> of 9.99.\n"));
	assert_non_null(strstr(s, "+Payroll 9 shipped to <name> of $9.99."));
	free(s);
}

/* The same change in another field, or of another kind, is another
 * cluster; a missing mail clusters by its kind and masked subject. */
static void
test_fields_and_kinds(void **state)
{
	struct mismatch m;
	char *a, *b, *c, *d;

	(void)state;
	pair(&m, &people[0], V_LEGACY);
	free(m.fields);
	m.fields = xstrdup("subject");
	free(m.micro[1]);
	m.micro[1] = xstrdup("Payroll 3 sent");
	a = cluster_signature(&m);
	mismatch_clear(&m);
	pair(&m, &people[1], V_LEGACY);
	free(m.fields);
	m.fields = xstrdup("subject");
	free(m.micro[1]);
	m.micro[1] = xstrdup("Payroll 41 sent");
	b = cluster_signature(&m);
	assert_string_equal(a, b);
	/* missing_in_micro: micro side absent. */
	free(m.kind);
	m.kind = xstrdup("missing_in_micro");
	free(m.fields);
	m.fields = xstrdup("");
	for (int f = 0; f < 3; f++) {
		free(m.micro[f]);
		m.micro[f] = NULL;
	}
	c = cluster_signature(&m);
	free(m.kind);
	m.kind = xstrdup("missing_in_mono");
	for (int f = 0; f < 3; f++) {
		m.micro[f] = m.mono[f];
		m.mono[f] = NULL;
	}
	d = cluster_signature(&m);
	assert_string_equal(c, "missing_in_micro []\nsubject Payroll 9 shipped");
	assert_string_not_equal(c, d);
	assert_string_not_equal(a, c);
	mismatch_clear(&m);
	free(a);
	free(b);
	free(c);
	free(d);
}

/* The printed rule ignores every member of the cluster (under rules.c,
 * as a run would apply it) and no member of another cluster. */
static void
test_rule_ignores_its_cluster_only(void **state)
{
	size_t v, w, i;
	struct mismatch m, o;
	struct rules *r;
	struct mail a, b;
	char err[256], *text;

	(void)state;
	for (v = 0; v < nitems(changes); v++) {
		pair(&m, &people[0], changes[v]);
		text = cluster_rule(&m, 7, err, sizeof(err));
		assert_non_null(text);
		r = rules_parse(text, "cluster-7", err, sizeof(err));
		if (r == NULL)
			fail_msg("variant %zu: %s\n%s", v, err, text);
		for (i = 0; i < nitems(people); i++) {
			pair(&o, &people[i], changes[v]);
			a = (struct mail){ { o.mono[0], o.mono[1], o.mono[2] },
			    { strlen(o.mono[0]), strlen(o.mono[1]),
			    strlen(o.mono[2]) } };
			b = (struct mail){ { o.micro[0], o.micro[1], o.micro[2] },
			    { strlen(o.micro[0]), strlen(o.micro[1]),
			    strlen(o.micro[2]) } };
			if (rules_compare(r, &a, &b, NULL, NULL) != 0)
				fail_msg("variant %zu payroll %zu not ignored "
				    "by\n%s", v, i, text);
			mismatch_clear(&o);
			for (w = 0; w < nitems(changes); w++) {
				if (w == v)
					continue;
				pair(&o, &people[i], changes[w]);
				a.v[2] = o.mono[2];
				a.len[2] = strlen(o.mono[2]);
				b.v[2] = o.micro[2];
				b.len[2] = strlen(o.micro[2]);
				a.v[0] = b.v[0] = o.mono[0];
				a.len[0] = b.len[0] = strlen(o.mono[0]);
				a.v[1] = b.v[1] = o.mono[1];
				a.len[1] = b.len[1] = strlen(o.mono[1]);
				if (rules_compare(r, &a, &b, NULL, NULL) == 0)
					fail_msg("rule of variant %zu ignores "
					    "variant %zu:\n%s", v, w, text);
				mismatch_clear(&o);
			}
		}
		rules_free(r);
		free(text);
		mismatch_clear(&m);
	}
}

static void
test_no_rule_for_missing(void **state)
{
	struct mismatch m;
	char err[256];
	int f;

	(void)state;
	pair(&m, &people[0], V_LEGACY);
	for (f = 0; f < 3; f++) {
		free(m.micro[f]);
		m.micro[f] = NULL;
	}
	free(m.kind);
	m.kind = xstrdup("missing_in_micro");
	assert_null(cluster_rule(&m, 3, err, sizeof(err)));
	assert_non_null(strstr(err, "missing"));
	mismatch_clear(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_change_one_signature),
		cmocka_unit_test(test_different_changes_never_share),
		cmocka_unit_test(test_signature_reads),
		cmocka_unit_test(test_fields_and_kinds),
		cmocka_unit_test(test_rule_ignores_its_cluster_only),
		cmocka_unit_test(test_no_rule_for_missing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
