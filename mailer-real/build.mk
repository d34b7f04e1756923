# mailer-real: the monolith (payroll API, legacy renderer, outbox, SMTP
# delivery, Parallel Run dispatch to mailer-spy).
MAILER_REAL_OBJS := $(addprefix $(BUILD)/mailer-real/,main.o payroll.o \
	outbox.o dispatch.o handoff.o legacy_render.o)

$(eval $(call program,mailer-real,$(MAILER_REAL_OBJS)))
$(eval $(call unit_test,test_legacy_render,$(BUILD)/mailer-real/legacy_render.o))
