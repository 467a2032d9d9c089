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

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenstore.h>
#include <xentoollog.h>

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
};

enum cp_stop { CP_RUNNING, CP_STOPPED, CP_FAILED, CP_RAISED };

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
    int local_port;                     /* suspend evtchn, -1: xenstore */
    int lockfd;
    int watching;
    char token[16];
    unsigned int suspend_timeout_ms;

    pthread_mutex_t lock;               /* suspend/resume, from 2 threads */
    int suspended;                      /* by us, and not yet resumed */

    /* timer mode (interval > 0): a thread suspends every interval ms */
    unsigned int interval_ms;
    int timer_armed;
    pthread_t timer_thread;
    int timerfd, stopfd;
    sem_t suspended_sem, resumed_sem;
    volatile int timer_done;
    int timer_rc;

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
/* Resume the guest if it is suspended (by us, or as Xen says). */
int cp_ensure_running(struct cp_state *cp);
/* xc_domain_save in Remus mode; returns 0 or -1 with the error set.  On
 * return the guest is running (or the error says why it is not). */
int cp_save(struct cp_state *cp, int fd, unsigned int interval_ms,
            unsigned int flags, const struct cp_hooks *hooks);

#endif
