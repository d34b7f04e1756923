/*
 * loadgen: an open-loop, fixed-rate HTTP/1.1 load generator for latency
 * at a given rate (wrk2 is not packaged here; wrk is closed-loop, so its
 * latencies hide queueing: a slow answer delays the next request instead of
 * making it wait, the "coordinated omission" error).
 *
 * Request k is due at start + k/rate, whatever happened before. It goes out
 * on the first idle keep-alive connection; when every connection is busy it
 * waits, and its latency is measured from when it was DUE, not when it was
 * sent, so a stalled server shows up in the percentiles as the users behind
 * it would see it. One thread, epoll, a timerfd for the schedule.
 *
 * Bodies: --kind spy posts mailer-spy notifications with correlation ids
 * unique per run (--nonce) and per request; --kind payroll posts payrolls to
 * mailer-real. The result is one JSON object on stdout.
 *
 *   loadgen --port N --rate R --duration S [--connections C]
 *           [--kind spy|payroll] [--nonce HEX] [--token T]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define MAX_CONNS 1024
#define BUF_SIZE 65536

enum kind { KIND_SPY, KIND_PAYROLL };

struct conn {
	int fd;
	int busy;		/* a request is on the wire */
	int connected;
	uint64_t due_ns;	/* when the request in flight was due */
	char out[1024];
	size_t outlen, outoff;
	char in[BUF_SIZE];
	size_t inlen;
};

struct opts {
	unsigned short port;
	double rate;
	double duration;
	unsigned nconns;
	enum kind kind;
	uint32_t nonce;
	const char *token;
};

static struct conn conns[MAX_CONNS];
static int epfd;
static struct sockaddr_in target;
static uint32_t *lat_us;	/* one per completed request */
static uint64_t nlat, caplat;
static uint64_t sent, completed, errors, reconnects;
static uint64_t status_count[600];
static uint64_t counter;

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
conn_open(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		die("socket");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
	    errno != EINPROGRESS)
		die("connect");
	c->connected = 0;
	c->busy = 0;
	c->inlen = c->outlen = c->outoff = 0;
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl");
}

/* A connection broke: count the request it carried as an error, reopen. */
static void
conn_reset(struct conn *c)
{
	if (c->busy)
		errors++;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	reconnects++;
	conn_open(c);
}

static void
build_request(struct conn *c, const struct opts *o)
{
	char body[512];
	int blen, hlen;
	uint64_t k = counter++;

	if (o->kind == KIND_SPY)
		blen = snprintf(body, sizeof(body),
		    "{\"correlationId\":\"%08" PRIx32 "-%04x-4000-8000-%012" PRIx64
		    "\",\"payrollId\":%" PRIu64 ",\"shipTo\":\"Bench User %" PRIu64
		    "\",\"total\":320.00}", o->nonce, 0xbe57u, k, k + 1, k % 100000);
	else
		blen = snprintf(body, sizeof(body),
		    "{\"shipTo\":\"Bench User %" PRIu64 "\",\"total\":%" PRIu64 ".%02u}",
		    k % 100000, 100 + k % 900, (unsigned)(k % 100));
	hlen = snprintf(c->out, sizeof(c->out),
	    "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
	    "Content-Type: application/json\r\nContent-Length: %d\r\n"
	    "%s%s%s\r\n%s",
	    o->kind == KIND_SPY ? "/notifications" : "/payroll", o->port, blen,
	    o->token ? "Authorization: Bearer " : "", o->token ? o->token : "",
	    o->token ? "\r\n" : "", body);
	c->outlen = (size_t)hlen;
	c->outoff = 0;
}

static void
conn_flush(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_reset(c);
			return;
		}
		c->outoff += (size_t)n;
	}
}

/* memmem and strcasestr are GNU; these are all a response parser needs. */
static char *
find_crlfcrlf(char *p, size_t len)
{
	size_t i;

	for (i = 0; i + 4 <= len; i++)
		if (p[i] == '\r' && memcmp(p + i, "\r\n\r\n", 4) == 0)
			return p + i;
	return NULL;
}

static const char *
find_header(const char *hdrs, const char *lname)
{
	size_t n = strlen(lname);
	const char *p;

	for (p = hdrs; *p; p++) {
		size_t i;
		for (i = 0; i < n && p[i]; i++) {
			char ch = p[i];
			if (ch >= 'A' && ch <= 'Z')
				ch += 32;
			if (ch != lname[i])
				break;
		}
		if (i == n)
			return p;
	}
	return NULL;
}

static void
record(uint64_t due, unsigned status)
{
	uint64_t us = (mono_ns() - due) / 1000;

	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat_us = realloc(lat_us, caplat * sizeof(*lat_us));
		if (lat_us == NULL)
			die("realloc");
	}
	lat_us[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	if (status < 600)
		status_count[status]++;
	if (status < 200 || status >= 300)
		errors++;
	completed++;
}

/* Takes complete responses out of c->in; returns -1 when the peer closed. */
static int
conn_read(struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		c->inlen += (size_t)n;
		if (c->inlen == sizeof(c->in))
			return -1;	/* a response this big is not ours */
	}
	for (;;) {
		char *end;
		const char *cl;
		unsigned status;
		size_t hdr, body = 0, total;

		end = find_crlfcrlf(c->in, c->inlen);
		if (end == NULL)
			return 0;
		hdr = (size_t)(end - c->in) + 4;
		if (sscanf(c->in, "HTTP/1.%*d %u", &status) != 1)
			return -1;
		*end = '\0';
		cl = find_header(c->in, "\r\ncontent-length:");
		if (cl != NULL)
			body = strtoul(cl + 17, NULL, 10);
		*end = '\r';
		total = hdr + body;
		if (c->inlen < total)
			return 0;
		if (c->busy) {
			record(c->due_ns, status);
			c->busy = 0;
		}
		memmove(c->in, c->in + total, c->inlen - total);
		c->inlen -= total;
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct_ms(double p)
{
	uint64_t i;

	if (nlat == 0)
		return 0;
	i = (uint64_t)(p / 100.0 * (double)(nlat - 1) + 0.5);
	return lat_us[i] / 1000.0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen --port N --rate R --duration S [--connections C]\n"
	    "               [--kind spy|payroll] [--nonce HEX] [--token T]\n"
	    "  open-loop fixed-rate HTTP load on 127.0.0.1; latency counted from\n"
	    "  each request's due time; prints one JSON object\n");
	exit(2);
}

static void
parse(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "connections", required_argument, NULL, 'c' },
		{ "kind", required_argument, NULL, 'k' },
		{ "nonce", required_argument, NULL, 'n' },
		{ "token", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	memset(o, 0, sizeof(*o));
	o->nconns = 16;
	o->nonce = (uint32_t)mono_ns();
	while ((ch = getopt_long(argc, argv, "p:r:d:c:k:n:t:h", lopts, NULL)) != -1) {
		errno = 0;
		switch (ch) {
		case 'p': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 65535)
				usage();
			o->port = (unsigned short)v;
			break;
		}
		case 'r':
			o->rate = strtod(optarg, &end);
			if (errno || *end || !(o->rate > 0 && o->rate < 1e6))
				usage();
			break;
		case 'd':
			o->duration = strtod(optarg, &end);
			if (errno || *end || !(o->duration > 0 && o->duration < 3600))
				usage();
			break;
		case 'c': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > MAX_CONNS)
				usage();
			o->nconns = (unsigned)v;
			break;
		}
		case 'k':
			if (strcmp(optarg, "spy") == 0)
				o->kind = KIND_SPY;
			else if (strcmp(optarg, "payroll") == 0)
				o->kind = KIND_PAYROLL;
			else
				usage();
			break;
		case 'n':
			o->nonce = (uint32_t)strtoul(optarg, &end, 16);
			if (errno || *end)
				usage();
			break;
		case 't':
			if (strpbrk(optarg, "\r\n") != NULL || strlen(optarg) > 200)
				usage();
			o->token = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o->port == 0 || o->rate == 0 || o->duration == 0)
		usage();
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct epoll_event evs[64];
	struct itimerspec its;
	uint64_t start, end_ns, total, drain_until, queued_max = 0;
	int tfd, i, n;
	unsigned j;
	double elapsed;

	parse(argc, argv, &o);
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons(o.port);
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((epfd = epoll_create1(0)) < 0)
		die("epoll_create1");
	for (j = 0; j < o.nconns; j++)
		conn_open(&conns[j]);
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)) < 0)
		die("timerfd_create");
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) < 0)
			die("epoll_ctl timerfd");
	}
	total = (uint64_t)(o.rate * o.duration);
	start = mono_ns() + 50000000u;	/* 50 ms for the connections to open */
	end_ns = start + (uint64_t)(o.duration * 1e9);
	drain_until = end_ns + 10ull * 1000000000u;	/* answers get 10 s more */
	for (;;) {
		uint64_t now = mono_ns();
		uint64_t next_due;

		/* Send every request that is due on an idle connection. */
		while (sent < total) {
			uint64_t t = start + (uint64_t)((double)sent * 1e9 / o.rate);
			struct conn *c = NULL;
			if (t > now)
				break;
			for (j = 0; j < o.nconns; j++) {
				if (conns[j].connected && !conns[j].busy) {
					c = &conns[j];
					break;
				}
			}
			if (c == NULL) {
				uint64_t late = (now - t) / 1000000u;
				if (late > queued_max)
					queued_max = late;
				break;
			}
			c->busy = 1;
			c->due_ns = t;
			build_request(c, &o);
			conn_flush(c);
			sent++;
		}
		if (sent == total) {
			int inflight = 0;
			for (j = 0; j < o.nconns; j++)
				inflight |= conns[j].busy;
			if (!inflight || now > drain_until)
				break;
		}
		next_due = sent < total ?
		    start + (uint64_t)((double)sent * 1e9 / o.rate) : 0;
		memset(&its, 0, sizeof(its));
		if (next_due > now) {
			its.it_value.tv_sec = (time_t)(next_due / 1000000000u);
			its.it_value.tv_nsec = (long)(next_due % 1000000000u);
			timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
		}
		n = epoll_wait(epfd, evs, 64, 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				uint64_t exp;
				if (read(tfd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
					die("read timerfd");
				continue;
			}
			if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
				conn_reset(c);
				continue;
			}
			if (evs[i].events & EPOLLOUT) {
				if (!c->connected) {
					struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
					c->connected = 1;
					epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
				}
				conn_flush(c);
			}
			if ((evs[i].events & EPOLLIN) && conn_read(c) < 0)
				conn_reset(c);
		}
	}
	elapsed = (double)(mono_ns() - start) / 1e9;
	for (j = 0; j < o.nconns; j++)
		if (conns[j].busy)
			errors++;	/* never answered */
	qsort(lat_us, nlat, sizeof(*lat_us), cmp_u32);
	printf("{\"target_rps\": %.1f, \"duration_s\": %.3f, \"connections\": %u, "
	    "\"sent\": %" PRIu64 ", \"completed\": %" PRIu64 ", \"errors\": %" PRIu64
	    ", \"reconnects\": %" PRIu64 ", \"achieved_rps\": %.1f, "
	    "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
	    "\"p999_ms\": %.3f, \"max_ms\": %.3f, \"max_queue_wait_ms\": %" PRIu64
	    ", \"status\": {",
	    o.rate, elapsed, o.nconns, sent, completed, errors, reconnects,
	    (double)completed / elapsed, pct_ms(50), pct_ms(90), pct_ms(99),
	    pct_ms(99.9), nlat ? lat_us[nlat - 1] / 1000.0 : 0.0, queued_max);
	for (j = 0, n = 0; j < 600; j++)
		if (status_count[j])
			printf("%s\"%u\": %" PRIu64, n++ ? ", " : "", j, status_count[j]);
	printf("}}\n");
	free(lat_us);
	return 0;
}
