/*
 * libxlstub.so -- lets Debian's real xl/libxenlight run without Xen.
 *
 * LD_PRELOADed into /usr/lib/xen-4.17/bin/xl (xl-side.md section 7).  This
 * file answers the few libxenctrl/libxenstore calls that xl's parsers need
 * with the facts of a small, empty, imaginary host: Xen 4.17, one NUMA
 * node, four CPUs, PV and HVM capable, no domains at all.  Every other
 * function libxenlight imports from libxenctrl, libxenguest and
 * libxenstore is defined in
 * xlstub_deny.c and fails; nothing here ever reports that a domain exists.
 *
 * Why the handles are dummies: the real xc_interface_open() needs
 * /dev/xen/privcmd and xs_open() needs xenstored.  Once we hand out a
 * dummy handle, no real libxenctrl/libxenstore function may ever see it,
 * which is why the deny list must cover every import (checked by
 * check-imports.sh at build time).
 */
#define _GNU_SOURCE             /* program_invocation_short_name */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>
#include <xenstore.h>

#include "xlstub.h"

/* The imaginary host (xl-side.md section 7). */
#define STUB_XEN_MAJOR      4
#define STUB_XEN_MINOR      17
#define STUB_PAGESIZE       4096
#define STUB_NR_CPUS        4
#define STUB_NR_NODES       1
#define STUB_TOTAL_PAGES    (4ULL << 18)   /* 4 GiB of 4 KiB pages */

/*
 * Opaque to libxenlight: it only stores and passes these pointers.  They are
 * distinct, never NULL, and never dereferenced by anyone (see above).
 */
static unsigned char dummy_xc_handle[64];
static unsigned char dummy_xs_handle[64];

/*
 * Only xl itself gets a handle.  LD_PRELOAD is inherited by whatever xl
 * would spawn (libxl-save-helper, hotplug scripts and their xenstore
 * tools); those link libxenctrl/libxenguest directly and would hand the
 * dummy to real functions this stub does not cover.  For them the open
 * fails as it would on a host without Xen.
 *
 * Test-only override: XLSTUB_ALLOW=<name> also lets a process whose
 * program name (basename of argv[0]) is exactly <name> have the handles,
 * e.g. a Python interpreter driving libxenlight through ctypes
 * (tests/conformance/test_libxl_binding.py).  The first process with that
 * name to load the stub takes the allowance and removes the variable from
 * its environment, so nothing it spawns inherits it: its children are
 * refused like any non-xl process.  Processes of other names leave the
 * variable alone (a shell between the test and the allowed program does
 * not consume it).  Deny-by-default is unchanged without the variable.
 */
#define XLSTUB_ALLOW_ENV "XLSTUB_ALLOW"

static int allow_this_process;

__attribute__((constructor))
static void take_allowance(void)
{
    const char *want = getenv(XLSTUB_ALLOW_ENV);

    if (want == NULL || *want == '\0' ||
        strcmp(want, program_invocation_short_name) != 0)
        return;
    allow_this_process = 1;
    unsetenv(XLSTUB_ALLOW_ENV);
    xlstub_trace(XLSTUB_ALLOW_ENV, "allowance taken by this process");
}

static int handle_allowed(const char *function)
{
    if (strcmp(program_invocation_short_name, "xl") == 0 || allow_this_process)
        return 1;
    xlstub_trace(function, "refused: not xl");
    errno = ENOSYS;
    return 0;
}

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    if (!handle_allowed("xc_interface_open"))
        return NULL;
    xlstub_trace("xc_interface_open", "dummy handle");
    return (xc_interface *)dummy_xc_handle;
}

int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    return 0;
}

struct xs_handle *xs_open(unsigned long flags)
{
    (void)flags;
    if (!handle_allowed("xs_open"))
        return NULL;
    xlstub_trace("xs_open", "dummy handle");
    return (struct xs_handle *)dummy_xs_handle;
}

void xs_close(struct xs_handle *xsh)
{
    (void)xsh;
}

/* Size of the buffer each string/struct XENVER_* query fills in. */
static const struct {
    int cmd;
    size_t size;
} version_buffers[] = {
    { XENVER_extraversion,        sizeof(xen_extraversion_t) },
    { XENVER_compile_info,        sizeof(xen_compile_info_t) },
    { XENVER_capabilities,        sizeof(xen_capabilities_info_t) },
    { XENVER_changeset,           sizeof(xen_changeset_info_t) },
    { XENVER_platform_parameters, sizeof(xen_platform_parameters_t) },
    { XENVER_commandline,         sizeof(xen_commandline_t) },
};

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    size_t i;

    (void)xch;
    if (cmd == XENVER_version)
        return (STUB_XEN_MAJOR << 16) | STUB_XEN_MINOR;
    if (cmd == XENVER_pagesize)
        return STUB_PAGESIZE;
    for (i = 0; i < sizeof(version_buffers) / sizeof(version_buffers[0]); i++) {
        if (version_buffers[i].cmd == cmd) {
            if (arg)
                memset(arg, 0, version_buffers[i].size);
            return 0;
        }
    }
    /* build_id, get_features, guest_handle, anything newer. */
    xlstub_trace("xc_version", "-ENOSYS");
    return -ENOSYS;
}

int xc_get_max_cpus(xc_interface *xch)
{
    (void)xch;
    return STUB_NR_CPUS;
}

int xc_get_online_cpus(xc_interface *xch)
{
    (void)xch;
    return STUB_NR_CPUS;
}

int xc_get_max_nodes(xc_interface *xch)
{
    (void)xch;
    return STUB_NR_NODES;
}

int xc_physinfo(xc_interface *xch, xc_physinfo_t *info)
{
    (void)xch;
    if (!info) {
        errno = EINVAL;
        return -1;
    }
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = STUB_NR_CPUS;
    info->nr_cpus = STUB_NR_CPUS;
    info->max_cpu_id = STUB_NR_CPUS - 1;
    info->nr_nodes = STUB_NR_NODES;
    info->max_node_id = STUB_NR_NODES - 1;
    info->capabilities = XEN_SYSCTL_PHYSCAP_pv | XEN_SYSCTL_PHYSCAP_hvm;
    info->total_pages = STUB_TOTAL_PAGES;
    info->free_pages = STUB_TOTAL_PAGES;
    info->max_mfn = STUB_TOTAL_PAGES - 1;
    return 0;
}

/*
 * Memory queries that only read a counter answer 0 (an empty host);
 * anything that would change memory fails.
 */
static const unsigned int memory_queries[] = {
    XENMEM_maximum_ram_page,
    XENMEM_current_reservation,
    XENMEM_maximum_reservation,
    XENMEM_get_sharing_freed_pages,
    XENMEM_get_sharing_shared_pages,
};

long xc_memory_op(xc_interface *xch, unsigned int cmd, void *arg, size_t len)
{
    size_t i;

    (void)xch; (void)arg; (void)len;
    for (i = 0; i < sizeof(memory_queries) / sizeof(memory_queries[0]); i++)
        if (memory_queries[i] == cmd)
            return 0;
    xlstub_trace("xc_memory_op", "denied");
    errno = ENOSYS;
    return -1;
}

long xc_sharing_freed_pages(xc_interface *xch)
{
    (void)xch;
    return 0;
}

long xc_sharing_used_frames(xc_interface *xch)
{
    (void)xch;
    return 0;
}
