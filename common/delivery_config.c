/*
 * delivery_config: see delivery_config.h.
 */
#include "common/delivery_config.h"

#include <stdio.h>
#include <string.h>

int
delivery_settings_check(const struct delivery_settings *s, char *err,
    size_t errlen)
{
	if ((s->smtp_user == NULL) != (s->smtp_password == NULL)) {
		snprintf(err, errlen, "SMTP_USER and SMTP_PASSWORD go together");
		return -1;
	}
	if (s->smtp_user != NULL && strcmp(s->smtp_starttls, "off") == 0 &&
	    !s->smtp_auth_without_tls) {
		snprintf(err, errlen, "SMTP_USER/SMTP_PASSWORD are set with "
		    "SMTP_STARTTLS=off: the password would cross the network in "
		    "clear; set SMTP_STARTTLS=required (or SMTP_AUTH_WITHOUT_TLS=on "
		    "on a link you trust)");
		return -1;
	}
	return 0;
}

struct delivery_config
delivery_config_make(const struct delivery_settings *s, const char *conninfo,
    const char *store_name, const char *table, const char *mail_from,
    const char *mail_domain)
{
	struct delivery_config dc = {
		.conninfo = conninfo,
		.store_name = store_name,
		.table = table,
		.smtp = {
			.host = s->smtp_host,
			.port = (unsigned)s->smtp_port,
			.starttls_required = strcmp(s->smtp_starttls,
			    "required") == 0,
			.ca_file = s->smtp_ca_file,
			.tls_verify = s->smtp_tls_verify,
			.user = s->smtp_user,
			.password = s->smtp_password,
			.timeout_s = (unsigned)s->smtp_timeout_s,
		},
		.mail_from = mail_from,
		.mail_domain = mail_domain,
		.workers = (unsigned)s->workers,
		.batch = (size_t)s->batch,
		.poll_ms = (unsigned)s->poll_ms,
		.retry_base_ms = (unsigned)s->retry_base_ms,
		.retry_max_ms = (unsigned)s->retry_max_ms,
		.max_attempts = (unsigned)s->max_attempts,
	};

	return dc;
}
