# mailer-real: the monolith (payroll API, legacy renderer, outbox, SMTP
# delivery, Parallel Run dispatch to mailer-spy).
MAILER_REAL_OBJS := $(addprefix $(BUILD)/mailer-real/,main.o payroll.o \
	outbox.o dispatch.o handoff.o legacy_render.o experiment.o) \
	$(call common,log util config strbuf ids metrics db \
	group_commit http validate smtp_send pg_array delivery delivery_config)
MAILER_REAL_PKGS := libpq libmicrohttpd jansson uuid libcurl libesmtp-1.0 \
	libssl libcrypto

$(eval $(call program,mailer-real,$(MAILER_REAL_OBJS),$(MAILER_REAL_PKGS)))
$(eval $(call unit_test,test_legacy_render,$(BUILD)/mailer-real/legacy_render.o \
	$(call common,log util)))
# experiment: a Scientist for C, used by the dispatcher only (it moves to
# common/ when a second program needs it).
$(eval $(call unit_test,test_experiment,$(BUILD)/mailer-real/experiment.o \
	$(call common,log util)))
