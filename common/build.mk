# Modules shared by more than one program. A module moves here, out of a
# program's build.mk, once a second program needs it.
COMMON_OBJS += 
COMMON_OBJS += common/experiment.o
