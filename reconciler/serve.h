/*
 * serve: `reconciler serve`, the web console on common/http.c
 * (libmicrohttpd). Pages (serve_pages.c) and the JSON API and /metrics
 * (serve_api.c) read postgresMono through one connection per server
 * thread; ack also writes postgresMicro.
 *
 * Without RECONCILER_WEB_TOKEN it listens on 127.0.0.1 only and asks
 * nothing. With it, it listens on every address; the API takes
 * `Authorization: Bearer <token>`, people log in once with a form that
 * sets an HttpOnly session cookie. Every form that changes something
 * carries a CSRF token.
 */
#ifndef RECONCILER_SERVE_H
#define RECONCILER_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/http.h"
#include "common/strbuf.h"
#include "reconciler/cli.h"

/* Longest ack note accepted, in bytes. */
#define SERVE_NOTE_MAX 1000
/* Rows per page (members, mismatches). */
#define SERVE_PAGE 50

struct console;

/* The command: serves until SIGTERM/SIGINT. Exit code (cli.h). */
int run_serve(const struct cli *c);

/* This thread's connections (made on first use, remade when broken);
 * NULL after answering 503 naming the database. */
PGconn *serve_mono(struct http_request *req, struct console *con);
PGconn *serve_micro(struct http_request *req, struct console *con);

/* 0 when the request may go on; otherwise it was answered (401 for the
 * API, a redirect to /login for pages). */
int serve_auth_api(struct http_request *req, struct console *con);
int serve_auth_page(struct http_request *req, struct console *con);
/* The CSRF token forms carry (hex). */
const char *serve_csrf(const struct console *con);
int serve_csrf_ok(const struct console *con, const char *given);
int serve_has_token(const struct console *con);

/* A positive int64 from text, or -1. */
int64_t serve_parse_id(const char *s);
/* The value of key in an application/x-www-form-urlencoded body, decoded;
 * NULL when absent. The caller frees. */
char *serve_form_value(const char *body, size_t len, const char *key);

/* Pages (serve_pages.c). */
void serve_page_overview(struct http_request *req, void *arg);
void serve_page_run(struct http_request *req, void *arg);
void serve_page_cluster(struct http_request *req, void *arg);
void serve_page_cluster_ack(struct http_request *req, void *arg);
void serve_page_login(struct http_request *req, void *arg);
void serve_page_login_post(struct http_request *req, void *arg);
/* Appends the start and end of a console page. */
void serve_page_begin(struct strbuf *b, const char *title);
void serve_page_end(struct strbuf *b);
void serve_html_escape(struct strbuf *b, const char *s);
void serve_reply_page(struct http_request *req, unsigned status,
    struct strbuf *b);

/* API (serve_api.c). */
void serve_api_clusters(struct http_request *req, void *arg);
void serve_api_runs(struct http_request *req, void *arg);
void serve_api_mismatches(struct http_request *req, void *arg);
void serve_api_cluster_ack(struct http_request *req, void *arg);
void serve_metrics(struct http_request *req, void *arg);
void serve_readyz(struct http_request *req, void *arg);

/* Session cookie for a correct token (serve.c). */
void serve_login(struct http_request *req, struct console *con,
    const char *token);

#endif
