# mailer-spy: the microservice (own renderer, group-committed store).
MAILER_SPY_OBJS := $(addprefix $(BUILD)/mailer-spy/,render.o store.o handlers.o)

$(eval $(call program,mailer-spy,$(BUILD)/mailer-spy/main.o $(MAILER_SPY_OBJS)))
$(eval $(call unit_test,test_spy_render,$(BUILD)/mailer-spy/render.o))
