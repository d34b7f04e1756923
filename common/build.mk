# Modules shared by more than one program. A module moves here, out of a
# program's build.mk, once a second program needs it.
COMMON_OBJS += common/experiment.o
COMMON_OBJS += common/ids.o common/metrics.o common/db.o common/group_commit.o \
	common/http.o common/validate.o
COMMON_OBJS += common/smtp_send.o common/sql_array.o common/delivery.o \
	common/pg_array.o
