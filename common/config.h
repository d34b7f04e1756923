/*
 * config: one table per program describes every setting (environment
 * variable, long flag, type, default, help). config_load fills the
 * program's struct from defaults, then the environment, then the flags, and
 * fails on the first bad value with a message naming the variable or flag.
 * The struct is then treated as const for the life of the process.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum config_type {
	CONFIG_STRING,	/* const char * field; NULL when unset and no default */
	CONFIG_INT,	/* long field, checked against [min, max] */
	CONFIG_CHOICE,	/* const char * field, one of "a|b|c" in choices */
	CONFIG_BOOL,	/* int field; a flag takes no argument; env true/false/1/0/yes/no/on/off */
};

struct config_option {
	const char *env;	/* environment variable, or NULL for flag-only */
	const char *flag;	/* long flag without the dashes */
	int short_flag;		/* single-letter flag, or 0 */
	enum config_type type;
	const char *def;	/* default as text, or NULL */
	const char *help;	/* one line for --help */
	long min, max;		/* CONFIG_INT bounds */
	const char *choices;	/* CONFIG_CHOICE: "smtp|parallel|remote" */
	size_t offset;		/* offsetof the field in the program's struct */
	const char *alias;	/* an older spelling of the long flag, still
				 * accepted (listed in --help), or NULL */
};

/* A table ends with an entry whose flag is NULL. */
#define CONFIG_OPTIONS_END { .flag = NULL }

/*
 * Returns 0 when loaded, 1 when --help was asked (usage already printed to
 * stdout), -1 on a bad value (err says which variable or flag and why).
 * *argind is set to the index of the first non-option argument; GNU getopt
 * permutes, so options may follow positional arguments.
 */
int config_load(const struct config_option *opts, void *target, int argc,
    char **argv, int *argind, char *err, size_t errlen);

/*
 * The same for a table of environment-only settings (test and tuning
 * knobs: no flag, not in --help): defaults, then the environment, with
 * the same types and checks. Rows name .env; the table ends with an entry
 * whose env is NULL (CONFIG_OPTIONS_END). 0, or -1 with err naming the
 * variable.
 */
int config_load_env(const struct config_option *opts, void *target,
    char *err, size_t errlen);

void config_usage(FILE *fp, const char *prog, const char *synopsis,
    const struct config_option *opts);

/* Set by config_load for config_usage on --help. */
void config_set_synopsis(const char *prog, const char *synopsis);

#endif
