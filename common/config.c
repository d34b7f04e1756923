/*
 * config: see config.h. Values are parsed by type from the table, so adding
 * a setting is one line in a program's table, never another if-chain.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *usage_prog = "program";
static const char *usage_synopsis = "[options]";

void
config_set_synopsis(const char *prog, const char *synopsis)
{
	usage_prog = prog;
	usage_synopsis = synopsis;
}

static int
choice_ok(const char *choices, const char *v)
{
	size_t len = strlen(v);
	const char *p = choices;

	while (p != NULL && *p != '\0') {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);
		if (n == len && strncmp(p, v, n) == 0)
			return 1;
		p = bar ? bar + 1 : NULL;
	}
	return 0;
}

static int
set_value(const struct config_option *o, void *target, const char *v,
    const char *source, char *err, size_t errlen)
{
	char *base = target, *end;
	long n;

	switch (o->type) {
	case CONFIG_STRING:
		*(const char **)(void *)(base + o->offset) = v;
		return 0;
	case CONFIG_CHOICE:
		if (!choice_ok(o->choices, v)) {
			snprintf(err, errlen, "%s: '%s' is not one of %s", source, v,
			    o->choices);
			return -1;
		}
		*(const char **)(void *)(base + o->offset) = v;
		return 0;
	case CONFIG_INT:
		errno = 0;
		n = strtol(v, &end, 10);
		if (*v == '\0' || *end != '\0' || errno != 0 || n < o->min ||
		    n > o->max) {
			snprintf(err, errlen, "%s: '%s' is not an integer in %ld..%ld",
			    source, v, o->min, o->max);
			return -1;
		}
		*(long *)(void *)(base + o->offset) = n;
		return 0;
	case CONFIG_BOOL:
		if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 ||
		    strcmp(v, "yes") == 0 || strcmp(v, "on") == 0) {
			*(int *)(void *)(base + o->offset) = 1;
		} else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "no") == 0 || strcmp(v, "off") == 0) {
			*(int *)(void *)(base + o->offset) = 0;
		} else {
			snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)",
			    source, v);
			return -1;
		}
		return 0;
	}
	return -1;
}

void
config_usage(FILE *fp, const char *prog, const char *synopsis,
    const struct config_option *opts)
{
	const struct config_option *o;
	char left[64];

	fprintf(fp, "usage: %s %s\n\n", prog, synopsis);
	for (o = opts; o->flag != NULL; o++) {
		if (o->type == CONFIG_BOOL)
			snprintf(left, sizeof(left), "--%s", o->flag);
		else
			snprintf(left, sizeof(left), "--%s=V", o->flag);
		fprintf(fp, "  %c%c%s%-22s %s", o->short_flag ? '-' : ' ',
		    o->short_flag ? o->short_flag : ' ', o->short_flag ? "," : " ",
		    left, o->help ? o->help : "");
		if (o->env != NULL)
			fprintf(fp, " [%s]", o->env);
		if (o->def != NULL)
			fprintf(fp, " (default %s)", o->def);
		if (o->alias != NULL)
			fprintf(fp, " (also --%s)", o->alias);
		fputc('\n', fp);
	}
	fprintf(fp, "  -h, --help                 this text\n");
}

int
config_load_env(const struct config_option *opts, void *target, char *err,
    size_t errlen)
{
	const struct config_option *o;
	char source[80];
	const char *v;

	for (o = opts; o->env != NULL; o++) {
		if (o->def != NULL) {
			snprintf(source, sizeof(source), "default of %s", o->env);
			if (set_value(o, target, o->def, source, err, errlen) == -1)
				return -1;
		}
		if ((v = getenv(o->env)) != NULL && *v != '\0' &&
		    set_value(o, target, v, o->env, err, errlen) == -1)
			return -1;
	}
	return 0;
}

int
config_load(const struct config_option *opts, void *target, int argc,
    char **argv, int *argind, char *err, size_t errlen)
{
	const struct config_option *o;
	struct option *longopts = NULL;
	char shortopts[128] = ":h", source[80];
	size_t n = 0, i, k, s = 2;
	int c, idx, rc = -1;
	const char *v;

	for (o = opts; o->flag != NULL; o++)
		n++;
	for (i = 0; i < n; i++) {
		o = &opts[i];
		if (o->def != NULL) {
			snprintf(source, sizeof(source), "default of %s", o->flag);
			if (set_value(o, target, o->def, source, err, errlen) == -1)
				return -1;
		}
	}
	for (i = 0; i < n; i++) {
		o = &opts[i];
		if (o->env != NULL && (v = getenv(o->env)) != NULL && *v != '\0') {
			if (set_value(o, target, v, o->env, err, errlen) == -1)
				return -1;
		}
	}

	/* Each option, then its alias if any, then --help, then the end. */
	longopts = xcalloc(2 * n + 2, sizeof(*longopts));
	for (i = 0, k = 0; i < n; i++) {
		int has_arg = opts[i].type == CONFIG_BOOL ? no_argument :
		    required_argument;

		longopts[k].name = opts[i].flag;
		longopts[k].has_arg = has_arg;
		longopts[k++].val = 256 + (int)i;
		if (opts[i].alias != NULL) {
			longopts[k].name = opts[i].alias;
			longopts[k].has_arg = has_arg;
			longopts[k++].val = 256 + (int)i;
		}
		if (opts[i].short_flag && s + 3 < sizeof(shortopts)) {
			shortopts[s++] = (char)opts[i].short_flag;
			if (opts[i].type != CONFIG_BOOL)
				shortopts[s++] = ':';
		}
	}
	longopts[k].name = "help";
	longopts[k].val = 'h';
	shortopts[s] = '\0';

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, &idx)) != -1) {
		if (c == 'h') {
			config_usage(stdout, usage_prog, usage_synopsis, opts);
			rc = 1;
			goto out;
		}
		if (c == '?' || c == ':') {
			const char *arg = argv[optind - 1];
			if (c == ':')
				snprintf(err, errlen, "%s: needs a value", arg);
			else
				snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
			goto out;
		}
		if (c < 256) {
			for (i = 0; i < n; i++)
				if (opts[i].short_flag == c)
					break;
		} else {
			i = (size_t)(c - 256);
		}
		if (i >= n)
			goto out;
		o = &opts[i];
		/* Name the flag as it was typed (the alias, if that). */
		snprintf(source, sizeof(source), "--%s",
		    c >= 256 ? longopts[idx].name : o->flag);
		if (o->type == CONFIG_BOOL)
			*(int *)(void *)((char *)target + o->offset) = 1;
		else if (set_value(o, target, optarg, source, err, errlen) == -1)
			goto out;
	}
	if (argind != NULL)
		*argind = optind;
	rc = 0;
out:
	free(longopts);
	return rc;
}
