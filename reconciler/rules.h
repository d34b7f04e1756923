/*
 * rules: named noise normalisations applied to both sides of a pair before
 * their fields are compared (a timestamp or tracking token in the body,
 * destination case, stray whitespace). The file format is documented in
 * docs/RECONCILER.md:
 *
 *	# comment
 *	[name]
 *	field = body            destination, subject, body, all, or a comma list
 *	regex = [0-9]{10}       POSIX ERE (REG_NEWLINE) with
 *	replace = <ts>          replacement, \0..\9 for groups (default "")
 *	lowercase = yes         or: ASCII lower-case the field
 *	trim = yes              or: drop blanks at line ends and around the value
 *
 * Comparing also lives here, as the rules decide what "equal" means.
 */
#ifndef RECONCILER_RULES_H
#define RECONCILER_RULES_H

#include <stddef.h>
#include <stdint.h>

enum mail_field { FIELD_DESTINATION, FIELD_SUBJECT, FIELD_BODY, FIELD_COUNT };
#define FIELD_BIT(f) (1u << (f))

extern const char *const mail_field_names[FIELD_COUNT];

/* A mail's three fields; values need not be NUL-terminated. */
struct mail {
	const char *v[FIELD_COUNT];
	size_t len[FIELD_COUNT];
};

struct rules;

/* NULL path or an empty file give an empty rule set. NULL on error (err). */
struct rules *rules_load(const char *path, char *err, size_t errlen);
/* Parses text; origin names it in messages ("rules.conf"). */
struct rules *rules_parse(const char *text, const char *origin, char *err,
    size_t errlen);
void rules_free(struct rules *r);

size_t rules_count(const struct rules *r);
const char *rules_name(const struct rules *r, size_t i);

/*
 * Applies rule i to a value of field f: a new NUL-terminated string the
 * caller frees, or NULL when the rule does not touch that field.
 */
char *rules_apply(const struct rules *r, size_t i, enum mail_field f,
    const char *v, size_t len);

/*
 * Compares two mails. Returns the mask of fields that still differ after
 * the rules. A field that differs as stored but is equal after the rules
 * counts one hit for the rule after which it became equal (hits has
 * rules_count entries; may be NULL) and sets *absorbed.
 */
unsigned rules_compare(const struct rules *r, const struct mail *a,
    const struct mail *b, uint64_t *hits, int *absorbed);

/* "destination,body" for a mask, in field order, into buf. */
const char *rules_fields_text(unsigned mask, char *buf, size_t len);

#endif
