/*
 * cluster: the signature that groups mismatches. One template change
 * shows up in every payroll it touches, each time with that payroll's
 * name, address, amount and ids; the signature keeps the change and
 * masks what varies, so all of those land in one cluster and two
 * different changes never share one (docs/RECONCILER.md, "Clusters").
 *
 * No database here: clusterstore.c stores and reads clusters.
 */
#ifndef RECONCILER_CLUSTER_H
#define RECONCILER_CLUSTER_H

#include <stddef.h>

#include "reconciler/result.h"

/*
 * The signature of a mismatch, a new string the caller frees. Readable:
 *
 *	content [body]
 *	body -Hello <Name>,
 *	body +Hi <Name>,
 *
 * For a content mismatch each differing field contributes the lines
 * holding its first to last difference, masked, from both sides (plus
 * "~case" or "~value" when they differ only inside masked parts); a
 * missing mismatch contributes its present side's masked subject.
 * Masks keep the shape of what they replace: a name derived from the
 * destination becomes <Name>, <NAME> or <name> by its case, a number
 * 9 with its separators and decimals kept ("1,320.00" is 9,999.99), a
 * UUID <uuid>, a word mixing letters and digits <id>, an address's
 * local part is masked as the words it is made of.
 */
char *cluster_signature(const struct mismatch *m);

/*
 * A noise rule (rules file syntax, docs/RECONCILER.md) that would make
 * the two sides of this content mismatch equal for every member of its
 * cluster: one [cluster-ID-FIELD] section per differing field, matching
 * either side's changed part (masked parts as patterns) with one token
 * of context. A new string, or NULL with err when no rule can ignore it
 * (a missing mail: rules only compare pairs).
 */
char *cluster_rule(const struct mismatch *m, long long cluster_id, char *err,
    size_t errlen);

#endif
