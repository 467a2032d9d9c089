# libxlstub.so: LD_PRELOAD stub that lets Debian's real xl run without Xen
# (xl-side.md section 7; docs/decisions.d/xlstub.md).  Included from
# lowlevel/Makefile; needs BUILD, CC, CFLAGS.  Without libxen-dev the target
# only says so: tests/support/realxl.py then reports the conformance tier
# as not run.
XLSTUB_DIR   := xlstub
XLSTUB_SO    := $(BUILD)/libxlstub.so
XLSTUB_SRC   := $(XLSTUB_DIR)/xlstub.c $(XLSTUB_DIR)/xlstub_deny.c
XLSTUB_DEPS  := $(XLSTUB_SRC) $(XLSTUB_DIR)/xlstub.h $(XLSTUB_DIR)/deny.def \
                $(XLSTUB_DIR)/check-imports.sh $(XLSTUB_DIR)/xlstub.mk
XLSTUB_LIBXL ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libxenlight.so.4.17 \
                    /usr/lib/*/libxenlight.so.4.17 /lib/*/libxenlight.so.4.17))
XLSTUB_HDR   := $(wildcard /usr/include/xenctrl.h)

.PHONY: xlstub
xlstub: $(if $(XLSTUB_HDR),$(XLSTUB_SO),xlstub-missing-headers)

.PHONY: xlstub-missing-headers
xlstub-missing-headers:
	@echo "xlstub: /usr/include/xenctrl.h not found (install libxen-dev); libxlstub.so not built"

# Built under a temporary name and renamed only once the import check has
# passed, so a stub that does not cover libxenlight never exists.
$(XLSTUB_SO): $(XLSTUB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -std=gnu11 -shared -fPIC -I$(XLSTUB_DIR) \
	    -o $@.tmp $(XLSTUB_SRC)
	$(if $(XLSTUB_LIBXL),sh $(XLSTUB_DIR)/check-imports.sh $@.tmp $(XLSTUB_LIBXL),@echo "xlstub: libxenlight.so.4.17 not found, import check skipped")
	mv $@.tmp $@
