/*
 * ids: see ids.h. UUIDs come from libuuid's random generator and are
 * written by ids_uuid_text; the checks are plain byte scans so they can
 * run on untrusted input of any length.
 */
#include "ids.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include <uuid/uuid.h>

void
ids_uuid_text(const unsigned char u[16], char out[IDS_UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	int i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u[i] >> 4];
		out[o++] = hex[u[i] & 15];
	}
	out[o] = '\0';
}

void
ids_uuid(char out[IDS_UUID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	ids_uuid_text(u, out);
}

/* splitmix64: a 2^64-long sequence per thread, from a random start. */
static uint64_t
next64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
ids_request_uuid(char out[IDS_UUID_LEN + 1])
{
	static _Thread_local uint64_t state;
	static _Thread_local int seeded;
	uint64_t hi, lo;
	uuid_t u;
	int i;

	if (!seeded) {
		uuid_generate_random(u);
		memcpy(&state, u, sizeof(state));
		seeded = 1;
	}
	hi = next64(&state);
	lo = next64(&state);
	for (i = 0; i < 8; i++) {
		u[i] = (unsigned char)(hi >> (56 - 8 * i));
		u[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
	}
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);	/* version 4 */
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	ids_uuid_text(u, out);
}

int
ids_uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < IDS_UUID_LEN; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0')
			return 0;
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return 0;
		} else if (!isxdigit(c)) {
			return 0;
		}
	}
	return s[IDS_UUID_LEN] == '\0';
}

int
ids_request_id_sane(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	for (n = 0; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= 128)
			return 0;
		if (!(isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return n > 0;
}

uint64_t
ids_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}
