# reconciler: the batch job comparing postgresMono with postgresMicro.
RECONCILER_OBJS := $(addprefix $(BUILD)/reconciler/,main.o batch.o cli.o \
	cmd.o cmd_ack.o cmd_clusters.o cmd_mismatches.o cmd_report.o cmd_rule.o \
	copy_stream.o escape.o knobs.o mark.o merge.o pageorder.o pg.o purge.o report.o report_csv.o \
	report_html.o report_json.o report_text.o result.o rules.o run.o runstore.o \
	shard.o spill.o spool.o cluster.o clusterstore.o \
	report_clusters.o serve.o serve_api.o serve_pages.o) \
	$(call common,log util config strbuf pg_array ids metrics db http)
# libmicrohttpd and uuid: `reconciler serve` (common/http.c, ids.c).
RECONCILER_PKGS := libpq jansson libgit2 libmicrohttpd uuid

$(eval $(call program,reconciler,$(RECONCILER_OBJS),$(RECONCILER_PKGS)))

# The test build: the same program with its crash hook compiled in
# (RECONCILER_CRASH_AT: _exit at a batch boundary, docs/RECONCILER.md), for
# the crash tests only. The installed reconciler has no such code.
RECONCILER_HOOKED := mark knobs
$(BUILD)/reconciler/hooks/%.o: reconciler/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRECONCILER_TEST_HOOKS -c -o $@ $<
TEST_PROGRAMS += $(BUILD)/test-bin/reconciler
$(eval $(call link,$(BUILD)/test-bin/reconciler,$(filter-out \
	$(addprefix $(BUILD)/reconciler/,$(addsuffix .o,$(RECONCILER_HOOKED))),$(RECONCILER_OBJS)) \
	$(addprefix $(BUILD)/reconciler/hooks/,$(addsuffix .o,$(RECONCILER_HOOKED))),$(RECONCILER_PKGS)))

$(eval $(call unit_test,test_reconciler_merge,$(addprefix $(BUILD)/reconciler/, \
	merge.o rules.o shard.o) $(call common,log util strbuf)))
$(eval $(call unit_test,test_pageorder,$(addprefix $(BUILD)/reconciler/, \
	pageorder.o spill.o batch.o) $(call common,log util strbuf)))
$(eval $(call unit_test,test_reconciler_rules,$(BUILD)/reconciler/rules.o \
	$(call common,log util strbuf)))
$(eval $(call unit_test,test_reconciler_report,$(addprefix $(BUILD)/reconciler/, \
	escape.o report.o report_clusters.o report_csv.o report_html.o report_json.o report_text.o \
	result.o) \
	$(call common,log util strbuf),jansson libgit2))
$(eval $(call unit_test,test_cluster,$(addprefix $(BUILD)/reconciler/, \
	cluster.o rules.o result.o) $(call common,log util strbuf)))
