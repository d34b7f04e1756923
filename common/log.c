/*
 * log: see log.h. Each event is formatted into one buffer and written with
 * a single write(2), so lines from different threads never interleave.
 * Control characters in messages are escaped: a value that came from a
 * request can never forge a second log line.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LEVEL_INFO;
static int json_format;
static char service_name[64] = "-";
static _Thread_local char thread_id[80];

static const char *const level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

int
log_init(const char *service, const char *level, const char *format)
{
	size_t i;
	int found = 0;

	if (service != NULL)
		snprintf(service_name, sizeof(service_name), "%s", service);
	if (level != NULL) {
		for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
			if (strcmp(level, level_names[i]) == 0) {
				min_level = (enum log_level)i;
				found = 1;
			}
		}
		if (!found)
			return -1;
	}
	if (format != NULL) {
		if (strcmp(format, "json") == 0)
			json_format = 1;
		else if (strcmp(format, "text") == 0)
			json_format = 0;
		else
			return -1;
	}
	return 0;
}

void
log_set_id(const char *id)
{
	if (id == NULL)
		thread_id[0] = '\0';
	else
		snprintf(thread_id, sizeof(thread_id), "%s", id);
}

const char *
log_get_id(void)
{
	return thread_id[0] ? thread_id : NULL;
}

int
log_enabled(enum log_level level)
{
	return level >= min_level;
}

/* Append s to buf (at *off, capacity cap), escaping as JSON string content. */
static void
put_escaped(char *buf, size_t *off, size_t cap, const char *s, int json)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0' && *off + 8 < cap; p++) {
		if (*p == '"' && json) {
			buf[(*off)++] = '\\';
			buf[(*off)++] = '"';
		} else if (*p == '\\' && json) {
			buf[(*off)++] = '\\';
			buf[(*off)++] = '\\';
		} else if (*p < 0x20 || *p == 0x7f) {
			*off += (size_t)snprintf(buf + *off, cap - *off,
			    json ? "\\u%04x" : "\\x%02x", *p);
		} else {
			buf[(*off)++] = (char)*p;
		}
	}
}

static void
emit(enum log_level level, const char *fmt, va_list ap, int with_errno)
{
	char msg[4096], line[8192], ts[64];
	int saved = errno;
	size_t off = 0;
	struct timespec now;
	struct tm tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		size_t n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

	if (json_format) {
		off += (size_t)snprintf(line, sizeof(line),
		    "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\"", ts,
		    level_names[level], service_name);
		if (thread_id[0]) {
			off += (size_t)snprintf(line + off, sizeof(line) - off, ",\"id\":\"");
			put_escaped(line, &off, sizeof(line), thread_id, 1);
			line[off++] = '"';
		}
		off += (size_t)snprintf(line + off, sizeof(line) - off, ",\"msg\":\"");
		put_escaped(line, &off, sizeof(line), msg, 1);
		off += (size_t)snprintf(line + off, sizeof(line) - off, "\"}\n");
	} else {
		off += (size_t)snprintf(line, sizeof(line), "%s %s %s%s%s%s ", ts,
		    service_name, level_names[level], thread_id[0] ? " [" : "",
		    thread_id[0] ? thread_id : "", thread_id[0] ? "]" : "");
		put_escaped(line, &off, sizeof(line), msg, 0);
		line[off++] = '\n';
	}
	if (off > sizeof(line))
		off = sizeof(line);
	if (write(STDERR_FILENO, line, off) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}

#define LOG_FN(name, level, with_errno)                  \
	void name(const char *fmt, ...)                  \
	{                                                \
		va_list ap;                              \
		if (!log_enabled(level))                 \
			return;                          \
		va_start(ap, fmt);                       \
		emit(level, fmt, ap, with_errno);        \
		va_end(ap);                              \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_error, LOG_LEVEL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_LEVEL_ERROR, fmt, ap, 1);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_LEVEL_ERROR, fmt, ap, 0);
	va_end(ap);
	exit(1);
}
