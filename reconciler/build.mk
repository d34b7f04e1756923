# reconciler: the batch job comparing postgresMono with postgresMicro.
RECONCILER_OBJS := $(addprefix $(BUILD)/reconciler/, cli.o copy_stream.o \
	escape.o mark.o merge.o pg.o report.o report_csv.o report_html.o \
	report_json.o report_text.o rules.o run.o runstore.o shard.o spool.o)

$(eval $(call program,reconciler,$(BUILD)/reconciler/main.o $(RECONCILER_OBJS)))

$(eval $(call unit_test,test_reconciler_merge,$(addprefix $(BUILD)/reconciler/, merge.o rules.o shard.o)))
$(eval $(call unit_test,test_reconciler_rules,$(BUILD)/reconciler/rules.o))
$(eval $(call unit_test,test_reconciler_report,$(addprefix $(BUILD)/reconciler/, escape.o report.o report_csv.o report_html.o report_json.o report_text.o rules.o)))
