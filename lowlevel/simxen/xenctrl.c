/*
 * simxen stand-in for libxenctrl.so.4.17: the control calls the checkpoint
 * trampoline makes (interface, domain info, shutdown, HVM params, physinfo,
 * log-dirty mode).
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>

#include "simxen.h"

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    struct xc_interface_core *xch;

    (void)dombuild_logger;
    (void)open_flags;
    if (simxen_init())
        return NULL;
    simxen_lock();
    if (simxen_fault(SIMXEN_FAULT_OPEN, 1)) {
        simxen_unlock();
        simxen_log(logger, XTL_ERROR, EACCES,
                   "Could not obtain handle on privileged command interface");
        errno = EACCES;
        return NULL;
    }
    simxen_unlock();
    xch = calloc(1, sizeof(*xch));
    if (!xch)
        return NULL;
    xch->magic = SIMXEN_XCH_MAGIC;
    xch->logger = logger;
    return xch;
}

int xc_interface_close(xc_interface *xch)
{
    if (xch)
        xch->magic = 0;
    free(xch);
    return 0;
}

static void fill_info(uint32_t domid, xc_dominfo_t *info)
{
    const struct simxen_config *c = simxen_config();
    int is_guest = domid == c->domid;
    int down = is_guest && simxen_is_suspended();
    uint64_t pages = is_guest ? c->pages : 262144;
    unsigned int i;

    memset(info, 0, sizeof(*info));
    info->domid = domid;
    info->shutdown = down;
    info->shutdown_reason = down ? SHUTDOWN_suspend : 0;
    info->running = !down;
    info->hvm = is_guest && c->type != SIMXEN_PV;
    info->hap = info->hvm;
    /* What libxl asks Xen to emulate: nothing for PV, the local APIC for
     * PVH, the whole PC platform for HVM (libxl_x86.c). */
    if (info->hvm)
        info->arch_config.emulation_flags = c->type == SIMXEN_PVH
            ? XEN_X86_EMU_LAPIC : (XEN_X86_EMU_ALL & ~XEN_X86_EMU_VPCI);
    info->xenstore = 1;
    info->nr_pages = pages;
    info->max_memkb = pages * (SIMXEN_PAGE_SIZE / 1024);
    info->shared_info_frame = 0x1000 + domid;
    info->cpu_time = simxen_now_ns();
    info->nr_online_vcpus = is_guest ? c->vcpus : 2;
    info->max_vcpu_id = info->nr_online_vcpus - 1;
    for (i = 0; i < sizeof(info->handle); i++)
        info->handle[i] = (uint8_t)(is_guest ? (c->seed >> (8 * (i % 8))) ^ i
                                             : 0);
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
    uint32_t ids[2];
    unsigned int n = 0, i;

    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    simxen_lock();
    ids[0] = SIMXEN_DOM0;
    ids[1] = simxen_config()->domid;
    for (i = 0; i < 2 && n < max_doms; i++)
        if (ids[i] >= first_domid && simxen_domain_exists(ids[i]))
            fill_info(ids[i], &info[n++]);
    simxen_unlock();
    return (int)n;
}

int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason)
{
    int rc = 0;

    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    simxen_lock();
    if (domid != simxen_config()->domid || !simxen_domain_exists(domid)) {
        errno = ESRCH;
        rc = -1;
    } else if (reason != SHUTDOWN_suspend) {
        /* Only suspension is simulated; a destroyed guest cannot resume. */
        errno = EOPNOTSUPP;
        rc = -1;
    } else {
        simxen_request_suspend("shutdown hypercall");
    }
    simxen_unlock();
    return rc;
}

int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param,
                     uint64_t *value)
{
    const struct simxen_config *c;

    if (!handle || handle->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    c = simxen_config();
    if (dom != c->domid) {
        errno = ESRCH;
        return -1;
    }
    return simxen_hvm_param(param, value);
}

/* The simulated host: 2 CPUs, 1 GiB, PV and HVM with HAP; shadow paging
 * unless SIMXEN_NO_SHADOW=1 (Xen sets XEN_SYSCTL_PHYSCAP_shadow iff it was
 * built with CONFIG_SHADOW_PAGING). */
int xc_physinfo(xc_interface *xch, xc_physinfo_t *info)
{
    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->cpu_khz = 2400000;
    info->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_pv |
        XEN_SYSCTL_PHYSCAP_hap |
        (simxen_config()->shadow_paging ? XEN_SYSCTL_PHYSCAP_shadow : 0);
    info->total_pages = 262144;
    info->free_pages = 131072;
    info->max_mfn = 262143;
    return 0;
}

/* Log-dirty mode on and off; other shadow ops are not simulated. */
int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop,
                      unsigned int *mb, unsigned int mode)
{
    int rc;

    (void)mode;
    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    simxen_lock();
    if (domid != simxen_config()->domid || !simxen_domain_exists(domid)) {
        errno = ESRCH;
        rc = -1;
    } else if (sop == XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY) {
        rc = simxen_logdirty(1);
    } else if (sop == XEN_DOMCTL_SHADOW_OP_OFF) {
        rc = simxen_logdirty(0);
    } else {
        errno = EINVAL;
        rc = -1;
    }
    simxen_unlock();
    if (rc == 0 && mb)
        *mb = 0;
    return rc;
}
