/*
 * Unit tests for common/smtp_send's message building and safety checks:
 * CRLF everywhere, 7bit/8bit/quoted-printable choice, RFC 2047 subjects,
 * header and address injection refused before anything is sent. The
 * protocol side runs against real SMTP servers in
 * tests/integration/test_real_smtp.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/smtp_send.h"

static struct smtp_mail
mail(const char *subject, const char *body)
{
	struct smtp_mail m;

	memset(&m, 0, sizeof(m));
	m.message_id = "0b7e-1@example.com";
	m.from = "payroll@example.com";
	m.to = "juablaz@example.com";
	m.subject = subject;
	m.body = body;
	return m;
}

/* No bare CR or LF anywhere: every LF is preceded by CR and vice versa. */
static void
assert_crlf_only(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\n')
			assert_true(i > 0 && s[i - 1] == '\r');
		if (s[i] == '\r')
			assert_true(i + 1 < len && s[i + 1] == '\n');
	}
}

static void
test_ascii_is_7bit_verbatim(void **state)
{
	struct smtp_mail m = mail("Payroll 3 shipped",
	    "Hello Juablaz,\r\n\r\nPayroll 3 shipped to Juablaz of 320.00.\r\n");
	size_t len;
	char *t = smtp_build_message(&m, 1, &len);

	(void)state;
	assert_crlf_only(t, len);
	assert_non_null(strstr(t, "Message-Id: <0b7e-1@example.com>\r\n"));
	assert_non_null(strstr(t, "Subject: Payroll 3 shipped\r\n"));
	assert_non_null(strstr(t, "To: <juablaz@example.com>\r\n"));
	assert_non_null(strstr(t, "Content-Type: text/plain; charset=utf-8\r\n"));
	assert_non_null(strstr(t, "Content-Transfer-Encoding: 7bit\r\n"));
	assert_non_null(strstr(t, "\r\n\r\nHello Juablaz,\r\n\r\nPayroll 3 "
	    "shipped to Juablaz of 320.00.\r\n"));
	free(t);
}

static void
test_bare_line_ends_become_crlf(void **state)
{
	struct smtp_mail m = mail("s", "a\nb\rc\r\n.\nend");
	size_t len;
	char *t = smtp_build_message(&m, 0, &len);

	(void)state;
	assert_crlf_only(t, len);
	assert_non_null(strstr(t, "\r\n\r\na\r\nb\r\nc\r\n.\r\nend\r\n"));
	free(t);
}

static void
test_utf8_body_8bit_or_qp(void **state)
{
	struct smtp_mail m = mail("Payroll 4 shipped", "Hello José Núñez,\r\n");
	size_t len;
	char *t;

	(void)state;
	t = smtp_build_message(&m, 1, &len);
	assert_non_null(strstr(t, "Content-Transfer-Encoding: 8bit\r\n"));
	assert_non_null(strstr(t, "Hello José Núñez,\r\n"));
	free(t);
	t = smtp_build_message(&m, 0, &len);
	assert_non_null(strstr(t, "Content-Transfer-Encoding: quoted-printable\r\n"));
	assert_non_null(strstr(t, "Hello Jos=C3=A9 N=C3=BA=C3=B1ez,\r\n"));
	assert_crlf_only(t, len);
	free(t);
}

static void
test_qp_soft_breaks(void **state)
{
	char body[400];
	struct smtp_mail m;
	size_t len, col = 0, i;
	char *t;

	(void)state;
	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	memcpy(body, "\xc3\xa9", 2);
	m = mail("s", body);
	t = smtp_build_message(&m, 0, &len);
	for (i = 0; i < len; i++) {
		if (t[i] == '\n')
			col = 0;
		else
			assert_true(++col <= 77);
	}
	free(t);
}

static void
test_subject_rfc2047(void **state)
{
	struct smtp_mail m = mail("Nómina 5 enviada", "x");
	size_t len;
	char *t = smtp_build_message(&m, 1, &len);

	(void)state;
	/* "Nómina 5 enviada" in base64 */
	assert_non_null(strstr(t, "Subject: =?UTF-8?B?TsOzbWluYSA1IGVudmlhZGE=?=\r\n"));
	free(t);
}

static void
test_injection_refused(void **state)
{
	(void)state;
	assert_false(smtp_header_value_ok("Payroll\r\nBcc: x@example.net"));
	assert_false(smtp_header_value_ok("a\nb"));
	assert_true(smtp_header_value_ok("Payroll 1 shipped"));
	assert_false(smtp_address_ok("a@example.com>\r\nRCPT TO:<b@example.net"));
	assert_false(smtp_address_ok("a@example.com> NOTIFY=NEVER"));
	assert_false(smtp_address_ok("a@b@example.com"));
	assert_false(smtp_address_ok("josé@example.com"));
	assert_false(smtp_address_ok(""));
	assert_true(smtp_address_ok("o'brien-smith@example.com"));
}

static void
test_batch_refuses_unsafe_mail_without_connecting(void **state)
{
	struct smtp_sender_config cfg = { .host = "127.0.0.1", .port = 1,
	    .timeout_s = 1 };
	struct smtp_mail m[2];
	struct smtp_sender *s;
	char err[256] = "";

	(void)state;
	s = smtp_sender_new(&cfg, err, sizeof(err));
	assert_non_null(s);
	m[0] = mail("x\r\nBcc: evil@example.net", "body");
	m[1] = mail("ok", "body");
	m[1].to = "victim@example.com>\r\nRCPT TO:<evil@example.net";
	assert_int_equal(smtp_send_batch(s, m, 2, NULL, err, sizeof(err)), 0);
	assert_int_equal(m[0].status, SMTP_MAIL_REFUSED);
	assert_int_equal(m[1].status, SMTP_MAIL_REFUSED);
	smtp_sender_free(s);
}

static void
test_closed_port_is_tempfail(void **state)
{
	struct smtp_sender_config cfg = { .host = "127.0.0.1", .port = 1,
	    .timeout_s = 1 };
	struct smtp_mail m = mail("ok", "body");
	struct smtp_sender *s;
	char err[256] = "";

	(void)state;
	s = smtp_sender_new(&cfg, err, sizeof(err));
	assert_int_equal(smtp_send_batch(s, &m, 1, NULL, err, sizeof(err)), -1);
	assert_int_equal(m.status, SMTP_MAIL_TEMPFAIL);
	assert_true(strlen(err) > 0);
	smtp_sender_free(s);
}

/* Well-formed UTF-8 with no control character (what a column can take). */
static int
clean_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	while (*p != '\0') {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
		n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 :
		    *p >= 0xe0 && *p <= 0xef ? 3 : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
		if (n == 0)
			return 0;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
		    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
			return 0;
		p += n;
	}
	return 1;
}

static const char *
sanitised(char *out, size_t outlen, const char *in)
{
	size_t len = 0;

	smtp_text_append(out, outlen, &len, in);
	assert_int_equal(len, strlen(out));
	assert_true(len < outlen);
	assert_true(clean_utf8(out));
	return out;
}

static void
test_reply_text_made_safe(void **state)
{
	char out[SMTP_REPLY_MAX], small[8], big[12000];
	size_t len, i;

	(void)state;
	/* valid text passes as is */
	assert_string_equal(sanitised(out, sizeof(out), "550 5.1.1 Jos\xc3\xa9 \xe2\x82\xac"),
	    "550 5.1.1 Jos\xc3\xa9 \xe2\x82\xac");
	/* Latin-1 */
	assert_string_equal(sanitised(out, sizeof(out), "Bo\xeete pleine"),
	    "Bo\xef\xbf\xbdte pleine");
	/* a cut character at the end, overlongs, surrogates, past U+10FFFF */
	assert_string_equal(sanitised(out, sizeof(out), "x\xe2\x82"),
	    "x\xef\xbf\xbd\xef\xbf\xbd");
	sanitised(out, sizeof(out), "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xff\xfe");
	assert_null(strchr(out, 0x7f));
	/* control characters become spaces */
	assert_string_equal(sanitised(out, sizeof(out), "a\r\nb\tc\x7f"), "a  b c ");
	/* bounded, and never cut inside a character */
	assert_string_equal(sanitised(small, sizeof(small), "ab\xe2\x82\xac\xe2\x82\xac"),
	    "ab\xe2\x82\xac");
	assert_string_equal(sanitised(small, sizeof(small), "abcdef\xff"), "abcdef");
	for (i = 0; i + 1 < sizeof(big); i++)
		big[i] = (char)(i % 2 ? 0xa9 : 0xc3);
	big[sizeof(big) - 1] = '\0';
	sanitised(out, sizeof(out), big);
	assert_true(strlen(out) >= sizeof(out) - 2);
	/* appending after a prefix keeps the bound */
	len = 0;
	smtp_text_append(out, sizeof(out), &len, "RCPT TO: 550 ");
	smtp_text_append(out, sizeof(out), &len, big);
	assert_true(len < sizeof(out));
	assert_true(clean_utf8(out));
	assert_memory_equal(out, "RCPT TO: 550 \xc3\xa9", 15);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii_is_7bit_verbatim),
		cmocka_unit_test(test_bare_line_ends_become_crlf),
		cmocka_unit_test(test_utf8_body_8bit_or_qp),
		cmocka_unit_test(test_qp_soft_breaks),
		cmocka_unit_test(test_subject_rfc2047),
		cmocka_unit_test(test_injection_refused),
		cmocka_unit_test(test_batch_refuses_unsafe_mail_without_connecting),
		cmocka_unit_test(test_closed_port_is_tempfail),
		cmocka_unit_test(test_reply_text_made_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
