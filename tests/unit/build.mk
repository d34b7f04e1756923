# Unit tests of common/ modules. Program modules' tests are declared in the
# program's own build.mk with the same macro.
$(eval $(call unit_test,test_config,))
$(eval $(call unit_test,test_experiment,))
$(eval $(call unit_test,test_validate,))
$(eval $(call unit_test,test_metrics,))
$(eval $(call unit_test,test_smtp_send,))
$(eval $(call unit_test,test_sql_array,))
$(eval $(call unit_test,test_pg_array,))
$(eval $(call unit_test,test_strbuf,))
$(eval $(call unit_test,test_thread,))
