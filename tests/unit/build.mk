# Unit tests of common/ modules: $(call unit_test,NAME,OBJECTS,PKGS), each
# linking the modules it tests and what they call. Program modules' tests are
# declared in the program's own build.mk with the same macro.
$(eval $(call unit_test,test_config,$(call common,config log util)))
$(eval $(call unit_test,test_ids,$(call common,ids),uuid))
$(eval $(call unit_test,test_validate,$(call common,validate ids),jansson uuid))
$(eval $(call unit_test,test_metrics,$(call common,metrics ids strbuf log util),uuid))
$(eval $(call unit_test,test_smtp_send,$(call common,smtp_send log util strbuf), \
	libesmtp-1.0 libssl libcrypto))
$(eval $(call unit_test,test_pg_array,$(call common,pg_array strbuf log util)))
$(eval $(call unit_test,test_strbuf,$(call common,strbuf log util),jansson))
$(eval $(call unit_test,test_thread,$(call common,log util)))
$(eval $(call unit_test,test_db_redact,$(call common,db log util),libpq))
