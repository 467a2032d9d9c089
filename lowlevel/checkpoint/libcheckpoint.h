/*
 * libcheckpoint: the C half of the checkpoint trampoline, on libxenguest
 * 4.17 (legacy-api.md §10, with the §10.8 adaptations).  No Python here:
 * checkpoint.c binds it and supplies the hooks.
 */
#ifndef LIBCHECKPOINT_H
#define LIBCHECKPOINT_H

/* xenctrl.h exposes the domctl types only to the tools. */
#ifndef __XEN_TOOLS__
#define __XEN_TOOLS__ 1
#endif

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/time.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenstore.h>
#include <xentoollog.h>

#include "capture.h"

/* What a hook returns: go on, stop (a falsy callback), or stop because the
 * binding stored an exception to re-raise once the guest runs again. */
enum cp_verdict { CP_EXCEPTION = -1, CP_STOP = 0, CP_GO = 1 };

struct cp_hooks {
    int (*suspend)(void *opaque);       /* after the guest is suspended */
    int (*postcopy)(void *opaque);      /* before it is resumed */
    int (*checkpoint)(void *opaque);    /* after resume; CP_GO = again */
    /* A wait on the start() thread saw EINTR: CP_EXCEPTION aborts it. */
    int (*interrupted)(void *opaque);
    void *opaque;
    /* HVM guests only (libxc's switch_qemu_logdirty): switch the device
     * model's log-dirty tracking on (1) or off (0); CP_GO when done.  NULL
     * for PV/PVH; start() refuses an HVM guest without it. */
    int (*logdirty)(void *opaque, unsigned int enable);
};

enum cp_stop { CP_RUNNING, CP_STOPPED, CP_FAILED, CP_RAISED };

/* What open() found: a PV guest, an HVM container without emulated
 * platform devices (PVH), or an HVM guest whose PC platform a device model
 * (qemu-xen) completes; that one is suspended and resumed as libxl does,
 * and its caller saves the device model (hooks->logdirty is required). */
enum cp_guest { CP_GUEST_NONE, CP_GUEST_PV, CP_GUEST_PVH, CP_GUEST_HVM };

/* How an HVM guest is suspended, decided per suspend as libxl does. */
enum cp_hvm_suspend { CP_HVM_EVTCHN, CP_HVM_XENSTORE, CP_HVM_HYPERCALL };

/* The log-dirty probe: not run yet, passed (the guest can be
 * checkpointed on this hypervisor). */
enum cp_probe { CP_PROBE_NOT_RUN, CP_PROBE_OK };

struct cp_state;
struct cp_logger {
    xentoollog_logger vtable;           /* first: libxc sees only this */
    struct cp_state *cp;
};

struct cp_state {
    xc_interface *xch;
    struct xs_handle *xsh;
    xenevtchn_handle *xce;
    struct cp_logger logger;
    uint32_t domid;
    int opened;
    enum cp_guest guest;
    enum cp_probe probed;
    int local_port;                     /* suspend evtchn, -1: xenstore */
    int offered_port;                   /* the guest's evtchn port, -1: none */
    int announced;                      /* suspend path said (at first save) */
    int lockfd;
    int watching;
    char token[16];
    unsigned int suspend_timeout_ms;

    pthread_mutex_t lock;               /* suspend/resume, from 2 threads */
    int suspended;                      /* by us, and not yet resumed */

    /* timer mode (interval > 0): a thread suspends every interval ms, but
     * only once the save thread asks for the next epoch (ready_sem) */
    unsigned int interval_ms;
    int timer_armed;
    pthread_t timer_thread;
    int timerfd, stopfd;
    sem_t suspended_sem, resumed_sem, ready_sem;
    volatile int timer_done;
    int timer_rc;

    /* the write deadline (ms, 0: none): a checkpoint's writes, from the
     * end of the guest's suspension to postcopy, must be done by then, and
     * no single write may block longer (SO_SNDTIMEO); stream sockets only */
    unsigned int write_timeout_ms;
    int wd_armed;
    pthread_t wd_thread;
    int wd_stopfd, wd_fd;               /* wd_fd: the socket, -1: none */
    struct timeval wd_old_sndtimeo;
    int64_t wd_epoch_start;             /* ms; 0: libxc is not in an epoch */
    int64_t wd_fired;                   /* ms the epoch had run when shut */
    int wd_write_eagain;                /* a libxc write hit SO_SNDTIMEO */
    int wd_sending;                     /* the deadline runs on a capture's
                                           transmission, the guest running */

    /* local capture during the pause (capture.h): off unless asked for */
    struct cp_capture cap;

    /* one start() */
    const struct cp_hooks *hooks;
    pthread_t save_thread;
    enum cp_stop stop;
    int quiet;                          /* libxc's "Save failed" is ours */

    /* the error start()/open()/close() report: the first one wins */
    char errstr[512];
    int err_errno;
    int has_err;
    char xcerr[256];
    int xcerr_errno;
};

void cp_init(struct cp_state *cp);
void cp_destroy(struct cp_state *cp);
void cp_clear_error(struct cp_state *cp);

int cp_open(struct cp_state *cp, uint32_t domid);
void cp_close(struct cp_state *cp);
/* "pv", "pvh", "hvm", or NULL when not open. */
const char *cp_guest_name(const struct cp_state *cp);
/* "evtchn", "xenstore", "hypercall" (an HVM guest without PV drivers:
 * xc_domain_shutdown(SHUTDOWN_suspend)), or NULL when not open.  For an
 * HVM guest it is what the next suspend would use (its PV drivers may
 * come and go). */
const char *cp_suspend_path(struct cp_state *cp);
/* Can this guest be checkpointed on this hypervisor?  Asks for the
 * hypervisor's build capabilities, then switches the guest's log-dirty
 * mode on and off again (never off when someone else had switched it on);
 * touches nothing else, the guest keeps running.  Runs once per open():
 * cp_save() calls it too.  0, or -1 with the error set (EOPNOTSUPP: the
 * hypervisor cannot track a PV guest's dirty pages: no shadow paging). */
int cp_probe(struct cp_state *cp);
/* Resume the guest if it is suspended (by us, or as Xen says). */
int cp_ensure_running(struct cp_state *cp);
/* xc_domain_save in Remus mode; returns 0 or -1 with the error set.  On
 * return the guest is running (or the error says why it is not).  With
 * write_timeout_ms set and a socket fd, a backup that stops taking the
 * stream fails it with ETIMEDOUT instead of holding the guest suspended.
 * With cp->cap.enabled, libxc writes each epoch into memory while the guest
 * is suspended and the epoch is sent to fd once it runs again, before the
 * checkpoint hook (capture.h). */
int cp_save(struct cp_state *cp, int fd, unsigned int interval_ms,
            unsigned int flags, const struct cp_hooks *hooks);

#endif
