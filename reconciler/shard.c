/*
 * shard: see shard.h. The SQL form must agree bit for bit with
 * shard_hash: ('x' || right(uuid::text, 8))::bit(32)::bigint is the last
 * four bytes of the UUID read big-endian, as an unsigned number.
 */
#include "reconciler/shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"

static int
parse_int(const char *s, char **end, long *out)
{
	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	*out = strtol(s, end, 10);
	return errno == 0 ? 0 : -1;
}

int
shard_parse(const char *s, struct shard *out, char *err, size_t errlen)
{
	char *end;
	long k, n;

	if (s == NULL || parse_int(s, &end, &k) == -1 || *end != '/' ||
	    parse_int(end + 1, &end, &n) == -1 || *end != '\0') {
		snprintf(err, errlen, "--shard: '%s' is not K/N (e.g. 1/4)",
		    s ? s : "");
		return -1;
	}
	if (n < 1 || n > SHARD_MAX || k < 1 || k > n) {
		snprintf(err, errlen, "--shard: '%s' needs 1 <= K <= N <= %d", s,
		    SHARD_MAX);
		return -1;
	}
	out->k = (int)k;
	out->n = (int)n;
	return 0;
}

uint32_t
shard_hash(const unsigned char uuid[16])
{
	return (uint32_t)uuid[12] << 24 | (uint32_t)uuid[13] << 16 |
	    (uint32_t)uuid[14] << 8 | (uint32_t)uuid[15];
}

int
shard_contains(const struct shard *s, const unsigned char uuid[16])
{
	return s->n <= 1 || shard_hash(uuid) % (uint32_t)s->n ==
	    (uint32_t)(s->k - 1);
}

char *
shard_sql(const struct shard *s, const char *col)
{
	if (s->n <= 1)
		return xstrdup("");
	return xasprintf(" and ('x' || right(%s::text, 8))::bit(32)::bigint"
	    " %% %d = %d", col, s->n, s->k - 1);
}

int32_t
shard_lock_key(const struct shard *s)
{
	return (int32_t)(s->n * (SHARD_MAX + 1) + s->k);
}
