/*
 * bare_responder: the HTTP ceiling for mailer-spy's benchmark.
 *
 * A bare libmicrohttpd server that does everything mailer-spy does for
 * POST /notifications except touch a database: it reads the JSON body,
 * checks the four fields, renders a destination, subject and body, and
 * answers 201 with the same JSON shape and the same headers (X-Request-Id,
 * X-Served-By). The spy's throughput divided by this one's is the share
 * of the HTTP ceiling the spy keeps once it stores every notification.
 *
 * It runs the same thread layout as the services' HTTP glue by default
 * (a pool of --threads threads) but epoll where the services poll: it never
 * suspends a connection, and epoll costs it less. Not a product: it renders
 * naively and only for load-testing.
 *
 * It also stands for the spy in mailer-real's benchmark, where only
 * mailer-real's own work should differ between NOTIFIER=smtp and parallel,
 * and for the failing spies of that benchmark's keep-cases: --status 500
 * answers every notification 500 (after reading it), --delay-ms 1000 answers
 * each one a second late (then one thread per connection sleeps, so a slow
 * answer holds no other connection up).
 *
 *   bare_responder [--port N] [--threads N] [--status S] [--delay-ms MS]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <jansson.h>
#include <microhttpd.h>

#define MAX_BODY (64 * 1024)

struct req {
	char *body;
	size_t len;
	int too_big;
};

static atomic_uint_fast64_t next_request_id;
static volatile sig_atomic_t stop;
static unsigned fail_status;	/* 0: answer 201 */
static unsigned long delay_ms;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static enum MHD_Result
answer(struct MHD_Connection *c, unsigned status, const char *json)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char rid[32];

	r = MHD_create_response_from_buffer(strlen(json), (void *)json,
	    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	snprintf(rid, sizeof(rid), "bare-%llu",
	    (unsigned long long)atomic_fetch_add(&next_request_id, 1));
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "X-Request-Id", rid);
	MHD_add_response_header(r, "X-Served-By", "bare-responder/1.0.0");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
error(struct MHD_Connection *c, unsigned status, const char *msg,
    const char *field)
{
	json_t *o;
	char *s;
	enum MHD_Result ret;

	o = json_pack("{s:s, s:s?}", "error", msg, "field", field);
	if (field == NULL)
		json_object_set_new(o, "field", json_null());
	s = json_dumps(o, JSON_COMPACT);
	ret = answer(c, status, s);
	free(s);
	json_decref(o);
	return ret;
}

/* Renders and answers; the body is complete here. */
static enum MHD_Result
notify(struct MHD_Connection *c, const struct req *rq)
{
	json_t *in = NULL, *out = NULL;
	json_error_t jerr;
	const char *cid = NULL, *ship = NULL;
	json_int_t payroll = 0;
	double total = 0;
	char dest[320], subject[64], *body = NULL, *s = NULL;
	size_t i, n;
	enum MHD_Result ret;

	in = json_loadb(rq->body ? rq->body : "", rq->len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (in == NULL)
		return error(c, 400, "body is not valid JSON", NULL);
	if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s:s, s:I, s:s, s:F}",
	    "correlationId", &cid, "payrollId", &payroll, "shipTo", &ship,
	    "total", &total) != 0) {
		json_decref(in);
		return error(c, 400, jerr.text, NULL);
	}
	n = strlen(ship);
	if (n == 0 || n > 200) {
		json_decref(in);
		return error(c, 400, "shipTo is empty or too long", "shipTo");
	}
	for (i = 0; i < n; i++)
		dest[i] = ship[i] == ' ' ? '.' :
		    (ship[i] >= 'A' && ship[i] <= 'Z') ? ship[i] + 32 : ship[i];
	snprintf(dest + n, sizeof(dest) - n, "@example.com");
	snprintf(subject, sizeof(subject), "Payroll %lld shipped",
	    (long long)payroll);
	n = (size_t)snprintf(NULL, 0,
	    "Hello %s,\r\n\r\nPayroll %lld shipped to %s of %.2f.\r\n", ship,
	    (long long)payroll, ship, total);
	if ((body = malloc(n + 1)) == NULL)
		abort();
	snprintf(body, n + 1,
	    "Hello %s,\r\n\r\nPayroll %lld shipped to %s of %.2f.\r\n", ship,
	    (long long)payroll, ship, total);
	out = json_pack("{s:s, s:s, s:s, s:s}", "correlationId", cid,
	    "destination", dest, "subject", subject, "body", body);
	s = json_dumps(out, JSON_COMPACT);
	ret = answer(c, 201, s);
	free(s);
	free(body);
	json_decref(out);
	json_decref(in);
	return ret;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct req *rq = *con_cls;
	const char *clen;

	(void)cls;
	(void)version;
	if (rq == NULL) {
		if ((rq = calloc(1, sizeof(*rq))) == NULL)
			return MHD_NO;
		*con_cls = rq;
		if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0)
			return answer(c, 200, "{\"status\":\"ok\"}");
		if (strcmp(url, "/notifications") != 0)
			return error(c, 404, "no such resource", NULL);
		if (strcmp(method, "POST") != 0)
			return error(c, 405, "method not allowed", NULL);
		clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    "Content-Length");
		if (clen != NULL && strtoull(clen, NULL, 10) > MAX_BODY)
			return error(c, 413, "body too large", NULL);
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		if (!rq->too_big && rq->len + *upload_data_size <= MAX_BODY) {
			char *nb = realloc(rq->body, rq->len + *upload_data_size);
			if (nb == NULL)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->len, upload_data, *upload_data_size);
			rq->len += *upload_data_size;
		} else
			rq->too_big = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (rq->too_big)
		return error(c, 413, "body too large", NULL);
	if (delay_ms > 0) {
		struct timespec ts = { .tv_sec = (time_t)(delay_ms / 1000),
		    .tv_nsec = (long)(delay_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	if (fail_status != 0)
		return error(c, fail_status, "failing on purpose (--status)", NULL);
	return notify(c, rq);
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (rq != NULL) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: bare_responder [--port N] [--threads N] "
	    "[--status S] [--delay-ms MS]\n"
	    "  answers POST /notifications with 201 and mailer-spy's JSON,\n"
	    "  touching no database (benchmark baseline); --status answers S\n"
	    "  instead, --delay-ms answers each request that much later\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "status", required_argument, NULL, 's' },
		{ "delay-ms", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct MHD_Daemon *d;
	struct sockaddr_in sin;
	unsigned long port = 8081, threads = 2, v;
	unsigned flags;
	char *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "p:t:s:D:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			errno = 0;
			port = strtoul(optarg, &end, 10);
			if (errno || *end || port == 0 || port > 65535) {
				fprintf(stderr, "bare_responder: bad --port '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
			errno = 0;
			threads = strtoul(optarg, &end, 10);
			if (errno || *end || threads == 0 || threads > 64) {
				fprintf(stderr, "bare_responder: bad --threads '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || v < 200 || v > 599) {
				fprintf(stderr, "bare_responder: bad --status '%s'\n", optarg);
				return 2;
			}
			fail_status = (unsigned)v;
			break;
		case 'D':
			errno = 0;
			delay_ms = strtoul(optarg, &end, 10);
			if (errno || *end || delay_ms > 600000) {
				fprintf(stderr, "bare_responder: bad --delay-ms '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (delay_ms > 0) {
		/* a sleeping handler must hold up its own connection only */
		flags = MHD_USE_INTERNAL_POLLING_THREAD |
		    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG;
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler,
		    NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
		    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
		    MHD_OPTION_END);
	} else {
		flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		    MHD_USE_ERROR_LOG;
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler,
		    NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
		    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
		    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
		    MHD_OPTION_END);
	}
	if (d == NULL) {
		fprintf(stderr, "bare_responder: cannot listen on port %lu\n", port);
		return 1;
	}
	fprintf(stderr, "bare_responder: listening on 127.0.0.1:%lu, %lu threads, "
	    "status %u, delay %lu ms\n", port, threads,
	    fail_status ? fail_status : 201, delay_ms);
	while (!stop)
		pause();
	MHD_stop_daemon(d);
	return 0;
}
