/*
 * util: allocation wrappers that never return NULL (allocation failure is
 * fatal, as in OpenSMTPD's util.c) and a few string helpers every program
 * uses. Everything returned is owned by the caller and freed with free().
 */
#ifndef COMMON_UTIL_H
#define COMMON_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Copy src into dst of size dstsz, always NUL-terminated; returns strlen(src). */
size_t strlcpy_(char *dst, const char *src, size_t dstsz);

/* Monotonic clock in nanoseconds / seconds as a double. */
uint64_t now_ns(void);
double now_s(void);

/* Sleep for ms milliseconds, resuming after signals. */
void sleep_ms(long ms);

/*
 * Starts a thread that takes no signals (all blocked in it): SIGTERM and
 * SIGINT are the main thread's to wait for. A thread started with the
 * caller's mask could be handed a process-wide SIGTERM while the main
 * thread is busy, and die of it instead of draining. Fatal on failure.
 */
void thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
