/*
 * shard: split the correlation-id space into N shards so that N cron
 * entries can share one reconciliation. The hash is the last 32 bits of the
 * UUID (random in v4 and v7 ids) modulo N: stable, computable the same way
 * in C and in SQL, so the filter runs on the server.
 */
#ifndef RECONCILER_SHARD_H
#define RECONCILER_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_MAX 1024

/* Shard k of n, 1 <= k <= n <= SHARD_MAX; {1, 1} is the whole key space. */
struct shard {
	int k, n;
};

/* Parses "K/N". Returns 0, or -1 with err naming what is wrong. */
int shard_parse(const char *s, struct shard *out, char *err, size_t errlen);

/* The hash of a UUID given as its 16 bytes. */
uint32_t shard_hash(const unsigned char uuid[16]);

int shard_contains(const struct shard *s, const unsigned char uuid[16]);

/*
 * " and <condition on col>" selecting the shard, or "" for the whole space.
 * The caller frees the string.
 */
char *shard_sql(const struct shard *s, const char *col);

/* Second key of the shard's advisory lock (the first is SHARD_LOCK_CLASS). */
#define SHARD_LOCK_CLASS 0x52454331	/* "REC1" */
/* First key of the lock a run's writer sessions hold (run.c, fence). */
#define SHARD_WRITER_CLASS 0x52454332	/* "REC2" */
int32_t shard_lock_key(const struct shard *s);

#endif
