/*
 * simxen stand-in for libxenctrl.so.4.17: the control calls the checkpoint
 * trampoline makes (interface, domain info, shutdown, HVM params).
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
    if (c->type == SIMXEN_PV) {
        errno = EINVAL;
        return -1;
    }
    /* HVM_PARAM_CALLBACK_IRQ (0): a PV-on-HVM guest has set up a vector
     * callback (type 2 in bits 63:56). */
    *value = (param == 0 && c->type == SIMXEN_PVHVM)
        ? ((uint64_t)2 << 56) | 0xf3 : 0;
    return 0;
}
