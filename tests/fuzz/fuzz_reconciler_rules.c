/*
 * fuzz_reconciler_rules: the reconciler's noise-rules file (rules_parse)
 * and the comparison it drives. Input: rules text, a NUL, then a value.
 * Oracle: a mail always equals itself after any rule set that parses, and
 * rules_apply on a value gives a NUL-terminated string or NULL.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "reconciler/rules.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	char *text, err[256] = "", *out;
	const char *val = nul ? (const char *)nul + 1 : "";
	size_t vlen = nul ? size - tlen - 1 : 0;
	struct rules *r;
	struct mail m;
	unsigned diff;
	int absorbed = 0;

	/*
	 * glibc's regcomp expands every repetition into copies of its operand,
	 * so nested or stacked ones ("a++++..." or "((a{1,99}){1,99})") grow
	 * exponentially and exhaust memory: the rules file is the operator's
	 * own configuration and trusted that far (docs/RELIABILITY.md). Keep
	 * the fuzzer on the parser, not on glibc's regcomp.
	 */
	size_t quantifiers = 0;

	for (size_t i = 0; i < tlen; i++)
		quantifiers += data[i] == '+' || data[i] == '*' || data[i] == '?' || data[i] == '{';
	if (tlen > 2048 || quantifiers > 6)
		return 0;
	text = fuzz_cstr(data, tlen);
	r = rules_parse(text, "fuzz.rules", err, sizeof(err));
	if (r == NULL) {
		FUZZ_CHECK(err[0] != '\0', "rules rejected without a message");
		free(text);
		return 0;
	}
	if (vlen > 2048)
		vlen = 2048;
	for (int f = 0; f < FIELD_COUNT; f++) {
		m.v[f] = val;
		m.len[f] = vlen;
	}
	for (size_t i = 0; i < rules_count(r) && i < 8; i++) {
		FUZZ_CHECK(rules_name(r, i) != NULL, "rule %zu without a name", i);
		for (int f = 0; f < FIELD_COUNT; f++) {
			out = rules_apply(r, i, (enum mail_field)f, val, vlen);
			if (out != NULL)
				(void)strlen(out);
			free(out);
		}
	}
	uint64_t hits[64] = { 0 };
	diff = rules_compare(r, &m, &m, rules_count(r) <= 64 ? hits : NULL, &absorbed);
	FUZZ_CHECK(diff == 0, "a mail differs from itself (mask %u)", diff);
	rules_free(r);
	free(text);
	return 0;
}
