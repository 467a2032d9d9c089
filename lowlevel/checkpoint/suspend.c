/*
 * libcheckpoint, the guest's side: the clock and bounded waits, the
 * guest's state, suspending and resuming it (event channel, xenstore, or
 * the hypervisor's shutdown/suspend for an HVM guest without PV drivers),
 * what kind of guest it is and how it is suspended, and the log-dirty
 * probe.  Written for xen-remus-compat.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libcheckpoint.h"
#include "cpinternal.h"

#include <xenguest.h>
#include <xen/hvm/params.h>
#include <xen/sched.h>

/* ----------------------------------------------------------------- time */

int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();

    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* EINTR during a wait: on the start() thread Python may want to raise.
 * Returns 1 when the wait should be abandoned. */
int interrupted(struct cp_state *cp)
{
    if (!cp->hooks || !pthread_equal(pthread_self(), cp->save_thread))
        return 0;
    if (cp->stop == CP_RAISED)
        return 1;
    if (cp->hooks->interrupted(cp->hooks->opaque) == CP_EXCEPTION) {
        cp->stop = CP_RAISED;
        cp->quiet = 1;
        return 1;
    }
    return 0;
}

/* Poll one fd until readable or the deadline.  An interruption that Python
 * turns into an exception is recorded but, when @finish is set, the wait
 * goes on: a suspend already requested cannot be recalled, and the exit
 * path must find the guest suspended to resume it. */
int wait_readable(struct cp_state *cp, int fd, int64_t deadline,
                         int finish)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int rc = poll(&p, 1, remaining_ms(deadline));

        if (rc > 0)
            return 0;
        if (rc == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
        if (interrupted(cp) && !finish)
            return -EINTR;
    }
}

/* ---------------------------------------------------------- guest state */

enum gstate { G_GONE = -2, G_ERROR = -1, G_RUNNING = 0, G_SUSPENDED = 1,
              G_SHUTDOWN = 2 };

static enum gstate guest_state(struct cp_state *cp, unsigned int *reason)
{
    xc_dominfo_t info;
    int n = xc_domain_getinfo(cp->xch, cp->domid, 1, &info);

    if (n < 0)
        return G_ERROR;
    /* A domain being destroyed (xl destroy: dying, not shut down) will never
     * suspend: say so at once, so the stream ends and the backup fails over
     * now instead of after the suspend timeout. */
    if (n == 0 || info.domid != cp->domid || info.dying)
        return G_GONE;
    if (!info.shutdown)
        return G_RUNNING;
    if (reason)
        *reason = info.shutdown_reason;
    return info.shutdown_reason == SHUTDOWN_suspend ? G_SUSPENDED : G_SHUTDOWN;
}

void drain_watches(struct cp_state *cp)
{
    char **vec;

    while ((vec = xs_check_watch(cp->xsh)))
        free(vec);
}

/* ------------------------------------------------------ suspend, resume */

/* How often a suspend wait looks at the domain's state (ms). */
#define STATE_POLL_MS 100

static int64_t slice_end(int64_t deadline)
{
    int64_t slice = now_ms() + STATE_POLL_MS;
    return slice < deadline ? slice : deadline;
}

/* Whether a requested suspension is over: 0 suspended, -1 it failed (the
 * guest shut down or went away instead, with the error set), 1 the guest
 * still runs. */
static int suspend_outcome(struct cp_state *cp)
{
    unsigned int reason = 0;

    switch (guest_state(cp, &reason)) {
    case G_SUSPENDED:
        return 0;
    case G_SHUTDOWN:
        set_error(cp, 0, "domain %u shut down (reason %u) instead of "
                  "suspending", cp->domid, reason);
        return -1;
    case G_GONE:
        set_error(cp, ESRCH, "domain %u disappeared while suspending",
                  cp->domid);
        return -1;
    case G_ERROR:
        set_error(cp, errno, "error getting info for domain %u", cp->domid);
        return -1;
    case G_RUNNING:
        break;
    }
    return 1;
}

static int suspend_evtchn(struct cp_state *cp)
{
    int64_t deadline = now_ms() + cp->suspend_timeout_ms;
    int rc;

    if (xenevtchn_notify(cp->xce, (evtchn_port_t)cp->local_port) < 0) {
        set_error(cp, errno, "failed to notify suspend event channel %d",
                  cp->local_port);
        return -1;
    }
    for (;;) {
        /* in slices, so that a domain destroyed meanwhile is seen at once */
        rc = wait_readable(cp, xenevtchn_fd(cp->xce), slice_end(deadline), 1);
        if (rc == -ETIMEDOUT && now_ms() < deadline) {
            if (guest_state(cp, NULL) == G_GONE) {
                set_error(cp, ESRCH, "domain %u disappeared while suspending",
                          cp->domid);
                return -1;
            }
            continue;
        }
        break;
    }
    if (rc) {
        set_error(cp, -rc, "domain %u did not suspend within %u ms "
                  "(event channel)", cp->domid, cp->suspend_timeout_ms);
        return -1;
    }
    if (xc_await_suspend(cp->xch, cp->xce, cp->local_port) < 0) {
        set_error(cp, errno, "error waiting for domain %u to suspend",
                  cp->domid);
        return -1;
    }
    return 0;
}

/* Withdraw a request the guest has not picked up; 1 if it had. */
static int withdraw_request(struct cp_state *cp, const char *path)
{
    for (;;) {
        xs_transaction_t t = xs_transaction_start(cp->xsh);
        unsigned int len;
        char *v;
        int picked_up;

        if (t == XBT_NULL)
            return 1;
        v = xs_read(cp->xsh, t, path, &len);
        picked_up = !v || strcmp(v, "suspend");
        free(v);
        if (!picked_up)
            xs_write(cp->xsh, t, path, "", 0);
        if (xs_transaction_end(cp->xsh, t, false))
            return picked_up;
        if (errno != EAGAIN)
            return 1;
    }
}

static int suspend_xenstore(struct cp_state *cp)
{
    int64_t deadline = now_ms() + cp->suspend_timeout_ms;
    int done;
    char path[64];

    snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
             cp->domid);
    drain_watches(cp);
    if (!xs_write(cp->xsh, XBT_NULL, path, "suspend", 7)) {
        set_error(cp, errno, "error writing 'suspend' to %s", path);
        return -1;
    }
    for (;;) {
        int rc;

        if ((done = suspend_outcome(cp)) != 1)
            return done;
        /* @releaseDomain fires on every domain state change, but not for a
         * domain destroyed while we still map its memory (it stays dying):
         * look again every slice. */
        rc = wait_readable(cp, xs_fileno(cp->xsh), slice_end(deadline), 0);
        if (rc == 0) {
            drain_watches(cp);
            continue;
        }
        if (rc == -ETIMEDOUT && now_ms() < deadline)
            continue;
        if (!withdraw_request(cp, path)) {
            if (rc == -EINTR)
                set_error(cp, EINTR, "suspend request to domain %u withdrawn: "
                          "interrupted", cp->domid);
            else
                set_error(cp, -rc, "domain %u did not answer the xenstore "
                          "suspend request within %u ms (request withdrawn)",
                          cp->domid, cp->suspend_timeout_ms);
            return -1;
        }
        /* The guest took the request: it will suspend; let it finish. */
        if (rc == -EINTR) {
            deadline = now_ms() + cp->suspend_timeout_ms;
            continue;
        }
        if (guest_state(cp, NULL) == G_SUSPENDED)
            return 0;
        set_error(cp, ETIMEDOUT, "domain %u took the suspend request but did "
                  "not suspend within %u ms", cp->domid,
                  cp->suspend_timeout_ms);
        return -1;
    }
}

/* libxl_dom_suspend.c (domain_suspend_callback_common), for an HVM guest,
 * asked again at every suspend (PV drivers load and unload): its suspend
 * event channel when we hold one and the guest is in ACPI S0; else the
 * hypervisor's shutdown/suspend when it has no PV drivers (no
 * HVM_PARAM_CALLBACK_IRQ) or sleeps in an S state; else its PV drivers'
 * xenstore control/shutdown node.  Unreadable parameters count as 0, as
 * in libxl. */
enum cp_hvm_suspend hvm_suspend_path(struct cp_state *cp)
{
    uint64_t pvdrv = 0, s_state = 0;

    if (xc_hvm_param_get(cp->xch, cp->domid, HVM_PARAM_CALLBACK_IRQ, &pvdrv))
        pvdrv = 0;
    if (xc_hvm_param_get(cp->xch, cp->domid, HVM_PARAM_ACPI_S_STATE,
                         &s_state))
        s_state = 0;
    if (!s_state && cp->local_port >= 0)
        return CP_HVM_EVTCHN;
    if (!pvdrv || s_state)
        return CP_HVM_HYPERCALL;
    return CP_HVM_XENSTORE;
}

/* xc_domain_shutdown(SHUTDOWN_suspend): the guest takes no part, Xen
 * pauses it and marks it suspended; wait (bounded) for the state change on
 * the @releaseDomain watch.  The request cannot be withdrawn, so an
 * interruption lets it finish. */
static int suspend_hypercall(struct cp_state *cp)
{
    int64_t deadline = now_ms() + cp->suspend_timeout_ms;
    int rc, done;

    drain_watches(cp);
    if (xc_domain_shutdown(cp->xch, cp->domid, SHUTDOWN_suspend) < 0) {
        set_error(cp, errno, "xc_domain_shutdown(SHUTDOWN_suspend) failed "
                  "for HVM domain %u", cp->domid);
        return -1;
    }
    for (;;) {
        if ((done = suspend_outcome(cp)) != 1)
            return done;
        rc = wait_readable(cp, xs_fileno(cp->xsh), deadline, 1);
        if (rc) {
            set_error(cp, -rc, "domain %u did not suspend within %u ms "
                      "(xc_domain_shutdown)", cp->domid,
                      cp->suspend_timeout_ms);
            return -1;
        }
        drain_watches(cp);
    }
}

static int suspend_hvm(struct cp_state *cp)
{
    switch (hvm_suspend_path(cp)) {
    case CP_HVM_EVTCHN:
        return suspend_evtchn(cp);
    case CP_HVM_HYPERCALL:
        return suspend_hypercall(cp);
    case CP_HVM_XENSTORE:
    default:
        return suspend_xenstore(cp);
    }
}

int cp_suspend(struct cp_state *cp)
{
    int rc = 0;

    pthread_mutex_lock(&cp->lock);
    switch (guest_state(cp, NULL)) {
    case G_SUSPENDED:
        fprintf(stderr, "domain %u already suspended?\n", cp->domid);
        cp->suspended = 1;
        goto out;
    case G_RUNNING:
        break;
    case G_GONE:
        set_error(cp, ESRCH, "domain %u no longer exists", cp->domid);
        rc = -1;
        goto out;
    default:
        set_error(cp, errno, "error getting info for domain %u", cp->domid);
        rc = -1;
        goto out;
    }
    prof("suspending");
    if (cp->guest == CP_GUEST_HVM)
        rc = suspend_hvm(cp);
    else
        rc = cp->local_port >= 0 ? suspend_evtchn(cp) : suspend_xenstore(cp);
    if (rc == 0)
        cp->suspended = 1;
 out:
    pthread_mutex_unlock(&cp->lock);
    return rc;
}

int cp_resume(struct cp_state *cp)
{
    pthread_mutex_lock(&cp->lock);
    /* Fast (cooperative) resume: the guest's suspend hypercall returns
     * "cancelled" and it carries on where it was (legacy-api.md §10.5). */
    if (xc_domain_resume(cp->xch, cp->domid, 1)) {
        set_error(cp, errno, "error resuming domain %u", cp->domid);
        pthread_mutex_unlock(&cp->lock);
        return -1;
    }
    prof("resumed");
    if (!xs_resume_domain(cp->xsh, cp->domid))
        fprintf(stderr, "error resuming domain %u in xenstore\n", cp->domid);
    cp->suspended = 0;
    pthread_mutex_unlock(&cp->lock);
    if (cp->timer_armed)
        sem_post(&cp->resumed_sem);
    return 0;
}

int cp_ensure_running(struct cp_state *cp)
{
    int attempt;

    if (!cp->opened)
        return 0;
    for (attempt = 0; attempt < 2; attempt++) {
        enum gstate st = guest_state(cp, NULL);

        if (st == G_GONE || (st == G_RUNNING && !cp->suspended))
            return 0;
        if (st == G_SHUTDOWN) {
            cp->suspended = 0;
            return 0;
        }
        if (cp_resume(cp) == 0)
            return 0;
    }
    return -1;
}

/* --------------------------------------------- guest kind, suspend path */

const char *cp_guest_name(const struct cp_state *cp)
{
    if (!cp->opened)
        return NULL;
    return cp->guest == CP_GUEST_HVM ? "hvm"
        : cp->guest == CP_GUEST_PVH ? "pvh" : "pv";
}

const char *cp_suspend_path(struct cp_state *cp)
{
    if (!cp->opened)
        return NULL;
    if (cp->guest == CP_GUEST_HVM) {
        switch (hvm_suspend_path(cp)) {
        case CP_HVM_EVTCHN:
            return "evtchn";
        case CP_HVM_HYPERCALL:
            return "hypercall";
        default:
            return "xenstore";
        }
    }
    return cp->local_port >= 0 ? "evtchn" : "xenstore";
}

/* ------------------------------------------------------ log-dirty probe */

#define NO_SHADOW_ADVICE \
    "protect a PVH or HVM guest instead, or boot a Xen hypervisor built " \
    "with CONFIG_SHADOW_PAGING=y"

static void no_shadow_error(struct cp_state *cp)
{
    set_error(cp, EOPNOTSUPP, "cannot checkpoint PV domain %u: this Xen "
              "hypervisor was built without shadow paging "
              "(CONFIG_SHADOW_PAGING is not set), which tracking a PV "
              "guest's dirty memory needs; " NO_SHADOW_ADVICE, cp->domid);
}

/*
 * Checkpointing needs the hypervisor's log-dirty mode: shadow paging for a
 * PV guest, HAP (or shadow) for a PVH one.  Debian's stock 4.17 hypervisor
 * has no shadow paging, and libxc would find out only after the stream has
 * started (its "Failed to enable logdirty: 95,22,0").  The hypervisor says
 * whether it was built with shadow paging (XEN_SYSCTL_PHYSCAP_shadow is set
 * iff CONFIG_SHADOW_PAGING); then log-dirty mode is switched on and off
 * once, as xc_domain_save would switch it on, which also finds what the
 * build flag cannot (a guest whose memory is shared with an IOMMU, a save
 * of it already running).  A mode we did not switch on is never switched
 * off.
 */
int cp_probe(struct cp_state *cp)
{
    xc_physinfo_t pi;
    int e;

    if (!cp->opened) {
        set_error(cp, 0, "checkpoint state not opened");
        return -1;
    }
    if (cp->probed == CP_PROBE_OK)
        return 0;
    memset(&pi, 0, sizeof(pi));
    if (cp->guest == CP_GUEST_PV && xc_physinfo(cp->xch, &pi) == 0 &&
        !(pi.capabilities & XEN_SYSCTL_PHYSCAP_shadow)) {
        no_shadow_error(cp);
        return -1;
    }
    if (xc_shadow_control(cp->xch, cp->domid,
                          XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) < 0) {
        e = errno;
        if (cp->guest == CP_GUEST_PV && (e == EOPNOTSUPP || e == ENOSYS))
            no_shadow_error(cp);
        else if (e == EINVAL && cp->guest == CP_GUEST_PV)
            set_error(cp, e, "cannot checkpoint PV domain %u: the hypervisor "
                      "refused to track its dirty memory (log-dirty mode: "
                      "%s): a save, migration or Remus of it may be running "
                      "already; otherwise this hypervisor lacks shadow "
                      "paging (CONFIG_SHADOW_PAGING): " NO_SHADOW_ADVICE,
                      cp->domid, strerror(e));
        else if (e == EINVAL)
            set_error(cp, e, "cannot checkpoint %s domain %u: the hypervisor "
                      "refused to track its dirty memory (log-dirty mode: "
                      "%s): a save, migration or Remus of it may be running "
                      "already, or it has passed-through devices",
                      cp->guest == CP_GUEST_HVM ? "HVM" : "PVH", cp->domid,
                      strerror(e));
        else
            set_error(cp, e, "could not switch on log-dirty mode for domain "
                      "%u", cp->domid);
        return -1;
    }
    if (xc_shadow_control(cp->xch, cp->domid, XEN_DOMCTL_SHADOW_OP_OFF,
                          NULL, 0) < 0) {
        set_error(cp, errno, "could not switch log-dirty mode of domain %u "
                  "off again after probing it", cp->domid);
        return -1;
    }
    cp->probed = CP_PROBE_OK;
    return 0;
}
