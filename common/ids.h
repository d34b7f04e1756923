/*
 * ids: correlation ids (UUIDs through libuuid), request id checks, and the
 * stable hash used for sampling and sharding.
 */
#ifndef COMMON_IDS_H
#define COMMON_IDS_H

#include <stdint.h>

#define IDS_UUID_LEN 36

/* The 16 bytes of a UUID as text: lower case 8-4-4-4-12, NUL-terminated.
 * The one formatter: every UUID this code base prints goes through it. */
void ids_uuid_text(const unsigned char u[16], char out[IDS_UUID_LEN + 1]);

/* A random (v4) UUID, lower case, NUL-terminated. */
void ids_uuid(char out[IDS_UUID_LEN + 1]);

/*
 * A v4-shaped UUID for a request id, from a per-thread generator seeded
 * once by libuuid: unique in practice, about a hundred times cheaper than
 * ids_uuid (which reads the kernel's random source every call), but not
 * unpredictable. For ids that only trace a request; use ids_uuid for
 * anything stored.
 */
void ids_request_uuid(char out[IDS_UUID_LEN + 1]);

/* 1 if s is a UUID in canonical 8-4-4-4-12 hex form (either case). */
int ids_uuid_valid(const char *s);

/* 1 if a client's X-Request-Id may be echoed: 1..128 of [A-Za-z0-9._:-]. */
int ids_request_id_sane(const char *s);

/* FNV-1a 64-bit over the bytes of s: stable across processes and releases. */
uint64_t ids_hash(const char *s);

#endif
