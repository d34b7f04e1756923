/*
 * validate: strict checks for untrusted JSON input, shared by both
 * services for their *input* (never for rendering).
 *
 * A body must be exactly one JSON object, UTF-8, without duplicate keys.
 * A program describes the members it accepts as a table; validate_object
 * rejects unknown members, missing required ones and values of the wrong
 * type or range. Every error names the member it is about, so the caller
 * can answer {"error": message, "field": field}.
 */
#ifndef COMMON_VALIDATE_H
#define COMMON_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Money is carried as integer cents; 1,000,000,000.00 is the most accepted. */
#define VALIDATE_MONEY_MAX_CENTS 100000000000LL
#define VALIDATE_TEXT_MAX_DEFAULT 1024

struct validate_error {
	char message[256];
	char field[96];		/* "" when no one member is to blame */
};

enum validate_type {
	VALIDATE_TEXT,	/* const char * into the object (lives as long as it) */
	VALIDATE_UUID,	/* char[37], canonical and lower-cased */
	VALIDATE_INT,	/* int64_t in [min, max]; 7.0 is not an integer */
	VALIDATE_MONEY,	/* int64_t cents, from the number's text (exact) */
};

struct validate_field {
	const char *name;
	enum validate_type type;
	int required;
	size_t max_len;		/* VALIDATE_TEXT: bytes; 0 = VALIDATE_TEXT_MAX_DEFAULT */
	int allow_empty;	/* VALIDATE_TEXT */
	int64_t min, max;	/* VALIDATE_INT */
	size_t offset;		/* offsetof the destination in the caller's struct */
};

/* A table ends with an entry whose name is NULL. */
#define VALIDATE_FIELDS_END { .name = NULL }

/*
 * Parses body[0..len) into an object. NULL on failure with e filled; when
 * the fault lies inside one member's value (a number too large, a bad
 * byte in a string) or is a repeated key, e->field names that member.
 */
json_t *validate_parse_object(const char *body, size_t len,
    struct validate_error *e);

/*
 * Checks obj against fields and stores the values into target. Members
 * missing and not required leave their destination untouched. body[0..len)
 * is the text obj was parsed from: money is read from its number's text,
 * never through a double. 0 or -1.
 */
int validate_object(const json_t *obj, const char *body, size_t len,
    const struct validate_field *fields, void *target,
    struct validate_error *e);

/*
 * Money from the text of a JSON number (RFC 8259 grammar), exactly: as
 * cents, or -1 for a minus sign (-0 too), more than two decimals once
 * trailing zeros are dropped (320.000 is fine, 0.30000000000000001 and
 * 1e-3 are not), or more than VALIDATE_MONEY_MAX_CENTS. Exponents are
 * applied to the decimal value: 0.1e1 is 1.00, 1.5e2 is 150.00.
 */
int validate_money_text(const char *text, size_t len, const char *field,
    int64_t *cents, struct validate_error *e);

/* Member field of the object parsed from body[0..len), as money. */
int validate_money(const json_t *v, const char *body, size_t len,
    const char *field, int64_t *cents, struct validate_error *e);

/*
 * Text that may go into a header, a log line or an address: valid UTF-8
 * (no overlong forms, no surrogates), no NUL, CR, LF or other control
 * characters (C0, DEL, C1), at most max_len bytes, empty only if allowed.
 */
int validate_text(const char *s, size_t len, const char *field, size_t max_len,
    int allow_empty, struct validate_error *e);

/* 1 when s[0..len) is well-formed UTF-8. */
int validate_utf8(const char *s, size_t len);

/* Fills e; returns -1 so callers can `return validate_fail(...)`. */
int validate_fail(struct validate_error *e, const char *field,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
