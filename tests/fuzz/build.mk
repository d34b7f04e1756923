# libFuzzer targets (clang -fsanitize=fuzzer,address,undefined), one per
# parser, each linking the module objects it fuzzes directly. Built under
# build/fuzz with clang whatever CC is; see docs/RELIABILITY.md.
#
#   make fuzz-build   the targets
#   make fuzz         each target for FUZZ_TIME seconds (default 60) from its
#                     corpus; new inputs go to build/fuzz/corpus/<target>,
#                     crashes to build/fuzz/artifacts/
#   make fuzz-smoke   each target over its committed seeds, then briefly
#                     (FUZZ_SMOKE_TIME, default 5 s); part of `make test`
#                     through tests/integration/test_hostile_fuzz.py
#
# A target is declared with $(call fuzz_target,NAME,SOURCES,PKGS): NAME.c in
# tests/fuzz, SOURCES the project .c files it links (common/log.c, common/strbuf.c and
# common/util.c are always added), PKGS the pkg-config packages they call. A target whose sources are not there yet
# is left out, so the list can name modules still being written.

FUZZ_CC     ?= clang
FUZZ_BUILD  := build/fuzz
FUZZ_TIME   ?= 60
FUZZ_SMOKE_TIME ?= 5
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  = -std=c17 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wpedantic -Werror \
               -Wno-unused-command-line-argument -g -O1 -fno-omit-frame-pointer \
               $(FUZZ_SAN) -fsanitize=fuzzer-no-link -I. $(PKG_CFLAGS) -pthread
FUZZ_TARGETS :=

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

define fuzz_target
ifeq ($$(words $$(wildcard $(2))),$$(words $(2)))
FUZZ_TARGETS += $(1)
$$(FUZZ_BUILD)/bin/$(1): $$(FUZZ_BUILD)/obj/tests/fuzz/$(1).o \
    $$(patsubst %.c,$$(FUZZ_BUILD)/obj/%.o,$(2) common/log.c common/util.c common/strbuf.c)
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_SAN) -fsanitize=fuzzer -Wl,--as-needed -o $$@ $$^ \
	    $$(call pkg_libs,$(3)) -pthread -lm
endif
endef

# The parsers that take untrusted input (names in docs/RELIABILITY.md).
$(eval $(call fuzz_target,fuzz_validate,common/validate.c common/ids.c,jansson uuid))
$(eval $(call fuzz_target,fuzz_legacy_render,mailer-real/legacy_render.c))
$(eval $(call fuzz_target,fuzz_smtp_message,common/smtp_send.c,libesmtp-1.0 libssl libcrypto))
$(eval $(call fuzz_target,fuzz_spy_render,mailer-spy/render.c mailer-real/legacy_render.c))
$(eval $(call fuzz_target,fuzz_reconciler_rules,reconciler/rules.c))
$(eval $(call fuzz_target,fuzz_reconciler_report,reconciler/escape.c reconciler/report.c \
    reconciler/report_clusters.c \
    reconciler/report_csv.c reconciler/report_html.c reconciler/report_json.c \
    reconciler/report_text.c reconciler/result.c reconciler/rules.c,jansson libgit2))

.PHONY: fuzz-build fuzz fuzz-smoke
fuzz-build: $(addprefix $(FUZZ_BUILD)/bin/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
	    echo "== fuzz $$t for $(FUZZ_TIME)s"; \
	    $(FUZZ_BUILD)/bin/$$t -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/smoke/$$t $(FUZZ_BUILD)/artifacts; \
	    echo "== fuzz-smoke $$t"; \
	    $(FUZZ_BUILD)/bin/$$t -runs=0 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- tests/fuzz/corpus/$$t >/dev/null 2>&1 || \
	        { $(FUZZ_BUILD)/bin/$$t -runs=0 tests/fuzz/corpus/$$t; exit 1; }; \
	    $(FUZZ_BUILD)/bin/$$t -max_total_time=$(FUZZ_SMOKE_TIME) \
	        -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	        $(FUZZ_BUILD)/smoke/$$t tests/fuzz/corpus/$$t >$(FUZZ_BUILD)/smoke/$$t.log 2>&1 || \
	        { tail -40 $(FUZZ_BUILD)/smoke/$$t.log; exit 1; }; \
	    tail -1 $(FUZZ_BUILD)/smoke/$$t.log; \
	done

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
