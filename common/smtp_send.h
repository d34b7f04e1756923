/*
 * smtp_send: hands a batch of plain-text UTF-8 mails to an SMTP server over
 * one session, with libesmtp, and reports each mail's fate.
 *
 * The caller gives (message-id, from, to, subject, body) per mail; this
 * module builds the RFC 5322 message itself (Message-Id, Date, From, To,
 * RFC 2047 subject, MIME text/plain; charset=utf-8, CRLF lines), sends it
 * BODY=8BITMIME when the server offers 8BITMIME and the body is 8-bit,
 * quoted-printable otherwise, and reads the reverse path, recipient and
 * message status libesmtp records (smtp_start_session succeeding says
 * nothing about any one mail), mail by mail as the server answers when the
 * caller gives hooks. Whatever the server's reply holds (any bytes, any
 * length), the text kept in a mail's reply is valid UTF-8 without control
 * characters and at most SMTP_REPLY_MAX - 1 bytes: it goes to logs and to
 * a database column as is. Anything that would become a header or an
 * address is refused when it holds CR, LF or another control character:
 * such a mail is never sent and is reported SMTP_MAIL_REFUSED.
 *
 * A struct smtp_sender keeps the configuration, a TLS context shared by its
 * sessions (libesmtp takes a reference per session) and what it learnt of
 * the server. Use one sender per thread, or several: sessions are
 * independent.
 */
#ifndef COMMON_SMTP_SEND_H
#define COMMON_SMTP_SEND_H

#include <stddef.h>

struct smtp_sender_config {
	const char *host;		/* name or address */
	unsigned port;
	int starttls_required;		/* 1: no TLS, no mail */
	const char *ca_file;		/* PEM CAs to trust; NULL = system store */
	int tls_verify;			/* 0: accept any certificate (tests only) */
	const char *user;		/* AUTH when set (with password) */
	const char *password;
	const char *helo;		/* EHLO name; NULL = libesmtp's default */
	unsigned timeout_s;		/* per protocol step; 0 = 30 */
};

enum smtp_mail_status {
	SMTP_MAIL_SENT = 0,
	SMTP_MAIL_TEMPFAIL,	/* 4xx, no answer, connection trouble: retry later */
	SMTP_MAIL_PERMFAIL,	/* 5xx for the recipient or the message */
	SMTP_MAIL_REFUSED,	/* refused here before sending (unsafe header, ...) */
	SMTP_MAIL_UNTRIED,	/* the caller's ready hook stopped the session first */
};

#define SMTP_REPLY_MAX 256

struct smtp_mail {
	/* input, borrowed for the duration of smtp_send_batch */
	const char *message_id;		/* without the angle brackets */
	const char *from;
	const char *to;
	const char *subject;		/* UTF-8; encoded per RFC 2047 when needed */
	const char *body;		/* UTF-8; any line ends are made CRLF */
	/* output */
	enum smtp_mail_status status;
	int code;			/* the deciding SMTP reply code, 0 if none */
	char reply[SMTP_REPLY_MAX];	/* the server's text, or why it was not sent */
	/* private */
	char *wire;
	size_t wire_len;
	int eightbit;
	int told;			/* settled() was called */
	size_t slot;			/* index among the session's messages */
	void *session;
};

struct smtp_sender *smtp_sender_new(const struct smtp_sender_config *cfg,
    char *err, size_t errlen);
void smtp_sender_free(struct smtp_sender *s);

/*
 * Optional hooks of one batch, called on the sending thread while the
 * session runs. ready() is asked before each mail's text goes out: 0 stops
 * the session there, before the end of that mail's data (the server never
 * takes it), and that mail and every one after it end SMTP_MAIL_UNTRIED.
 * settled() is told each mail's fate once, as soon as it is known (the
 * server's answer to the end of its data, or a refusal of its recipient
 * or sender), so a caller can record it before the next mail goes; mails
 * whose fate is only known when the session ends are told then.
 */
struct smtp_batch_hooks {
	int (*ready)(void *arg);
	void (*settled)(struct smtp_mail *m, void *arg);
	void *arg;
};

/*
 * Sends mails[0..n) over one session. Every mail gets a status. Returns 0
 * when the session ran (each status says how its mail went), -1 when no
 * mail could be tried at all (connection refused, TLS or AUTH failure):
 * then every mail not refused here is SMTP_MAIL_TEMPFAIL and err says why.
 * hooks may be NULL.
 */
int smtp_send_batch(struct smtp_sender *s, struct smtp_mail *mails, size_t n,
    const struct smtp_batch_hooks *hooks, char *err, size_t errlen);

/*
 * Appends in (server text, untrusted) to out[0..*len) of size outlen as
 * valid UTF-8: a byte that does not begin a well-formed sequence becomes
 * U+FFFD, a control character a space, and a character that does not fit
 * is left out whole. out stays NUL-terminated. Exposed for tests.
 */
void smtp_text_append(char *out, size_t outlen, size_t *len, const char *in);

/*
 * Header-safety checks used before sending (exposed for validation and
 * tests): a header value holds no control character and at most
 * SMTP_HEADER_VALUE_MAX bytes, so no header line can pass RFC 5322's 998.
 */
#define SMTP_HEADER_VALUE_MAX 900
int smtp_header_value_ok(const char *s);
int smtp_address_ok(const char *s);

/*
 * Builds the message text for m (headers and encoded body) as it would be
 * sent with or without 8BITMIME; the caller frees it. For tests and tools.
 */
char *smtp_build_message(const struct smtp_mail *m, int eightbit_ok,
    size_t *len);

#endif
