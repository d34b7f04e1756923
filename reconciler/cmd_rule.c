/*
 * cmd_rule: `reconciler rule --cluster ID` prints the noise rule that
 * would ignore a cluster, checked against its example, never applied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "reconciler/cluster.h"
#include "reconciler/clusterstore.h"
#include "reconciler/cmd.h"
#include "reconciler/rules.h"

int
cmd_rule(const struct cli *c)
{
	struct mismatch ex = { 0 };
	struct rules *r = NULL;
	struct mail a, b;
	PGconn *mono;
	char err[512], *text = NULL;
	int rc, f, code = EXIT_DB;

	if ((mono = cmd_connect_mono(c)) == NULL)
		return EXIT_DB;
	rc = clusterstore_example(mono, c->cluster, &ex, err, sizeof(err));
	if (rc != 1) {
		log_error("rule: %s", err);
		code = rc == 0 ? EXIT_USAGE : EXIT_DB;
		goto out;
	}
	if ((text = cluster_rule(&ex, c->cluster, err, sizeof(err))) == NULL) {
		log_error("rule: %s", err);
		code = EXIT_USAGE;
		goto out;
	}
	/* Checked the way a run would apply it, on the example. */
	if ((r = rules_parse(text, "cluster rule", err, sizeof(err))) == NULL) {
		log_error("rule: the rule made for cluster %ld does not parse: "
		    "%s", c->cluster, err);
		goto out;
	}
	for (f = 0; f < FIELD_COUNT; f++) {
		a.v[f] = ex.mono[f];
		a.len[f] = strlen(ex.mono[f]);
		b.v[f] = ex.micro[f];
		b.len[f] = strlen(ex.micro[f]);
	}
	printf("# Ignores cluster %ld (%s: %s), checked on its example %s.\n"
	    "# Printed, never applied: add it to the rules file (--rules)\n"
	    "# only if this difference is noise. Rules ignore matching pairs\n"
	    "# for good: they are consumed, counted as ignored.\n",
	    c->cluster, ex.kind, ex.fields, ex.cid);
	if (rules_compare(r, &a, &b, NULL, NULL) != 0)
		printf("# WARNING: the example still differs under this rule; "
		    "edit it before use.\n");
	fputs(text, stdout);
	code = EXIT_CLEAN;
out:
	rules_free(r);
	free(text);
	mismatch_clear(&ex);
	PQfinish(mono);
	return code;
}
