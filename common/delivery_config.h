/*
 * delivery_config: the SMTP and delivery settings of the services that
 * send mail (mailer-real; mailer-spy in SPY_MODE=live), written once. A
 * service embeds struct delivery_settings in its configuration struct and
 * puts the rows in its config table (common/config.h):
 *
 *	SMTP_CONFIG_OPTIONS(struct mono_config, delivery, ""),
 *	...
 *	DELIVERY_CONFIG_OPTIONS(struct mono_config, delivery, "4", ""),
 *
 * expand to the SMTP_* and the DELIVERY_* rows for member `delivery`;
 * WORKERS is DELIVERY_WORKERS' default and WHEN is added to every help
 * line (" (live mode)"). Then delivery_settings_check at start and
 * delivery_config_make for delivery_start.
 */
#ifndef COMMON_DELIVERY_CONFIG_H
#define COMMON_DELIVERY_CONFIG_H

#include <stddef.h>

#include "common/config.h"
#include "common/delivery.h"

struct delivery_settings {
	const char *smtp_host;
	long smtp_port;
	const char *smtp_starttls;	/* "off" | "required" */
	const char *smtp_user, *smtp_password;
	int smtp_auth_without_tls;
	const char *smtp_ca_file;
	int smtp_tls_verify;
	long smtp_timeout_s;
	long workers, batch, poll_ms, retry_base_ms, retry_max_ms, max_attempts;
};

#define DELIVERY_OPTION_AT(T, m, f) offsetof(T, m.f)

#define SMTP_CONFIG_OPTIONS(T, m, WHEN) \
	{ .env = "SMTP_HOST", .flag = "smtp-host", .type = CONFIG_STRING, \
	  .def = "localhost", .help = "SMTP server" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_host) }, \
	{ .env = "SMTP_PORT", .flag = "smtp-port", .type = CONFIG_INT, \
	  .def = "25", .min = 1, .max = 65535, .help = "SMTP port" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_port) }, \
	{ .env = "SMTP_STARTTLS", .flag = "smtp-starttls", \
	  .type = CONFIG_CHOICE, .def = "off", .choices = "off|required", \
	  .help = "off|required" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_starttls) }, \
	{ .env = "SMTP_USER", .flag = "smtp-user", .type = CONFIG_STRING, \
	  .help = "SMTP AUTH user" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_user) }, \
	{ .env = "SMTP_PASSWORD", .flag = "smtp-password", \
	  .type = CONFIG_STRING, .help = "SMTP AUTH password" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_password) }, \
	{ .env = "SMTP_AUTH_WITHOUT_TLS", .flag = "smtp-auth-without-tls", \
	  .type = CONFIG_BOOL, .def = "false", \
	  .help = "allow AUTH with SMTP_STARTTLS=off (a trusted link only)" \
	  WHEN, .offset = DELIVERY_OPTION_AT(T, m, smtp_auth_without_tls) }, \
	{ .env = "SMTP_CA_FILE", .flag = "smtp-ca-file", .type = CONFIG_STRING, \
	  .help = "PEM CAs trusted for STARTTLS (default: system)" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_ca_file) }, \
	{ .env = "SMTP_TLS_VERIFY", .flag = "smtp-tls-verify", \
	  .type = CONFIG_BOOL, .def = "true", \
	  .help = "check the server certificate" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_tls_verify) }, \
	{ .env = "SMTP_TIMEOUT_S", .flag = "smtp-timeout", .type = CONFIG_INT, \
	  .def = "30", .min = 1, .max = 3600, \
	  .help = "SMTP timeout per step, seconds" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, smtp_timeout_s) }

#define DELIVERY_CONFIG_OPTIONS(T, m, WORKERS, WHEN) \
	{ .env = "DELIVERY_WORKERS", .flag = "delivery-workers", \
	  .type = CONFIG_INT, .def = WORKERS, .min = 1, .max = 64, \
	  .help = "SMTP delivery threads" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, workers) }, \
	{ .env = "DELIVERY_BATCH", .flag = "delivery-batch", \
	  .type = CONFIG_INT, .def = "200", .min = 1, .max = 10000, \
	  .help = "mails per SMTP session" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, batch) }, \
	{ .env = "DELIVERY_POLL_MS", .flag = "delivery-poll-ms", \
	  .type = CONFIG_INT, .def = "1000", .min = 10, .max = 3600000, \
	  .help = "outbox poll for due retries, ms" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, poll_ms) }, \
	{ .env = "DELIVERY_RETRY_BASE_MS", .flag = "retry-base-ms", \
	  .type = CONFIG_INT, .def = "1000", .min = 1, .max = 86400000, \
	  .help = "first retry delay, ms" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, retry_base_ms) }, \
	{ .env = "DELIVERY_RETRY_MAX_MS", .flag = "retry-max-ms", \
	  .type = CONFIG_INT, .def = "600000", .min = 1, .max = 86400000, \
	  .help = "longest retry delay, ms" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, retry_max_ms) }, \
	{ .env = "DELIVERY_MAX_ATTEMPTS", .flag = "max-attempts", \
	  .type = CONFIG_INT, .def = "10", .min = 1, .max = 1000, \
	  .help = "attempts before a mail is failed" WHEN, \
	  .offset = DELIVERY_OPTION_AT(T, m, max_attempts) }

/*
 * The checks across settings that config_load cannot make row by row:
 * SMTP_USER and SMTP_PASSWORD go together, and go over TLS unless
 * SMTP_AUTH_WITHOUT_TLS. 0, or -1 with err naming the variables (never
 * their values); the service exits 2.
 */
int delivery_settings_check(const struct delivery_settings *s, char *err,
    size_t errlen);

/* The delivery_config for delivery_start: the settings, and the table the
 * service delivers from (strings are borrowed, not copied). */
struct delivery_config delivery_config_make(const struct delivery_settings *s,
    const char *conninfo, const char *store_name, const char *table,
    const char *mail_from, const char *mail_domain);

#endif
