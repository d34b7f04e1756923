/*
 * Unit tests for db_redact (common/db.c): a libpq connection message
 * never carries the password into a log, whether the conninfo parses
 * (the password's value is cut wherever it appears, as parsed and as
 * written in a URI) or not (libpq quotes the fragment it choked on, and
 * a password with quotes and spaces can make that fragment anything).
 * The messages come from libpq itself, for conninfo strings that fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "common/db.h"

/* libpq's own parse error for conninfo, redacted. */
static void
parse_error_redacted(const char *conninfo, const char *secret)
{
	char msg[512], *perr = NULL;
	int quoted;
	PQconninfoOption *o = PQconninfoParse(conninfo, &perr);

	assert_null(o);
	assert_non_null(perr);
	snprintf(msg, sizeof(msg), "%s", perr);
	PQfreemem(perr);
	quoted = strchr(msg, '"') != NULL;
	db_redact(conninfo, msg, sizeof(msg));
	if (strstr(msg, secret) != NULL)
		fail_msg("'%s' still in '%s'", secret, msg);
	/* the rule broken stays readable */
	assert_true(strstr(msg, "invalid") != NULL || strstr(msg, "missing") != NULL ||
	    strstr(msg, "unterminated") != NULL);
	if (quoted)
		assert_non_null(strstr(msg, "\"***\""));
}

static void
test_unparsable_conninfo(void **state)
{
	(void)state;
	/* unquoted password with a space and a quote */
	parse_error_redacted("host=db password=pa ss\"w0rd dbname=mono", "ss\"w0rd");
	parse_error_redacted("host=db password=pa ss\"w0rd dbname=mono", "w0rd");
	/* unterminated quoted value */
	parse_error_redacted("host=db password='It s3cr3t", "s3cr3t");
	/* a URI libpq refuses quotes the URI whole */
	parse_error_redacted("postgresql://u:Tr0ub4dor&3@db:5432/mono?x=1", "Tr0ub4dor");
	parse_error_redacted("postgresql://u:p%zzass@db/mono", "p%zzass");
}

static void
test_parsed_password_cut(void **state)
{
	char msg[256];

	(void)state;
	snprintf(msg, sizeof(msg), "FATAL: bad thing near \"it's a s3cret\" here");
	db_redact("host=db password='it\\'s a s3cret' dbname=mono", msg, sizeof(msg));
	assert_null(strstr(msg, "s3cret"));
	assert_non_null(strstr(msg, "FATAL: bad thing near"));

	/* in a URI, both as written (percent-encoded) and as decoded */
	snprintf(msg, sizeof(msg), "x p%%40ss y p@ss z");
	db_redact("postgresql://u:p%40ss@db/mono", msg, sizeof(msg));
	assert_null(strstr(msg, "p%40ss"));
	assert_null(strstr(msg, "p@ss"));

	/* the host and the rest stay readable */
	snprintf(msg, sizeof(msg), "connection to server at \"127.0.0.1\", port 1 "
	    "failed: Connection refused");
	db_redact("host=127.0.0.1 port=1 password=hunter2", msg, sizeof(msg));
	assert_non_null(strstr(msg, "\"127.0.0.1\", port 1"));

	/* a plain database name is not a conninfo: nothing to hide */
	snprintf(msg, sizeof(msg), "database \"mono\" does not exist");
	db_redact("mono", msg, sizeof(msg));
	assert_string_equal(msg, "database \"mono\" does not exist");
}

/* A password of one character replaced by three stays within the buffer. */
static void
test_growth_bounded(void **state)
{
	char msg[16];

	(void)state;
	memset(msg, 'a', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	db_redact("host=x password=a", msg, sizeof(msg));
	assert_int_equal(strlen(msg), sizeof(msg) - 1);
	assert_null(strchr(msg, 'a'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unparsable_conninfo),
		cmocka_unit_test(test_parsed_password_cut),
		cmocka_unit_test(test_growth_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
