/*
 * smtp_send: see smtp_send.h. libesmtp drives the protocol; this file
 * decides what goes on the wire and reads back what happened.
 *
 * libesmtp traps handled here (docs/MAILER-REAL.md, shared MACHINE-NOTES):
 *  - smtp_start_session() succeeds even when every mail was refused, so the
 *    result of each mail comes from its reverse-path, recipient and
 *    transfer statuses.
 *  - libesmtp sanitises nothing: header values and addresses are checked
 *    for CR/LF here, and the body's lines are all made CRLF so that its
 *    dot-stuffing sees every line.
 *  - asking for BODY=8BITMIME from a server that does not offer it ends
 *    the session, so 8BITMIME is asked for only once the server's EHLO
 *    answer (seen through the monitor callback) lists it; a body built
 *    before that, or for a server without it, is quoted-printable.
 *  - STARTTLS gets the sender's own SSL_CTX (libesmtp takes a reference per
 *    session), never libesmtp's cached one that 1.1.0 frees with a session.
 *  - timeouts are milliseconds, with the RFC 2822 minimums overridden.
 *  - each mail's fate is read when libesmtp announces it (SMTP_EV_MAILSTATUS
 *    for a refused sender, SMTP_EV_MESSAGESENT otherwise) and handed to the
 *    caller's settled hook at once. To stop a session before a mail's
 *    text goes out, the message reader returns NULL with errno set:
 *    libesmtp then drops the connection without the final dot, so the
 *    server discards that mail (protocol.c, cmd_data2).
 *  - a reply is read by libesmtp in lines of up to 1023 bytes, NUL
 *    included; its text is made valid UTF-8 here before anyone keeps it.
 */
#include "smtp_send.h"

#include <stddef.h>

#include <openssl/ssl.h>
#include <auth-client.h>
#include <libesmtp.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "strbuf.h"
#include "util.h"

struct smtp_sender {
	struct smtp_sender_config cfg;
	char *host, *ca_file, *user, *password, *helo;
	char hostport[300];
	SSL_CTX *ssl_ctx;
};

/* What one session learns, shared by its callbacks. */
struct session_state {
	struct smtp_sender *sender;
	struct smtp_mail **sendable;
	smtp_message_t *msgs;
	size_t nsendable;
	int saw_8bitmime;
	int in_ehlo;
	char tls_problem[160];
	const struct smtp_batch_hooks *hooks;
	int stopped;			/* the ready hook said no */
	size_t stopped_at;		/* slot of the first mail not sent */
	smtp_recipient_t *rcpts;
};

static pthread_once_t auth_once = PTHREAD_ONCE_INIT;

static void
auth_init(void)
{
	auth_client_init();
}

int
smtp_header_value_ok(const char *s)
{
	const unsigned char *p;

	if (s == NULL || strlen(s) > SMTP_HEADER_VALUE_MAX)
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

int
smtp_address_ok(const char *s)
{
	const unsigned char *p;
	const char *at;
	size_t len;

	if (s == NULL || (len = strlen(s)) == 0 || len > 254)
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>' ||
		    *p == '(' || *p == ')' || *p == ',' || *p == ';' ||
		    *p == '"' || *p == '\\')
			return 0;
	at = strchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
		return 0;
	return 1;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
buf_base64(struct strbuf *b, const unsigned char *s, size_t n)
{
	char q[4];
	size_t i;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = b64[(v >> 18) & 63];
		q[1] = b64[(v >> 12) & 63];
		q[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? b64[v & 63] : '=';
		strbuf_add(b, q, 4);
	}
}

/*
 * Subject: as is when plain printable ASCII, otherwise RFC 2047 B-encoded
 * words of at most 45 bytes of UTF-8 each (never splitting a character),
 * folded onto continuation lines.
 */
static void
add_subject(struct strbuf *b, const char *subject)
{
	const unsigned char *s = (const unsigned char *)subject;
	size_t len = strlen(subject), i, start, end;
	int plain = len <= 900;

	for (i = 0; i < len && plain; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			plain = 0;
	/* "=?" inside a plain subject would be read as an encoded word */
	if (plain && strstr(subject, "=?") == NULL) {
		strbuf_str(b, "Subject: ");
		strbuf_add(b, subject, len);
		strbuf_str(b, "\r\n");
		return;
	}
	strbuf_str(b, "Subject:");
	for (start = 0; start < len || start == 0; start = end) {
		end = start + 45 < len ? start + 45 : len;
		while (end < len && end > start && (s[end] & 0xc0) == 0x80)
			end--;
		if (end == start)	/* not UTF-8 at all: cut anywhere */
			end = start + 45 < len ? start + 45 : len;
		strbuf_str(b, start == 0 ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
		buf_base64(b, s + start, end - start);
		strbuf_str(b, "?=");
		if (len == 0)
			break;
	}
	strbuf_str(b, "\r\n");
}

/* Body with every line end made CRLF and a final CRLF. */
static void
normalise_body(struct strbuf *out, const char *body)
{
	const char *p = body;

	while (*p != '\0') {
		size_t n = strcspn(p, "\r\n");
		strbuf_add(out, p, n);
		p += n;
		if (*p == '\0')
			break;
		if (p[0] == '\r' && p[1] == '\n')
			p += 2;
		else
			p++;
		strbuf_str(out, "\r\n");
	}
	if (out->len < 2 || memcmp(out->p + out->len - 2, "\r\n", 2) != 0)
		strbuf_str(out, "\r\n");
}

/* RFC 2045 quoted-printable of CRLF-separated text, lines kept at <= 76. */
static void
add_qp(struct strbuf *b, const char *text, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0, col = 0;

	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		char enc[3];
		size_t n;
		int at_eol;

		if (c == '\r' && i + 1 < len && text[i + 1] == '\n') {
			strbuf_str(b, "\r\n");
			col = 0;
			i += 2;
			continue;
		}
		at_eol = i + 1 >= len || text[i + 1] == '\r';
		if ((c >= 33 && c <= 126 && c != '=' && !(c == '.' && col == 0)) ||
		    ((c == ' ' || c == '\t') && !at_eol)) {
			enc[0] = (char)c;
			n = 1;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			n = 3;
		}
		if (col + n > 75) {
			strbuf_str(b, "=\r\n");
			col = 0;
		}
		strbuf_add(b, enc, n);
		col += n;
		i++;
	}
}

static int
needs_8bit(const char *s, size_t len, int *long_line)
{
	size_t i, col = 0;
	int eight = 0;

	*long_line = 0;
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			eight = 1;
		if (s[i] == '\n') {
			col = 0;
		} else if (++col > 998) {
			*long_line = 1;
		}
	}
	return eight;
}

char *
smtp_build_message(const struct smtp_mail *m, int eightbit_ok, size_t *lenp)
{
	struct strbuf b = { 0 }, body = { 0 };
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	int eight, long_line;
	const char *cte;

	normalise_body(&body, m->body);
	eight = needs_8bit(body.p, body.len, &long_line);
	if (!eight && !long_line)
		cte = "7bit";
	else if (eight && eightbit_ok && !long_line)
		cte = "8bit";
	else
		cte = "quoted-printable";

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	strbuf_str(&b, "Message-Id: <");
	strbuf_str(&b, m->message_id);
	strbuf_str(&b, ">\r\nDate: ");
	strbuf_str(&b, date);
	strbuf_str(&b, "\r\nFrom: <");
	strbuf_str(&b, m->from);
	strbuf_str(&b, ">\r\nTo: <");
	strbuf_str(&b, m->to);
	strbuf_str(&b, ">\r\n");
	add_subject(&b, m->subject);
	strbuf_str(&b, "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: ");
	strbuf_str(&b, cte);
	strbuf_str(&b, "\r\n\r\n");
	if (strcmp(cte, "quoted-printable") == 0)
		add_qp(&b, body.p, body.len);
	else
		strbuf_add(&b, body.p, body.len);
	free(body.p);
	*lenp = b.len;
	return b.p;
}

struct msg_cursor {
	int done;
};

/* libesmtp's message reader: the whole prepared text in one piece. */
static const char *
message_cb(void **ctx, int *len, void *arg)
{
	struct smtp_mail *m = arg;
	struct session_state *st;
	struct msg_cursor *c;

	if (*ctx == NULL)
		*ctx = xcalloc(1, sizeof(struct msg_cursor));
	c = *ctx;
	if (len == NULL) {
		c->done = 0;
		return NULL;
	}
	if (c->done || m->wire == NULL) {
		*len = 0;
		return NULL;
	}
	st = m->session;
	if (st->hooks != NULL && st->hooks->ready != NULL &&
	    !st->hooks->ready(st->hooks->arg)) {
		/* libesmtp drops the connection before the final dot */
		st->stopped = 1;
		st->stopped_at = m->slot;
		*len = 0;
		errno = ECANCELED;
		return NULL;
	}
	c->done = 1;
	*len = (int)m->wire_len;
	return m->wire;
}

/*
 * Watches the server's EHLO answer: when it lists 8BITMIME, the 8-bit
 * mails of this session are declared BODY=8BITMIME before MAIL FROM goes
 * out, and their text is built 8bit.
 */
static void
monitor_cb(const char *buf, int buflen, int writing, void *arg)
{
	struct session_state *st = arg;
	const char *p = buf, *end = buf + buflen, *eol;
	size_t i;
	int found = 0;

	if (writing == SMTP_CB_WRITING) {
		st->in_ehlo = buflen >= 4 && strncasecmp(buf, "EHLO", 4) == 0;
		if (buflen >= 8 && strncasecmp(buf, "STARTTLS", 8) == 0)
			st->saw_8bitmime = 0;
		return;
	}
	if (writing != SMTP_CB_READING || !st->in_ehlo || st->saw_8bitmime)
		return;
	for (; p < end; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		if (eol - p >= 12 && p[0] == '2' && strncasecmp(p + 4, "8BITMIME", 8) == 0 &&
		    (eol - p == 12 || p[12] == '\r' || p[12] == ' '))
			found = 1;
	}
	if (!found)
		return;
	st->saw_8bitmime = 1;
	for (i = 0; i < st->nsendable; i++) {
		struct smtp_mail *m = st->sendable[i];
		free(m->wire);
		m->wire = smtp_build_message(m, 1, &m->wire_len);
		m->eightbit = strstr(m->wire, "Content-Transfer-Encoding: 8bit\r\n") != NULL;
		if (m->eightbit)
			smtp_8bitmime_set_body(st->msgs[i], E8bitmime_8BITMIME);
	}
}

static void message_event(struct session_state *st, smtp_message_t msg,
    int mail_status);

static void
event_cb(smtp_session_t session, int event, void *arg, ...)
{
	struct session_state *st = arg;
	va_list ap;
	int *ok;

	(void)session;
	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_INVALID_PEER_CERTIFICATE: {
		long result = va_arg(ap, long);
		ok = va_arg(ap, int *);
		*ok = !st->sender->cfg.tls_verify;
		if (!*ok)
			snprintf(st->tls_problem, sizeof(st->tls_problem),
			    "server certificate not trusted (%s)",
			    X509_verify_cert_error_string(result));
		break;
	}
	case SMTP_EV_NO_PEER_CERTIFICATE:
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = !st->sender->cfg.tls_verify;
		if (!*ok)
			snprintf(st->tls_problem, sizeof(st->tls_problem),
			    "server certificate does not name %s",
			    st->sender->host);
		break;
	case SMTP_EV_WEAK_CIPHER:
		(void)va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = 0;
		snprintf(st->tls_problem, sizeof(st->tls_problem), "weak cipher");
		break;
	case SMTP_EV_MAILSTATUS:
		(void)va_arg(ap, const char *);
		message_event(st, va_arg(ap, smtp_message_t), 1);
		break;
	case SMTP_EV_MESSAGESENT:
		message_event(st, va_arg(ap, smtp_message_t), 0);
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		snprintf(st->tls_problem, sizeof(st->tls_problem),
		    "server does not offer STARTTLS (SMTP_STARTTLS=required)");
		break;
	default:
		break;
	}
	va_end(ap);
}

static int
auth_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
	struct smtp_sender *s = arg;
	int i;

	for (i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = s->user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = s->password;
		else
			result[i] = NULL;
		if (result[i] == NULL)
			return 0;
	}
	return 1;
}

struct smtp_sender *
smtp_sender_new(const struct smtp_sender_config *cfg, char *err,
    size_t errlen)
{
	struct smtp_sender *s = xcalloc(1, sizeof(*s));

	s->cfg = *cfg;
	s->host = xstrdup(cfg->host ? cfg->host : "localhost");
	s->ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
	s->user = cfg->user ? xstrdup(cfg->user) : NULL;
	s->password = cfg->password ? xstrdup(cfg->password) : NULL;
	s->helo = cfg->helo ? xstrdup(cfg->helo) : NULL;
	if (s->cfg.timeout_s == 0)
		s->cfg.timeout_s = 30;
	snprintf(s->hostport, sizeof(s->hostport), "%s:%u", s->host,
	    cfg->port ? cfg->port : 25);
	if (s->user != NULL)
		pthread_once(&auth_once, auth_init);

	s->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (s->ssl_ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
	if (s->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(s->ssl_ctx, s->ca_file,
		    NULL) != 1) {
			snprintf(err, errlen, "SMTP_CA_FILE %s: cannot load "
			    "certificates", s->ca_file);
			goto fail;
		}
	} else {
		SSL_CTX_set_default_verify_paths(s->ssl_ctx);
	}
	return s;
fail:
	smtp_sender_free(s);
	return NULL;
}

void
smtp_sender_free(struct smtp_sender *s)
{
	if (s == NULL)
		return;
	SSL_CTX_free(s->ssl_ctx);
	free(s->host);
	free(s->ca_file);
	free(s->user);
	free(s->password);
	free(s->helo);
	free(s);
}

/* Bytes of the well-formed UTF-8 sequence at p (RFC 3629), 0 if none. */
static size_t
utf8_seq(const unsigned char *p)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	/* a NUL ends the string: it fails the range check before any overread */
	for (i = 1; i < n; i++) {
		if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return n;
}

void
smtp_text_append(char *out, size_t outlen, size_t *len, const char *in)
{
	static const char replacement[] = "\xef\xbf\xbd";	/* U+FFFD */
	const unsigned char *p = (const unsigned char *)(in ? in : "");
	const char *piece;
	size_t n, take;

	if (outlen == 0)
		return;
	if (*len >= outlen)
		*len = outlen - 1;
	while (*p != '\0') {
		n = utf8_seq(p);
		if (n == 0) {
			piece = replacement;
			take = 3;
			n = 1;
		} else if (n == 1 && (*p < 0x20 || *p == 0x7f)) {
			piece = " ";
			take = 1;
		} else {
			piece = (const char *)p;
			take = n;
		}
		if (*len + take >= outlen)
			break;
		memcpy(out + *len, piece, take);
		*len += take;
		p += n;
	}
	out[*len] = '\0';
}

/* The reply kept is prefix (ours) then text (the server's, untrusted). */
static void
set_result(struct smtp_mail *m, enum smtp_mail_status st, int code,
    const char *prefix, const char *text)
{
	size_t len = 0;

	m->status = st;
	m->code = code;
	m->reply[0] = '\0';
	if (prefix != NULL)
		smtp_text_append(m->reply, sizeof(m->reply), &len, prefix);
	smtp_text_append(m->reply, sizeof(m->reply), &len, text);
}

static enum smtp_mail_status
classify(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_MAIL_SENT;
	if (code >= 500 && code < 600)
		return SMTP_MAIL_PERMFAIL;
	return SMTP_MAIL_TEMPFAIL;
}

static void
read_status(struct smtp_mail *m, smtp_message_t msg, smtp_recipient_t rcpt,
    const char *session_error)
{
	const smtp_status_t *rev = smtp_reverse_path_status(msg);
	const smtp_status_t *rs = smtp_recipient_status(rcpt);
	const smtp_status_t *ts = smtp_message_transfer_status(msg);
	char prefix[48];

	if (rev != NULL && rev->code != 0 && rev->code / 100 != 2) {
		/* MAIL FROM refused: about us (AUTH, policy), not this mail */
		snprintf(prefix, sizeof(prefix), "MAIL FROM: %d ", rev->code);
		set_result(m, SMTP_MAIL_TEMPFAIL, rev->code, prefix, rev->text);
		return;
	}
	if (rs != NULL && rs->code != 0 && rs->code / 100 != 2) {
		snprintf(prefix, sizeof(prefix), "RCPT TO: %d ", rs->code);
		set_result(m, classify(rs->code), rs->code, prefix, rs->text);
		return;
	}
	if (ts != NULL && ts->code != 0) {
		snprintf(prefix, sizeof(prefix), "%d ", ts->code);
		set_result(m, classify(ts->code), ts->code, prefix, ts->text);
		return;
	}
	set_result(m, SMTP_MAIL_TEMPFAIL, 0, NULL,
	    session_error ? session_error : "not attempted");
}

/* Hands m's fate to the caller, once. */
static void
tell(struct session_state *st, struct smtp_mail *m)
{
	if (m->told)
		return;
	m->told = 1;
	if (st->hooks != NULL && st->hooks->settled != NULL)
		st->hooks->settled(m, st->hooks->arg);
}

/* libesmtp announces a mail's end: its fate is known now. */
static void
message_event(struct session_state *st, smtp_message_t msg, int mail_status)
{
	struct smtp_mail *m = msg ? smtp_message_get_application_data(msg) : NULL;
	const smtp_status_t *rev;

	if (m == NULL || m->told)
		return;
	if (mail_status) {
		/* only a refused MAIL FROM ends the mail here */
		rev = smtp_reverse_path_status(msg);
		if (rev == NULL || rev->code == 0 || rev->code / 100 == 2)
			return;
	}
	read_status(m, msg, st->rcpts[m->slot], NULL);
	tell(st, m);
}

int
smtp_send_batch(struct smtp_sender *s, struct smtp_mail *mails, size_t n,
    const struct smtp_batch_hooks *hooks, char *err, size_t errlen)
{
	smtp_session_t session = NULL;
	auth_context_t auth = NULL;
	struct session_state st;
	smtp_recipient_t *rcpts = NULL;
	char why[512] = "", ebuf[128];
	size_t i, k;
	long ms;
	int rc = -1, ok;

	memset(&st, 0, sizeof(st));
	st.sender = s;
	st.hooks = hooks;
	st.sendable = xcalloc(n ? n : 1, sizeof(*st.sendable));
	st.msgs = xcalloc(n ? n : 1, sizeof(*st.msgs));
	rcpts = xcalloc(n ? n : 1, sizeof(*rcpts));
	st.rcpts = rcpts;

	for (i = 0; i < n; i++) {
		struct smtp_mail *m = &mails[i];
		m->wire = NULL;
		m->eightbit = 0;
		m->told = 0;
		m->session = &st;
		if (!smtp_address_ok(m->from))
			set_result(m, SMTP_MAIL_REFUSED, 0, NULL, "unsafe sender address");
		else if (!smtp_address_ok(m->to))
			set_result(m, SMTP_MAIL_REFUSED, 0, NULL, "unsafe recipient address");
		else if (!smtp_header_value_ok(m->subject))
			set_result(m, SMTP_MAIL_REFUSED, 0, NULL,
			    "subject holds a control character (CR/LF)");
		else if (!smtp_address_ok(m->message_id))
			set_result(m, SMTP_MAIL_REFUSED, 0, NULL, "unsafe Message-Id");
		else if (m->body == NULL)
			set_result(m, SMTP_MAIL_REFUSED, 0, NULL, "no body");
		else {
			set_result(m, SMTP_MAIL_TEMPFAIL, 0, NULL, "not attempted");
			m->slot = st.nsendable;
			st.sendable[st.nsendable++] = m;
			continue;
		}
		tell(&st, m);
	}
	if (st.nsendable == 0) {
		rc = 0;
		goto done;
	}

	session = smtp_create_session();
	if (session == NULL) {
		snprintf(why, sizeof(why), "smtp_create_session failed");
		goto fail;
	}
	smtp_set_server(session, s->hostport);
	if (s->helo != NULL)
		smtp_set_hostname(session, s->helo);
	ms = (long)s->cfg.timeout_s * 1000;
	smtp_set_timeout(session, Timeout_GREETING | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	smtp_set_timeout(session, Timeout_ENVELOPE | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	smtp_set_timeout(session, Timeout_DATA | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	smtp_set_timeout(session, Timeout_TRANSFER | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	smtp_set_timeout(session, Timeout_DATA2 | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	smtp_set_eventcb(session, event_cb, &st);
	smtp_set_monitorcb(session, monitor_cb, &st, 0);
	if (s->cfg.starttls_required) {
		smtp_starttls_enable(session, Starttls_REQUIRED);
		smtp_starttls_set_ctx(session, s->ssl_ctx);
	} else {
		smtp_starttls_enable(session, Starttls_DISABLED);
	}
	if (s->user != NULL && s->password != NULL) {
		auth = auth_create_context();
		auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0);
		auth_set_interact_cb(auth, auth_interact, s);
		smtp_auth_set_context(session, auth);
	}

	for (k = 0; k < st.nsendable; k++) {
		struct smtp_mail *m = st.sendable[k];
		smtp_message_t msg = smtp_add_message(session);

		/* 7bit or quoted-printable until the server says 8BITMIME */
		m->wire = smtp_build_message(m, 0, &m->wire_len);
		st.msgs[k] = msg;
		smtp_message_set_application_data_release(msg, m, NULL);
		smtp_set_reverse_path(msg, m->from);
		smtp_set_messagecb(msg, message_cb, m);
		rcpts[k] = smtp_add_recipient(msg, m->to);
	}

	ok = smtp_start_session(session);
	if (!ok) {
		smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf));
		snprintf(why, sizeof(why), "SMTP session with %s failed: %s",
		    s->hostport, st.tls_problem[0] ? st.tls_problem : ebuf);
	} else if (st.tls_problem[0] != '\0') {
		snprintf(why, sizeof(why), "SMTP session with %s: %s",
		    s->hostport, st.tls_problem);
	}
	for (k = 0; k < st.nsendable; k++) {
		struct smtp_mail *m = st.sendable[k];

		if (m->told)
			continue;
		if (st.stopped && k >= st.stopped_at)
			set_result(m, SMTP_MAIL_UNTRIED, 0, NULL,
			    "not sent: the session was stopped before it");
		else
			read_status(m, st.msgs[k], rcpts[k], why[0] ? why : NULL);
	}
	if (!ok) {
		for (k = 0; k < st.nsendable; k++)
			if (st.sendable[k]->status == SMTP_MAIL_SENT)
				break;
		if (k == st.nsendable)
			goto fail;
	}
	rc = 0;
	goto done;
fail:
	for (k = 0; k < st.nsendable; k++)
		if (!st.sendable[k]->told && st.sendable[k]->code == 0)
			set_result(st.sendable[k], SMTP_MAIL_TEMPFAIL, 0, NULL, why);
	snprintf(err, errlen, "%s", why);
	rc = -1;
done:
	for (k = 0; k < st.nsendable; k++)
		tell(&st, st.sendable[k]);
	if (session != NULL)
		smtp_destroy_session(session);
	if (auth != NULL)
		auth_destroy_context(auth);
	for (i = 0; i < n; i++) {
		free(mails[i].wire);
		mails[i].wire = NULL;
		mails[i].session = NULL;
	}
	free(rcpts);
	free(st.msgs);
	free(st.sendable);
	return rc;
}
