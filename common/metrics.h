/*
 * metrics: a process-wide registry of counters, gauges and histograms,
 * rendered in the Prometheus text exposition format for GET /metrics.
 *
 * A metric is identified by its name and its label set (the text inside
 * the braces, e.g. `route="x",status="201"`); asking twice for the same
 * pair returns the same metric, so dynamic labels are cheap to use. Updates
 * are lock-free atomics; registration takes a mutex.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metric;

struct metric *metrics_counter(const char *name, const char *help,
    const char *labels);
struct metric *metrics_gauge(const char *name, const char *help,
    const char *labels);
/* buckets: upper bounds in ascending order; NULL = latency buckets in seconds. */
struct metric *metrics_histogram(const char *name, const char *help,
    const char *labels, const double *buckets, size_t nbuckets);

void metrics_inc(struct metric *m, uint64_t n);		/* counter */
void metrics_set(struct metric *m, double v);		/* gauge */
void metrics_add(struct metric *m, double v);		/* gauge */
void metrics_observe(struct metric *m, double v);	/* histogram */

/* Value of a counter or gauge (for tests and summaries). */
double metrics_value(const struct metric *m);

/* The whole registry in text format; the caller frees. */
char *metrics_render(void);

#endif
