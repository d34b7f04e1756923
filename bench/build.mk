# Benchmark tools (bench/run drives them; docs/BENCHMARKS.md says how).
# Two small files, so they are part of `all`: they cannot rot unnoticed.
#   build/bench/bare_responder  libmicrohttpd answering mailer-spy's 201, no database
#   build/bench/loadgen         open-loop fixed-rate HTTP load (latency at a rate)
BENCH_TOOLS := $(BUILD)/bench/bare_responder $(BUILD)/bench/loadgen
PROGRAMS += $(BENCH_TOOLS)

$(eval $(call link,$(BUILD)/bench/bare_responder,$(BUILD)/bench/bare_responder.o, \
	libmicrohttpd jansson))
$(eval $(call link,$(BUILD)/bench/loadgen,$(BUILD)/bench/loadgen.o,))
