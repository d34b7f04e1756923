/*
 * Unit tests for common/sql_array: the array literals that carry a batch
 * to PostgreSQL. Text is always quoted with `"` and `\` escaped, so commas,
 * braces, quotes, backslashes, CR/LF and UTF-8 survive; NULL is the bare
 * word; an empty array is {}. (That the server reads them back unchanged
 * is checked end to end by the integration tests.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/sql_array.h"

static void
test_empty(void **state)
{
	struct sql_array a = { 0 };

	(void)state;
	assert_string_equal(sql_array_done(&a), "{}");
	sql_array_free(&a);
	sql_array_free(&a);		/* freeing twice is harmless */
}

static void
test_text_is_quoted_and_escaped(void **state)
{
	struct sql_array a = { 0 };

	(void)state;
	sql_array_text(&a, "plain");
	sql_array_text(&a, NULL);
	sql_array_text(&a, "a,b {c}");
	sql_array_text(&a, "say \"hi\" \\ bye");
	sql_array_text(&a, "");
	sql_array_text(&a, "Jos\xc3\xa9\r\nN\xc3\xba\xc3\xb1" "ez");
	assert_string_equal(sql_array_done(&a),
	    "{\"plain\",NULL,\"a,b {c}\",\"say \\\"hi\\\" \\\\ bye\",\"\","
	    "\"Jos\xc3\xa9\r\nN\xc3\xba\xc3\xb1" "ez\"}");
	sql_array_free(&a);
}

static void
test_integers_and_growth(void **state)
{
	struct sql_array a = { 0 };
	const char *s;
	int i;

	(void)state;
	sql_array_int(&a, INT64_MIN);
	sql_array_int(&a, 0);
	for (i = 0; i < 1000; i++)
		sql_array_int(&a, INT64_MAX);
	s = sql_array_done(&a);
	assert_int_equal(strncmp(s, "{-9223372036854775808,0,9223372036854775807,", 44), 0);
	assert_int_equal(strlen(s), 2 + 20 + 1 + 1 + 1 + 1000 * 19 + 999);
	assert_int_equal(s[strlen(s) - 1], '}');
	sql_array_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_text_is_quoted_and_escaped),
		cmocka_unit_test(test_integers_and_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
