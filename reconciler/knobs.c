/*
 * knobs: see knobs.h. The numbers and switches go through common/config's
 * checks (an environment-only table); RECONCILER_CRASH_AT has a shape of
 * its own and is checked here.
 */
#include "reconciler/knobs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

/*
 * Rows per COPY of a stream (copy_stream.h says why the reads are chunked).
 * The marks start once the reads are done, so no chunk's snapshot is open
 * while they run; the chunks only keep each snapshot short for everything
 * else on the servers (vacuum of other tables), under a second at this
 * size. Each chunk costs its own start: on 1M pairs per side, chunks of
 * 20,000 rows took 3.4-4.2 s of backend CPU per side against 2.0-2.7 s
 * for one COPY or chunks of 200,000.
 */
#define READ_CHUNK_DEFAULT "200000"

static const struct config_option options[] = {
	/* 0 is mark.c's default (25000). */
	{ .env = "RECONCILER_BATCH_ROWS", .type = CONFIG_INT, .def = "0",
	  .min = 0, .max = 100000000,
	  .offset = offsetof(struct knobs, batch_rows) },
	{ .env = "RECONCILER_READ_CHUNK", .type = CONFIG_INT,
	  .def = READ_CHUNK_DEFAULT, .min = 0, .max = LONG_MAX,
	  .offset = offsetof(struct knobs, read_chunk) },
	{ .env = "RECONCILER_SPILL_ALL", .type = CONFIG_BOOL, .def = "false",
	  .offset = offsetof(struct knobs, spill_all) },
	{ .env = "RECONCILER_OVERLAP", .type = CONFIG_BOOL, .def = "false",
	  .offset = offsetof(struct knobs, overlap) },
	CONFIG_OPTIONS_END
};

#ifdef RECONCILER_TEST_HOOKS
/* RECONCILER_CRASH_AT=B[:S]: batch B >= 0, stage a, b (default) or c. */
static int
crash_at(struct knobs *k, char *err, size_t errlen)
{
	const char *s = getenv("RECONCILER_CRASH_AT");
	char *end;
	long b;

	k->crash_batch = 0;
	k->crash_stage = 'b';
	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	b = strtol(s, &end, 10);
	if (*s < '0' || *s > '9' || errno != 0 ||
	    (*end != '\0' && (end[0] != ':' || end[1] == '\0' ||
	    strchr("abc", end[1]) == NULL || end[2] != '\0'))) {
		snprintf(err, errlen, "RECONCILER_CRASH_AT: '%s' is not "
		    "BATCH[:STAGE] (a batch number, stage a, b or c)", s);
		return -1;
	}
	k->crash_batch = b;
	if (*end == ':')
		k->crash_stage = end[1];
	return 0;
}
#endif

int
knobs_load(struct knobs *k, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	if (config_load_env(options, k, err, errlen) == -1)
		return -1;
#ifdef RECONCILER_TEST_HOOKS
	return crash_at(k, err, errlen);
#else
	return 0;	/* no crash hook: RECONCILER_CRASH_AT means nothing here */
#endif
}
