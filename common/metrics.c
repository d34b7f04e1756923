/*
 * metrics: see metrics.h. The registry is a list that only grows; a metric
 * is never freed, so a pointer handed out stays valid for the life of the
 * process and updates need no lock. Doubles are kept as their bit patterns
 * in 64-bit atomics and updated with compare-and-swap.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "util.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric {
	struct metric *next;
	enum metric_type type;
	char *name;
	char *help;
	char *labels;
	_Atomic uint64_t count;		/* counter value; histogram count */
	_Atomic uint64_t bits;		/* gauge value; histogram sum (double bits) */
	double *bounds;
	size_t nbounds;
	_Atomic uint64_t *buckets;	/* per bucket, not cumulative */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *registry_head, *registry_tail;

static const double latency_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10,
};

static uint64_t
dbits(double v)
{
	uint64_t b;

	memcpy(&b, &v, sizeof(b));
	return b;
}

static double
bitsd(uint64_t b)
{
	double v;

	memcpy(&v, &b, sizeof(v));
	return v;
}

static void
atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load(p);

	while (!atomic_compare_exchange_weak(p, &old, dbits(bitsd(old) + v)))
		;
}

static struct metric *
lookup_or_add(enum metric_type type, const char *name, const char *help,
    const char *labels, const double *bounds, size_t nbounds)
{
	struct metric *m;

	if (labels == NULL)
		labels = "";
	pthread_mutex_lock(&registry_lock);
	for (m = registry_head; m != NULL; m = m->next) {
		if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0)
			goto out;
	}
	m = xcalloc(1, sizeof(*m));
	m->type = type;
	m->name = xstrdup(name);
	m->help = xstrdup(help ? help : name);
	m->labels = xstrdup(labels);
	atomic_init(&m->count, 0);
	atomic_init(&m->bits, dbits(0.0));
	if (type == METRIC_HISTOGRAM) {
		size_t i;

		if (bounds == NULL) {
			bounds = latency_bounds;
			nbounds = nitems(latency_bounds);
		}
		m->nbounds = nbounds;
		m->bounds = xcalloc(nbounds, sizeof(double));
		memcpy(m->bounds, bounds, nbounds * sizeof(double));
		m->buckets = xcalloc(nbounds + 1, sizeof(*m->buckets));
		for (i = 0; i <= nbounds; i++)
			atomic_init(&m->buckets[i], 0);
	}
	if (registry_tail != NULL)
		registry_tail->next = m;
	else
		registry_head = m;
	registry_tail = m;
out:
	pthread_mutex_unlock(&registry_lock);
	return m;
}

struct metric *
metrics_counter(const char *name, const char *help, const char *labels)
{
	return lookup_or_add(METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric *
metrics_gauge(const char *name, const char *help, const char *labels)
{
	return lookup_or_add(METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric *
metrics_histogram(const char *name, const char *help, const char *labels,
    const double *buckets, size_t nbuckets)
{
	return lookup_or_add(METRIC_HISTOGRAM, name, help, labels, buckets,
	    nbuckets);
}

void
metrics_inc(struct metric *m, uint64_t n)
{
	if (m != NULL)
		atomic_fetch_add(&m->count, n);
}

void
metrics_set(struct metric *m, double v)
{
	if (m != NULL)
		atomic_store(&m->bits, dbits(v));
}

void
metrics_add(struct metric *m, double v)
{
	if (m != NULL)
		atomic_add_double(&m->bits, v);
}

void
metrics_observe(struct metric *m, double v)
{
	size_t i;

	if (m == NULL || m->type != METRIC_HISTOGRAM)
		return;
	for (i = 0; i < m->nbounds; i++)
		if (v <= m->bounds[i])
			break;
	atomic_fetch_add(&m->buckets[i], 1);
	atomic_add_double(&m->bits, v);
	atomic_fetch_add(&m->count, 1);
}

double
metrics_value(const struct metric *m)
{
	if (m == NULL)
		return 0;
	if (m->type == METRIC_GAUGE)
		return bitsd(atomic_load(&m->bits));
	return (double)atomic_load(&m->count);
}

/* The shortest text that reads back as v: 0.005, not 0.0050000000000000001. */
static void
fmt_double(char *out, size_t outlen, double v)
{
	int prec;

	for (prec = 1; prec < 17; prec++) {
		snprintf(out, outlen, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
	snprintf(out, outlen, "%.17g", v);
}

/* `name{labels,extra}` or `name{extra}` or `name` */
static void
series(struct strbuf *b, const char *name, const char *suffix,
    const char *labels, const char *extra)
{
	int has_l = labels[0] != '\0', has_e = extra != NULL;

	strbuf_printf(b, "%s%s", name, suffix);
	if (has_l || has_e)
		strbuf_printf(b, "{%s%s%s}", labels, has_l && has_e ? "," : "",
		    has_e ? extra : "");
}

static void
render_one(struct strbuf *b, const struct metric *m)
{
	char le[64], num[40];
	uint64_t cum = 0;
	size_t i;

	switch (m->type) {
	case METRIC_COUNTER:
		series(b, m->name, "", m->labels, NULL);
		strbuf_printf(b, " %llu\n", (unsigned long long)atomic_load(&m->count));
		break;
	case METRIC_GAUGE:
		series(b, m->name, "", m->labels, NULL);
		fmt_double(num, sizeof(num), bitsd(atomic_load(&m->bits)));
		strbuf_printf(b, " %s\n", num);
		break;
	case METRIC_HISTOGRAM:
		for (i = 0; i <= m->nbounds; i++) {
			cum += atomic_load(&m->buckets[i]);
			if (i < m->nbounds) {
				fmt_double(num, sizeof(num), m->bounds[i]);
				snprintf(le, sizeof(le), "le=\"%s\"", num);
			} else
				snprintf(le, sizeof(le), "le=\"+Inf\"");
			series(b, m->name, "_bucket", m->labels, le);
			strbuf_printf(b, " %llu\n", (unsigned long long)cum);
		}
		series(b, m->name, "_sum", m->labels, NULL);
		fmt_double(num, sizeof(num), bitsd(atomic_load(&m->bits)));
		strbuf_printf(b, " %s\n", num);
		series(b, m->name, "_count", m->labels, NULL);
		strbuf_printf(b, " %llu\n", (unsigned long long)atomic_load(&m->count));
		break;
	}
}

char *
metrics_render(void)
{
	static const char *const type_names[] = {
		[METRIC_COUNTER] = "counter",
		[METRIC_GAUGE] = "gauge",
		[METRIC_HISTOGRAM] = "histogram",
	};
	struct strbuf b = STRBUF_INIT;
	struct metric *m, *o;

	pthread_mutex_lock(&registry_lock);
	/* Every series of one name together, under one HELP/TYPE. */
	for (m = registry_head; m != NULL; m = m->next) {
		for (o = registry_head; o != m; o = o->next)
			if (strcmp(o->name, m->name) == 0)
				break;
		if (o != m)
			continue;
		strbuf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help,
		    m->name, type_names[m->type]);
		for (o = m; o != NULL; o = o->next)
			if (strcmp(o->name, m->name) == 0)
				render_one(&b, o);
	}
	pthread_mutex_unlock(&registry_lock);
	return strbuf_take(&b);
}
