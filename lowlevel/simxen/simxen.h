/*
 * simxen: a simulated Xen for hosts without a hypervisor.
 *
 * One simulated x86 domain (PV, PVH, or HVM with a device model) lives
 * inside the process that loads the
 * stand-in libraries (libxenctrl, libxenguest, libxenstore, libxenevtchn,
 * each with its real SONAME and symbol version).  This header is the
 * interface between those stand-ins and the shared core (libsimxen.so.0).
 *
 * The domain is configured from SIMXEN_* environment variables (see
 * docs/decisions.d/trampoline.md and xen_remus_compat/simxen.py).  It
 * records its run state and, per checkpoint, its page-version vector under
 * SIMXEN_STATE_DIR so that a verifier can rebuild the primary's memory.
 *
 * Page contents follow the contract of xen_remus_compat/stream/simpage.py:
 * page(pfn, version) = pfn (LE u64), version (LE u64), then bytes 16..4095
 * of bytes(range(256)) rotated left by (pfn*7+version) & 0xff, repeated.
 */
#ifndef SIMXEN_H
#define SIMXEN_H

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include <xentoollog.h>

#define SIMXEN_PAGE_SIZE 4096u
#define SIMXEN_DOM0 0u
/* The guest's end of the suspend event channel (xenstore device/suspend). */
#define SIMXEN_SUSPEND_REMOTE_PORT 7

/* pv: x86 PV.  hvm, pvhvm: HVM containers emulating the whole PC platform,
 * with a device model (pvhvm: with PV drivers).  pvh: an HVM container
 * emulating only the local APIC, no device model, no suspend event channel
 * by default (a Linux 6.1 PVH guest offers none). */
enum simxen_type { SIMXEN_PV, SIMXEN_HVM, SIMXEN_PVHVM, SIMXEN_PVH };
enum simxen_pattern { SIMXEN_RANDOM, SIMXEN_SEQUENTIAL, SIMXEN_HOTSPOT };
enum simxen_fault {
    SIMXEN_FAULT_OPEN,      /* xc_interface_open fails (EACCES)            */
    SIMXEN_FAULT_SUSPEND,   /* the guest ignores the N-th suspend request  */
    SIMXEN_FAULT_WRITE,     /* writing the stream fails (EIO) in epoch N   */
    SIMXEN_FAULT_RESUME,    /* resuming after the N-th suspension fails once */
    SIMXEN_FAULT_COUNT
};

struct simxen_config {
    uint32_t domid;
    char name[64];
    uint64_t pages;
    unsigned int vcpus;
    double dirty_rate;              /* pages dirtied per ms of run time */
    enum simxen_pattern pattern;
    uint64_t seed;
    char state_dir[1024];           /* "" = record nothing */
    int suspend_evtchn;             /* 1: offer the suspend event channel */
    enum simxen_type type;
    int shadow_paging;              /* 0: the hypervisor has no shadow
                                     * paging (SIMXEN_NO_SHADOW=1): PV
                                     * log-dirty mode fails, as on Debian's
                                     * stock 4.17 hypervisor */
};

/* The simulated HVM container's special pages (the last 8 pages of its
 * memory, in the order of libxenguest's SPECIALPAGE_* indexes). */
#define SIMXEN_SPECIAL_PAGES 8u

/* What the stand-in libraries see of xc_interface. */
struct xc_interface_core {
    uint32_t magic;
    xentoollog_logger *logger;
};
#define SIMXEN_XCH_MAGIC 0x53584348u

/* Start-up: parse the environment once; -1 with errno if simxen refuses. */
int simxen_init(void);
const struct simxen_config *simxen_config(void);

/* One big lock around the simulated machine. */
void simxen_lock(void);
void simxen_unlock(void);

/* Fault injection: is there a fault of @kind for @n?  Consumed once. */
int simxen_fault(enum simxen_fault kind, uint64_t n);

/* Is the guest an HVM container (hvm, pvhvm, pvh)?  Has it a device model
 * (hvm, pvhvm)?  Lock not needed. */
int simxen_is_hvm_container(void);
int simxen_has_device_model(void);
/* The guest's HVM parameter @index (0 when unset); -1 + EINVAL for a PV
 * guest.  Lock not needed. */
int simxen_hvm_param(uint32_t index, uint64_t *value);

/* Log-dirty mode (XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY / _OFF) as the
 * hypervisor answers it: a PV guest needs shadow paging (EOPNOTSUPP to
 * enable, EINVAL to switch off without it); enabling it twice is EINVAL.
 * 0 or -1 + errno; recorded in logdirty.log.  Call with the lock held. */
int simxen_logdirty(int enable);
int simxen_logdirty_enabled(void);

/* Domain model (call with the lock held unless stated). */
int simxen_domain_exists(uint32_t domid);
/* Destroy the guest (``xl destroy``): it vanishes; for failover tests. */
int simxen_destroy(uint32_t domid);
int simxen_is_suspended(void);
uint64_t simxen_now_ns(void);              /* CLOCK_MONOTONIC */
void simxen_advance(void);                 /* dirty pages for elapsed run time */
const uint64_t *simxen_versions(void);
/* Copy the dirty bitmap to @dst (may be NULL) and clear it; returns the
 * number of dirty pages.  @all marks every page dirty first. */
uint64_t simxen_take_dirty(uint64_t *dst, int all);
/* Guest-side reactions.  request_suspend: 0 done, -1 ignored (fault). */
int simxen_request_suspend(const char *how);
int simxen_resume(int fast);                /* -1 + errno on failure */
/* Record a checkpoint's versions (versions.log); 0 or -1 + errno. */
int simxen_record_checkpoint(uint64_t save, uint64_t n, uint64_t pages_sent);
uint64_t simxen_new_save(void);

/* Xenstore (lock held).  Values are NUL-terminated strings. */
const char *simxen_xs_get(const char *path);
int simxen_xs_set(const char *path, const char *value);
void simxen_xs_fire(const char *path);     /* fire watches on @path */
/* @fn for each child name of @dir (one level, each once); -1 when @dir
 * has neither a node nor children. */
int simxen_xs_children(const char *dir,
                       void (*fn)(const char *name, size_t len, void *arg),
                       void *arg);

/* Event channels: a guest-side notification for a bound local port. */
struct simxen_evtchn_sink {
    void (*deliver)(struct simxen_evtchn_sink *sink, uint32_t local_port);
    struct simxen_evtchn_sink *next;
    uint32_t local_port;            /* bound to the suspend channel */
};
void simxen_evtchn_subscribe(struct simxen_evtchn_sink *sink);
void simxen_evtchn_unsubscribe(struct simxen_evtchn_sink *sink);

/* Watches: every handle registers a sink; fire() calls matching ones. */
struct simxen_watch_sink {
    void (*fire)(struct simxen_watch_sink *sink, const char *path);
    struct simxen_watch_sink *next;
};
void simxen_watch_subscribe(struct simxen_watch_sink *sink);
void simxen_watch_unsubscribe(struct simxen_watch_sink *sink);

/* Logging through the caller's xentoollog logger (or stderr). */
void simxen_log(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
