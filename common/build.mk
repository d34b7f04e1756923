# Modules shared by more than one program. A module moves here, out of a
# program's build.mk, once a second program needs it. Nothing here is linked
# by default: each program, unit test and fuzz target names the modules it
# uses ($(call common,log util ...)) and the libraries they call.
