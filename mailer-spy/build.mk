# mailer-spy: the microservice (own renderer, group-committed store).
MAILER_SPY_OBJS := $(addprefix $(BUILD)/mailer-spy/,main.o render.o store.o \
	handlers.o) \
	$(call common,log util config strbuf ids metrics db group_commit http \
	validate smtp_send pg_array delivery delivery_config)
MAILER_SPY_PKGS := libpq libmicrohttpd jansson uuid libesmtp-1.0 libssl \
	libcrypto

$(eval $(call program,mailer-spy,$(MAILER_SPY_OBJS),$(MAILER_SPY_PKGS)))
$(eval $(call unit_test,test_spy_render,$(BUILD)/mailer-spy/render.o \
	$(call common,log util strbuf)))
