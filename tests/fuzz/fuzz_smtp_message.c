/*
 * fuzz_smtp_message: common/smtp_send's message builder on arbitrary
 * fields (NUL-separated: message id, from, to, subject, body). The sender
 * refuses a mail whose header fields fail smtp_header_value_ok /
 * smtp_address_ok; for every mail it would send, the oracle checks the
 * built text: only the headers it writes (no injected Bcc or any other),
 * CRLF everywhere (libesmtp dot-stuffs CRLF lines on the wire, so a "."
 * line in the text is safe; a bare LF would not be), no header line over
 * 998 bytes.
 */
#include <stdint.h>
#include <strings.h>

#include "common/smtp_send.h"
#include "fuzz_common.h"

static const char *known[] = {
	"Message-Id:", "Date:", "From:", "To:", "Subject:", "MIME-Version:",
	"Content-Type:", "Content-Transfer-Encoding:", NULL
};

static void
check_message(const char *msg, size_t len)
{
	const char *p = msg, *end = msg + len, *eol;
	int in_headers = 1;

	FUZZ_CHECK(strlen(msg) == len, "NUL inside the message");
	FUZZ_CHECK(fuzz_crlf_only(msg), "bare CR or LF in the message");
	while (p < end) {
		eol = strstr(p, "\r\n");
		if (eol == NULL)
			eol = end;
		if (in_headers) {
			size_t n = (size_t)(eol - p);
			int ok = 0;

			if (n == 0) {
				in_headers = 0;
			} else {
				FUZZ_CHECK(n <= 998, "header line of %zu bytes", n);
				if (*p == ' ' || *p == '\t')
					ok = 1;
				for (int i = 0; known[i] && !ok; i++)
					ok = strncasecmp(p, known[i], strlen(known[i])) == 0;
				FUZZ_CHECK(ok, "unexpected header line '%.*s'", (int)(n > 80 ? 80 : n), p);
			}
		}
		p = eol + 2;
	}
	FUZZ_CHECK(!in_headers, "no end of headers");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *all = fuzz_cstr(data, size);
	const char *f[5] = { "id@example.com", "payroll@example.com", "a@example.com", "s", "b" };
	struct smtp_mail m;
	size_t off = 0, len;
	char *msg;
	int i;

	/* fields are separated by NUL bytes in the input */
	for (i = 0; i < 5 && off <= size; i++) {
		f[i] = (const char *)data + off;
		off += strnlen((const char *)data + off, size - off) + 1;
	}
	if (off > size + 1 || i < 5) {
		free(all);
		return 0;
	}
	/* the last field may run to the end of the input: make it a C string */
	{
		char *fields[5];

		for (i = 0; i < 5; i++)
			fields[i] = strndup(f[i], size - (size_t)(f[i] - (const char *)data));
		memset(&m, 0, sizeof(m));
		m.message_id = fields[0];
		m.from = fields[1];
		m.to = fields[2];
		m.subject = fields[3];
		m.body = fields[4];
		if (smtp_header_value_ok(m.message_id) && smtp_address_ok(m.from) &&
		    smtp_address_ok(m.to) && smtp_header_value_ok(m.subject)) {
			FUZZ_CHECK(strpbrk(m.to, "\r\n") == NULL, "address with CR/LF accepted");
			for (int eight = 0; eight <= 1; eight++) {
				msg = smtp_build_message(&m, eight, &len);
				check_message(msg, len);
				free(msg);
			}
		}
		for (i = 0; i < 5; i++)
			free(fields[i]);
	}
	free(all);
	return 0;
}
