/*
 * Unit tests for common/config: defaults, then environment, then flags;
 * a bad value fails naming the variable or flag. config_load_env: the
 * same for an environment-only table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"

struct conf {
	long port;
	const char *mode;
	const char *url;
	int quiet;
};

static const struct config_option opts[] = {
	{ .env = "T_PORT", .flag = "port", .type = CONFIG_INT, .def = "8081",
	  .min = 1, .max = 65535, .offset = offsetof(struct conf, port) },
	{ .env = "T_MODE", .flag = "mode", .type = CONFIG_CHOICE, .def = "spy",
	  .choices = "spy|live", .offset = offsetof(struct conf, mode) },
	{ .env = "T_URL", .flag = "url", .alias = "old-url", .type = CONFIG_STRING,
	  .offset = offsetof(struct conf, url) },
	{ .env = "T_QUIET", .flag = "quiet", .short_flag = 'q', .type = CONFIG_BOOL,
	  .def = "false", .offset = offsetof(struct conf, quiet) },
	CONFIG_OPTIONS_END
};

static int
load(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
	int argind = 0;

	memset(c, 0, sizeof(*c));
	return config_load(opts, c, argc, argv, &argind, err, errlen);
}

static void
test_defaults(void **state)
{
	struct conf c;
	char err[256] = "";
	char *argv[] = { "prog", NULL };

	(void)state;
	unsetenv("T_PORT");
	unsetenv("T_MODE");
	assert_int_equal(load(&c, 1, argv, err, sizeof(err)), 0);
	assert_int_equal(c.port, 8081);
	assert_string_equal(c.mode, "spy");
	assert_null(c.url);
	assert_int_equal(c.quiet, 0);
}

static void
test_env_then_flag(void **state)
{
	struct conf c;
	char err[256] = "";
	char *argv[] = { "prog", "--port", "9000", "-q", NULL };

	(void)state;
	setenv("T_PORT", "7000", 1);
	setenv("T_MODE", "live", 1);
	assert_int_equal(load(&c, 4, argv, err, sizeof(err)), 0);
	assert_int_equal(c.port, 9000);
	assert_string_equal(c.mode, "live");
	assert_int_equal(c.quiet, 1);
	unsetenv("T_PORT");
	unsetenv("T_MODE");
}

static void
test_bad_env_names_variable(void **state)
{
	struct conf c;
	char err[256] = "";
	char *argv[] = { "prog", NULL };

	(void)state;
	setenv("T_PORT", "70000", 1);
	assert_int_equal(load(&c, 1, argv, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "T_PORT"));
	unsetenv("T_PORT");
	setenv("T_MODE", "loud", 1);
	assert_int_equal(load(&c, 1, argv, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "T_MODE"));
	assert_non_null(strstr(err, "spy|live"));
	unsetenv("T_MODE");
}

static void
test_bad_flag_names_flag(void **state)
{
	struct conf c;
	char err[256] = "";
	char *argv[] = { "prog", "--port=abc", NULL };
	char *argv2[] = { "prog", "--nope", NULL };

	(void)state;
	assert_int_equal(load(&c, 2, argv, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--port"));
	assert_int_equal(load(&c, 2, argv2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--nope"));
}

/* An older spelling sets the same field; the newer one wins when last. */
static void
test_alias_sets_the_same_field(void **state)
{
	struct conf c;
	char err[256] = "";
	char *argv[] = { "prog", "--old-url", "a", NULL };
	char *argv2[] = { "prog", "--old-url=a", "--url=b", NULL };
	char *argv3[] = { "prog", "--old-url", NULL };

	(void)state;
	assert_int_equal(load(&c, 3, argv, err, sizeof(err)), 0);
	assert_string_equal(c.url, "a");
	assert_int_equal(load(&c, 3, argv2, err, sizeof(err)), 0);
	assert_string_equal(c.url, "b");
	assert_int_equal(load(&c, 2, argv3, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--old-url"));
}

/* Environment-only rows: no flag, the table ends at the NULL env. */
static const struct config_option env_opts[] = {
	{ .env = "T_ROWS", .type = CONFIG_INT, .def = "25", .min = 0,
	  .max = 1000, .offset = offsetof(struct conf, port) },
	{ .env = "T_SPILL", .type = CONFIG_BOOL, .def = "false",
	  .offset = offsetof(struct conf, quiet) },
	CONFIG_OPTIONS_END
};

static void
test_env_only_table(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	memset(&c, 0, sizeof(c));
	unsetenv("T_ROWS");
	setenv("T_SPILL", "1", 1);
	assert_int_equal(config_load_env(env_opts, &c, err, sizeof(err)), 0);
	assert_int_equal(c.port, 25);
	assert_int_equal(c.quiet, 1);
	setenv("T_ROWS", "12x", 1);
	assert_int_equal(config_load_env(env_opts, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "T_ROWS"));
	unsetenv("T_ROWS");
	setenv("T_SPILL", "maybe", 1);
	assert_int_equal(config_load_env(env_opts, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "T_SPILL"));
	unsetenv("T_SPILL");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_env_then_flag),
		cmocka_unit_test(test_bad_env_names_variable),
		cmocka_unit_test(test_bad_flag_names_flag),
		cmocka_unit_test(test_alias_sets_the_same_field),
		cmocka_unit_test(test_env_only_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
