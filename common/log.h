/*
 * log: one line per event on stderr, as text or as JSON lines, each line
 * carrying the service name and, when set, the current request or run id
 * (thread-local, so a worker thread tags its own lines).
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* level: debug|info|warn|error; format: text|json. Returns -1 on a bad value. */
int log_init(const char *service, const char *level, const char *format);

/* Tag this thread's lines with an id (request id, run id); NULL clears. */
void log_set_id(const char *id);
const char *log_get_id(void);

int log_enabled(enum log_level level);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* fatal appends strerror(errno), fatalx does not; both exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
