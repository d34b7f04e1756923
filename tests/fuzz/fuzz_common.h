/*
 * fuzz_common: what every libFuzzer target here shares. FUZZ_CHECK is the
 * oracle: a property the parser promises (no CR/LF in a header, CRLF line
 * ends, ...) that, when broken, aborts so libFuzzer saves the input.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "fuzz oracle: %s: ", #cond);		\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		abort();						\
	}								\
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of data[0..size) (stops at the first NUL, like C). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* 1 when s has a byte below 0x20 other than those in allowed, or DEL. */
static inline int
fuzz_has_ctl(const char *s, const char *allowed)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 || c == 0x7f) && (c == 0 || strchr(allowed, c) == NULL))
			return 1;
	}
	return 0;
}

/* 1 when every LF is preceded by CR and every CR followed by LF. */
static inline int
fuzz_crlf_only(const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return 0;
		if (s[i] == '\r' && s[i + 1] != '\n')
			return 0;
	}
	return 1;
}

/* ASCII case-insensitive strstr (strcasestr is a GNU extension). */
static inline const char *
fuzz_find_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay; hay++) {
		size_t i = 0;

		while (i < n && hay[i] && (hay[i] | 0x20) == (needle[i] | 0x20))
			i++;
		if (i == n)
			return hay;
	}
	return NULL;
}

/* Takes 8 bytes as an int64 from the front of the input, if there are 8. */
static inline int64_t
fuzz_take_i64(const uint8_t **data, size_t *size)
{
	uint64_t v = 0;

	if (*size >= 8) {
		memcpy(&v, *data, 8);
		*data += 8;
		*size -= 8;
	}
	return (int64_t)v;
}

#endif
