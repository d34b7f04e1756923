/*
 * handlers: mailer-spy's HTTP endpoints (the route table) and the answer
 * to a recorded notification.
 */
#ifndef MAILER_SPY_HANDLERS_H
#define MAILER_SPY_HANDLERS_H

#include <stddef.h>

#include "common/delivery_config.h"
#include "common/group_commit.h"
#include "common/http.h"
#include "render.h"
#include "store.h"

struct spy_config {
	long port;
	const char *bind;
	const char *micro_url;
	const char *mail_domain;
	const char *mail_from;
	const char *mode;
	const char *token;
	long per_ip_limit;
	long request_deadline_s;
	const char *template_path;
	const char *log_level;
	const char *log_format;
	long threads;
	long max_batch;
	long committers;
	long max_pending;
	long max_body;
	/* SPY_MODE=live only: SMTP and delivery (common/delivery_config.h) */
	struct delivery_settings delivery;
};

struct spy {
	const struct spy_config *cfg;
	struct render_template *body_template;	/* NULL = the canonical body */
	struct store *store;
	struct db_probe *probe;		/* /readyz's state (common/db.h) */
};

extern const struct http_route spy_routes[];
extern const size_t spy_nroutes;

/* The store's completion callback: answers the suspended request. */
void spy_record_done(struct spy_record *rec, enum gc_outcome outcome,
    void *arg);

#endif
