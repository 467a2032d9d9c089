# simxen: stand-ins for libxenctrl/libxenguest/libxenstore/libxenevtchn with
# the real SONAMEs and symbol versions, over one shared core (libsimxen).
# Included by lowlevel/Makefile; builds into $(BUILD)/simxen.
SIMXEN_SRC  := simxen
SIMXEN_OUT  := $(BUILD)/simxen
SIMXEN_HDR  := $(SIMXEN_SRC)/simxen.h
SIMXEN_LIBS := $(SIMXEN_OUT)/libsimxen.so.0 \
	$(SIMXEN_OUT)/libxenctrl.so.4.17 $(SIMXEN_OUT)/libxenevtchn.so.1 \
	$(SIMXEN_OUT)/libxenstore.so.4 $(SIMXEN_OUT)/libxenguest.so.4.17
SIMXEN_LINK  = $(CC) $(CFLAGS) -shared -fPIC -Wl,-z,defs \
	-Wl,-rpath,'$$ORIGIN' -Wl,-soname,$(notdir $@) \
	-Wl,--version-script=$(filter %.map,$^)

.PHONY: simxen
simxen: $(SIMXEN_LIBS)

$(SIMXEN_OUT):
	mkdir -p $@

$(SIMXEN_OUT)/libsimxen.so.0: $(SIMXEN_SRC)/core.c $(SIMXEN_HDR) $(SIMXEN_SRC)/libsimxen.map | $(SIMXEN_OUT)
	$(SIMXEN_LINK) -o $@ $< -lpthread

$(SIMXEN_OUT)/libxenctrl.so.4.17: $(SIMXEN_SRC)/xenctrl.c $(SIMXEN_HDR) $(SIMXEN_SRC)/libxenctrl.map $(SIMXEN_OUT)/libsimxen.so.0
	$(SIMXEN_LINK) -o $@ $< $(filter %.so.0,$^)

$(SIMXEN_OUT)/libxenevtchn.so.1: $(SIMXEN_SRC)/xenevtchn.c $(SIMXEN_HDR) $(SIMXEN_SRC)/libxenevtchn.map $(SIMXEN_OUT)/libsimxen.so.0
	$(SIMXEN_LINK) -o $@ $< $(filter %.so.0,$^)

$(SIMXEN_OUT)/libxenstore.so.4: $(SIMXEN_SRC)/xenstore.c $(SIMXEN_HDR) $(SIMXEN_SRC)/libxenstore.map $(SIMXEN_OUT)/libsimxen.so.0
	$(SIMXEN_LINK) -o $@ $< $(filter %.so.0,$^)

$(SIMXEN_OUT)/libxenguest.so.4.17: $(SIMXEN_SRC)/xenguest.c $(SIMXEN_HDR) $(SIMXEN_SRC)/libxenguest.map $(SIMXEN_OUT)/libsimxen.so.0 $(SIMXEN_OUT)/libxenctrl.so.4.17 $(SIMXEN_OUT)/libxenevtchn.so.1
	$(SIMXEN_LINK) -o $@ $< $(filter %.so.0 %.so.4.17 %.so.1,$^)
