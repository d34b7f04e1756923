# Parallel Run mail sender: mailer-real, mailer-spy, reconciler.
#
#   make            build every program (warnings are errors)
#   make test       unit (cmocka) + integration tests against the dev env
#   make asan       build with AddressSanitizer + UBSan into build/asan
#   make test-asan  the whole test suite against the sanitizer build (any
#                   ASan/UBSan/LSan report fails it; TESTS= for a subset)
#   make valgrind   a short run of each program under valgrind --leak-check=full
#   make fuzz       every libFuzzer target for FUZZ_TIME seconds (fuzz-smoke: briefly)
#   make bench      benchmarks with their baselines (see docs/BENCHMARKS.md)
#   make demo       the whole story on this machine (see README.md)
#   make install    programs, manual pages, sql/ and contrib/ under
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local)
#   make clean
#
# Each program lists its objects in its own build.mk; this file holds the
# flags and the rules they share.

# `make` alone builds everything: the per-program rules below come first
# in the file, and would otherwise be the default goal.
.DEFAULT_GOAL := all

BUILD    ?= build
BIN       = $(BUILD)/bin
CC       ?= cc
# Every library any program uses, by pkg-config name. Compiling sees all
# their headers; linking is per program: each build.mk names the libraries
# its program calls (e.g. RECONCILER_PKGS), and adding one is one line there.
ALL_PKGS := libpq libmicrohttpd jansson uuid libcurl libesmtp-1.0 libssl \
            libcrypto libgit2
PKG_CFLAGS := $(shell pkg-config --cflags $(ALL_PKGS) 2>/dev/null)
WARN     := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c17 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) \
            -I. $(PKG_CFLAGS) -pthread -MMD -MP
LDLIBS   = -pthread -lm $(EXTRA_LDFLAGS)

# $(call pkg_libs,PKGS): the linker flags of those pkg-config packages.
pkg_libs = $(if $(strip $(1)),$(shell pkg-config --libs $(1)))
# $(call common,log util ...): those common/ modules' objects.
common = $(addprefix $(BUILD)/common/,$(addsuffix .o,$(1)))

PROGRAMS :=
TEST_PROGRAMS :=
UNIT_TESTS :=
LINKED :=

include common/build.mk

# $(call link,TARGET,OBJECTS,PKGS): TARGET linked from exactly OBJECTS and
# the libraries of PKGS. --as-needed keeps a library the objects never call
# out of the binary's NEEDED list, and the linker fails on a call to one not
# listed; `make print-linkage` shows each binary's lists, which
# tests/integration/test_linkage.py holds against `readelf -d` and `nm`.
define link
LINKED += $(1)
LINK_OBJS.$(1) := $(2)
LINK_PKGS.$(1) := $(3)
$(1): $(2) $$(filter Makefile %.mk,$$(MAKEFILE_LIST))
	@mkdir -p $$(dir $$@)
	$$(CC) -Wl,--as-needed -o $$@ $(2) $$(call pkg_libs,$(3)) $$(LDLIBS)
endef

# $(call unit_test,NAME,OBJECTS,PKGS): build/tests/NAME from tests/unit/NAME.c,
# linked with OBJECTS (paths under $(BUILD), common modules through
# $(call common,...)), the libraries of PKGS and cmocka.
define unit_test
UNIT_TESTS += $$(BUILD)/tests/$(1)
$$(eval $$(call link,$$(BUILD)/tests/$(1),$$(BUILD)/tests/unit/$(1).o $(2),$(3) cmocka))
endef

# $(call program,NAME,OBJECTS,PKGS): build/bin/NAME from OBJECTS (its main.o
# first) and the libraries of PKGS.
define program
PROGRAMS += $$(BIN)/$(1)
$$(eval $$(call link,$$(BIN)/$(1),$(2),$(3)))
endef

-include mailer-spy/build.mk
-include mailer-real/build.mk
-include reconciler/build.mk
-include tests/unit/build.mk
-include bench/build.mk
-include tests/fuzz/build.mk

.PHONY: all deps test unit asan test-asan valgrind bench bench-scale demo demo-stop install clean \
	print-linkage
all: $(PROGRAMS) $(TEST_PROGRAMS) $(UNIT_TESTS)

# One line per linked binary: path|objects|pkg-config packages.
print-linkage:
	@:$(foreach b,$(LINKED),$(info $(b)|$(strip $(LINK_OBJS.$(b)))|$(strip $(LINK_PKGS.$(b)))))

# Installs missing Debian packages (a no-op when all are there), so that
# `make test` and `make demo` work on a fresh machine.
deps:
	@scripts/install-deps

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The build before the tests uses every core unless make was given -j.
BUILD_JOBS = $(if $(filter -j% --jobserver%,$(MAKEFLAGS)),,-j$(shell nproc))

test: deps
	$(MAKE) $(BUILD_JOBS) all
	/usr/bin/python3 tests/run --bin $(BIN) --build $(BUILD)

unit: deps
	$(MAKE) $(BUILD_JOBS) all
	/usr/bin/python3 tests/run --bin $(BIN) --build $(BUILD) --unit-only

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined" all

# The services' stderr goes to their test logs, where a report would go
# unread: sanitizers write to files under SAN_REPORTS instead, and any file
# there fails the target.
SAN_REPORTS = $(CURDIR)/build/asan/reports
test-asan: asan
	@rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	ASAN_OPTIONS=detect_leaks=1:log_path=$(SAN_REPORTS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(SAN_REPORTS)/ubsan \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	    /usr/bin/python3 tests/run --bin build/asan/bin --build build/asan $(TESTS); \
	rc=$$?; for f in $(SAN_REPORTS)/*; do [ -e "$$f" ] || continue; \
	    echo "== sanitizer report $$f"; cat "$$f"; rc=1; done; \
	[ $$rc -eq 0 ] && echo "test-asan: no sanitizer report"; exit $$rc

# A short run of each program under valgrind: definite leaks and memory
# errors fail it (tests/valgrind says what it runs).
valgrind: all
	/usr/bin/python3 tests/valgrind --bin $(BIN)

demo: deps
	$(MAKE) all
	scripts/demo

demo-stop:
	scripts/demo stop

bench: deps
	$(MAKE) all
	bench/run

bench-scale: deps
	$(MAKE) all
	bench/run --scale

# make install [PREFIX=/usr/local] [DESTDIR=]: the three programs, their
# manual pages (man/, mdoc), the schemas and contrib/ (the systemd units go
# where systemd looks under PREFIX, their paths rewritten to BINDIR; the
# cron file and the environment file example stay in DATADIR/contrib).
# Nothing is enabled or started: docs/RECONCILER.md says how.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/parallel-run
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install
INSTALL_BINS  := $(BIN)/mailer-real $(BIN)/mailer-spy $(BIN)/reconciler
INSTALL_MAN   := man/mailer-real.8 man/mailer-spy.8 man/reconciler.8
INSTALL_UNITS := $(wildcard contrib/*.service contrib/*.timer)

install: $(INSTALL_BINS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(DATADIR)/sql $(DESTDIR)$(DATADIR)/contrib $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 755 $(INSTALL_BINS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 644 $(INSTALL_MAN) $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 644 sql/*.sql $(DESTDIR)$(DATADIR)/sql/
	for f in $(INSTALL_UNITS) contrib/reconciler.cron; do \
	    case $$f in *.cron) d=$(DESTDIR)$(DATADIR)/contrib ;; *) d=$(DESTDIR)$(UNITDIR) ;; esac; \
	    sed 's|/usr/local/bin|$(BINDIR)|g' $$f >$$d/$${f##*/}.tmp && \
	    chmod 644 $$d/$${f##*/}.tmp && mv -f $$d/$${f##*/}.tmp $$d/$${f##*/} || exit 1; \
	done
	$(INSTALL) -m 644 contrib/reconciler.env $(DESTDIR)$(DATADIR)/contrib/

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
