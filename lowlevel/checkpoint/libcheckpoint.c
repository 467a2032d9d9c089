/*
 * libcheckpoint: suspend, resume, the timer thread and the Remus save
 * loop of the checkpoint trampoline (legacy-api.md §10.2-10.5, adapted to
 * libxenguest 4.17 as §10.8 says).  Written for xen-remus-compat.
 *
 * Differences from the legacy library, on purpose:
 *  - every wait for the guest is bounded (suspend_timeout_ms), on both the
 *    event-channel and the xenstore path; a xenstore request the guest has
 *    not picked up is withdrawn on timeout;
 *  - timer mode uses a timerfd on a dedicated thread that blocks all
 *    signals itself, instead of SIGRTMIN blocked in the importing thread;
 *    and that thread suspends the guest only once the save loop is ready
 *    for the next epoch: a checkpoint still being sent or acknowledged
 *    (or a slow callback) delays the next one with the guest running,
 *    where the legacy timer suspended it regardless, out of sight of
 *    every pause measurement;
 *  - every exit path resumes a guest that is still suspended;
 *  - the error text is never NULL nor stale: the first error of an
 *    operation is kept, with its errno;
 *  - PVH guests (HVM containers without a device model) are checkpointed
 *    like PV ones, as libxl suspends and resumes them; HVM guests with a
 *    device model are suspended as libxl suspends them (event channel,
 *    else the hypervisor's shutdown/suspend when the guest has no PV
 *    drivers, else xenstore) and their caller saves the device model
 *    (the qemu log-dirty switch is bounced to it); a device model in a
 *    stub domain is refused;
 *  - a log-dirty probe tells, before anything is sent, a hypervisor that
 *    cannot track the guest's dirty memory (no shadow paging for PV);
 *  - with write_timeout_ms, a backup that stops taking the stream cannot
 *    hold the guest suspended: each epoch's writes have a deadline (see
 *    "write deadline" below);
 *  - with capture (capture.c), the guest's pause does not include the
 *    link: libxc writes the epoch into memory, sent once the guest runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "libcheckpoint.h"

#include <xenguest.h>
#include <xen/hvm/params.h>
#include <xen/sched.h>

#define INITIAL_WATCH_MS 500
/* how often the write watchdog looks at the clock outside an epoch */
#define WATCHDOG_TICK_MS 20

/* ---------------------------------------------------------------- errors */

static void set_error(struct cp_state *cp, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct cp_state *cp, int errnum, const char *fmt, ...)
{
    va_list ap;

    if (cp->has_err)
        return;
    va_start(ap, fmt);
    vsnprintf(cp->errstr, sizeof(cp->errstr), fmt, ap);
    va_end(ap);
    cp->err_errno = errnum;
    cp->has_err = 1;
}

void cp_clear_error(struct cp_state *cp)
{
    cp->has_err = 0;
    cp->err_errno = 0;
    cp->errstr[0] = '\0';
    cp->xcerr[0] = '\0';
    cp->xcerr_errno = 0;
}

/* libxc's messages: warnings and errors go to stderr unless we caused
 * them by stopping on purpose; the first error is kept for the report. */
static void log_vmessage(xentoollog_logger *lg, xentoollog_level level,
                         int errnoval, const char *context, const char *fmt,
                         va_list ap)
{
    struct cp_state *cp = ((struct cp_logger *)lg)->cp;
    char msg[256];

    if (level < XTL_WARN)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (level >= XTL_ERROR && !cp->xcerr[0]) {
        snprintf(cp->xcerr, sizeof(cp->xcerr), "%s", msg);
        cp->xcerr_errno = errnoval > 0 ? errnoval : 0;
    }
    /* a write that timed out (SO_SNDTIMEO) or was shut down by the
     * watchdog: cp_save() says so in one line */
    if (cp->wd_fd >= 0 && errnoval == EAGAIN && strcasestr(msg, "write"))
        cp->wd_write_eagain = 1;
    /* a write of the capture's drain thread failed first: libxc's write
     * into the pair failed because of it, cp_save() says why */
    if (cp->cap.armed && cap_error(&cp->cap))
        __atomic_store_n(&cp->quiet, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&cp->wd_write_eagain, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&cp->wd_fired, __ATOMIC_ACQUIRE))
        __atomic_store_n(&cp->quiet, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&cp->quiet, __ATOMIC_RELAXED))
        return;
    fprintf(stderr, "%s: %s: %s%s%s\n", context ? context : "xc",
            level >= XTL_ERROR ? "error" : "warning", msg,
            errnoval > 0 ? ": " : "", errnoval > 0 ? strerror(errnoval) : "");
}

static void log_destroy(xentoollog_logger *lg)
{
    (void)lg;
}

/* "PROF: <what> at S.UUUUUU" on stderr: log scrapers read these (§14.1). */
static void prof(const char *what)
{
    struct timeval tv;
    char line[80];
    int n;

    gettimeofday(&tv, NULL);
    n = snprintf(line, sizeof(line), "PROF: %s at %lld.%06ld\n", what,
                 (long long)tv.tv_sec, (long)tv.tv_usec);
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}

/* ----------------------------------------------------------------- time */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();

    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* EINTR during a wait: on the start() thread Python may want to raise.
 * Returns 1 when the wait should be abandoned. */
static int interrupted(struct cp_state *cp)
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
static int wait_readable(struct cp_state *cp, int fd, int64_t deadline,
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

static void drain_watches(struct cp_state *cp)
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
    unsigned int reason = 0;
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
            set_error(cp, errno, "error getting info for domain %u",
                      cp->domid);
            return -1;
        case G_RUNNING:
            break;
        }
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
static enum cp_hvm_suspend hvm_suspend_path(struct cp_state *cp)
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
    unsigned int reason = 0;
    int rc;

    drain_watches(cp);
    if (xc_domain_shutdown(cp->xch, cp->domid, SHUTDOWN_suspend) < 0) {
        set_error(cp, errno, "xc_domain_shutdown(SHUTDOWN_suspend) failed "
                  "for HVM domain %u", cp->domid);
        return -1;
    }
    for (;;) {
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
            set_error(cp, errno, "error getting info for domain %u",
                      cp->domid);
            return -1;
        case G_RUNNING:
            break;
        }
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

static int cp_suspend(struct cp_state *cp)
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

static int cp_resume(struct cp_state *cp)
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

/* --------------------------------------------------------------- timer */

static void *timer_main(void *arg)
{
    struct cp_state *cp = arg;

    for (;;) {
        struct pollfd p[2] = { { .fd = cp->timerfd, .events = POLLIN },
                               { .fd = cp->stopfd, .events = POLLIN } };
        uint64_t ticks;

        while (sem_wait(&cp->resumed_sem) && errno == EINTR)
            ;
        if (cp->timer_done)
            break;
        /* A periodic timer: expirations missed while the guest was
         * suspended coalesce into one, as a pending signal did. */
        while (poll(p, 2, -1) < 0 && errno == EINTR)
            ;
        if (cp->timer_done || (p[1].revents & POLLIN))
            break;
        if (read(cp->timerfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
            break;
        /* Not before the save loop wants the next epoch: while the last
         * one is still being sent or waits for its ack, the guest runs
         * (the interval is a minimum; ticks missed meanwhile coalesce). */
        while (sem_wait(&cp->ready_sem) && errno == EINTR)
            ;
        if (cp->timer_done)
            break;
        cp->timer_rc = cp_suspend(cp);
        if (cp->timer_rc)
            fprintf(stderr, "checkpoint_suspend failed\n");
        sem_post(&cp->suspended_sem);
    }
    return NULL;
}

static int start_timer(struct cp_state *cp)
{
    struct itimerspec its = {
        .it_interval = { cp->interval_ms / 1000,
                         (long)(cp->interval_ms % 1000) * 1000000 },
    };
    int rc;

    its.it_value = its.it_interval;
    cp->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    cp->stopfd = eventfd(0, EFD_CLOEXEC);
    if (cp->timerfd < 0 || cp->stopfd < 0 ||
        timerfd_settime(cp->timerfd, 0, &its, NULL)) {
        set_error(cp, errno, "could not create the checkpoint timer");
        goto fail;
    }
    sem_init(&cp->suspended_sem, 0, 0);
    sem_init(&cp->resumed_sem, 0, 0);
    sem_init(&cp->ready_sem, 0, 0);
    cp->timer_done = 0;
    cp->timer_rc = 0;
    rc = cp_thread_start(&cp->timer_thread, timer_main, cp);
    if (rc) {
        sem_destroy(&cp->suspended_sem);
        sem_destroy(&cp->resumed_sem);
        sem_destroy(&cp->ready_sem);
        set_error(cp, rc, "could not start the suspend thread");
        goto fail;
    }
    cp->timer_armed = 1;
    return 0;
 fail:
    if (cp->timerfd >= 0)
        close(cp->timerfd);
    if (cp->stopfd >= 0)
        close(cp->stopfd);
    cp->timerfd = cp->stopfd = -1;
    return -1;
}

static void stop_timer(struct cp_state *cp)
{
    uint64_t one = 1;

    if (!cp->timer_armed)
        return;
    cp->timer_done = 1;
    if (write(cp->stopfd, &one, sizeof(one)) < 0)
        fprintf(stderr, "could not signal the suspend thread\n");
    sem_post(&cp->resumed_sem);
    sem_post(&cp->ready_sem);
    pthread_join(cp->timer_thread, NULL);
    sem_destroy(&cp->suspended_sem);
    sem_destroy(&cp->resumed_sem);
    sem_destroy(&cp->ready_sem);
    close(cp->timerfd);
    close(cp->stopfd);
    cp->timerfd = cp->stopfd = -1;
    cp->timer_armed = 0;
}

/* The suspend trampoline in timer mode, after the first epoch: let the
 * thread suspend at its next tick (or now, if it has passed); we wait for
 * it, boundedly. */
static int wait_for_timer(struct cp_state *cp)
{
    struct timespec ts;
    int64_t deadline = now_ms() + cp->interval_ms +
        cp->suspend_timeout_ms + 1000;

    sem_post(&cp->ready_sem);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    for (;;) {
        int64_t ms = remaining_ms(deadline);
        struct timespec until = {
            ts.tv_sec + ms / 1000 + (ts.tv_nsec + (ms % 1000) * 1000000)
                / 1000000000,
            (ts.tv_nsec + (ms % 1000) * 1000000) % 1000000000 };

        if (sem_clockwait(&cp->suspended_sem, CLOCK_MONOTONIC, &until) == 0)
            break;
        if (errno == ETIMEDOUT) {
            set_error(cp, ETIMEDOUT, "the suspend thread did not suspend "
                      "domain %u in time", cp->domid);
            return -1;
        }
        if (errno != EINTR)
            return -1;
        /* The thread is suspending the guest anyway: let it finish so the
         * exit path can resume it. */
        interrupted(cp);
        clock_gettime(CLOCK_MONOTONIC, &ts);
    }
    if (cp->timer_rc)
        return -1;
    if (!cp->suspended) {
        set_error(cp, 0, "domain %u not suspended?", cp->domid);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------- write deadline */

/*
 * A hung backup must not hang the guest.  libxc writes the stream with
 * blocking write()s from this thread, and a backup that stops reading
 * (stopped, wedged, a dead link TCP has not noticed) blocks them for ever,
 * with the guest suspended.  With write_timeout_ms set and a socket fd:
 *  - SO_SNDTIMEO: no single write (libxc's or the caller's) blocks longer
 *    than the deadline; it fails with EAGAIN (the live phase, the framing
 *    written from the callbacks);
 *  - a watchdog thread: from the end of the suspend callback to postcopy
 *    (the epoch's writes, while the guest is suspended) at most the
 *    deadline; past it the socket is shut down, which wakes the writer
 *    blocked in the kernel with EPIPE, libxc's save fails and the exit path
 *    resumes the guest.  A backup that takes a byte now and then cannot
 *    stretch the pause, as it could a per-write timeout.
 * Anything but a socket cannot be woken that way (a pipe has no
 * shutdown(2)); the engine hands libxc a socket for every transport.
 */
static void *watchdog_main(void *arg)
{
    struct cp_state *cp = arg;

    for (;;) {
        struct pollfd p = { .fd = cp->wd_stopfd, .events = POLLIN };
        int64_t start = __atomic_load_n(&cp->wd_epoch_start, __ATOMIC_ACQUIRE);
        int64_t left = start ? start + cp->write_timeout_ms - now_ms()
                             : WATCHDOG_TICK_MS;

        if (start && left <= 0) {
            __atomic_store_n(&cp->quiet, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&cp->wd_fired, now_ms() - start, __ATOMIC_RELEASE);
            shutdown(cp->wd_fd, SHUT_RDWR);
            break;
        }
        if (poll(&p, 1, left > WATCHDOG_TICK_MS ? WATCHDOG_TICK_MS : (int)left) > 0)
            break;
    }
    return NULL;
}

static int start_watchdog(struct cp_state *cp, int fd)
{
    struct timeval tv = { cp->write_timeout_ms / 1000,
                          (long)(cp->write_timeout_ms % 1000) * 1000 };
    socklen_t len = sizeof(cp->wd_old_sndtimeo);
    struct stat st;
    int rc;

    cp->wd_epoch_start = 0;
    cp->wd_fired = 0;
    cp->wd_fd = -1;
    cp->wd_write_eagain = 0;
    if (!cp->write_timeout_ms || fstat(fd, &st) || !S_ISSOCK(st.st_mode))
        return 0;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &cp->wd_old_sndtimeo, &len) ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
        set_error(cp, errno, "could not set the stream's write timeout");
        return -1;
    }
    cp->wd_fd = fd;     /* from here on, stop_watchdog() restores it */
    cp->wd_stopfd = eventfd(0, EFD_CLOEXEC);
    if (cp->wd_stopfd < 0) {
        set_error(cp, errno, "could not create the write watchdog");
        return -1;
    }
    rc = cp_thread_start(&cp->wd_thread, watchdog_main, cp);
    if (rc) {
        close(cp->wd_stopfd);
        cp->wd_stopfd = -1;
        set_error(cp, rc, "could not start the write watchdog");
        return -1;
    }
    cp->wd_armed = 1;
    return 0;
}

static void stop_watchdog(struct cp_state *cp)
{
    uint64_t one = 1;

    __atomic_store_n(&cp->wd_epoch_start, 0, __ATOMIC_RELEASE);
    if (cp->wd_fd >= 0)     /* the caller's own setting (shut or not) */
        setsockopt(cp->wd_fd, SOL_SOCKET, SO_SNDTIMEO, &cp->wd_old_sndtimeo,
                   sizeof(cp->wd_old_sndtimeo));
    cp->wd_fd = -1;
    if (!cp->wd_armed)
        return;
    if (write(cp->wd_stopfd, &one, sizeof(one)) < 0)
        fprintf(stderr, "could not stop the write watchdog\n");
    pthread_join(cp->wd_thread, NULL);
    close(cp->wd_stopfd);
    cp->wd_stopfd = -1;
    cp->wd_armed = 0;
}

/* ---------------------------------------------------------- trampolines */

static int tr_suspend(void *data)
{
    struct cp_state *cp = data;
    int rc, h;

    if (cp->stop == CP_RAISED)
        return 0;
    if (!cp->interval_ms)
        rc = cp_suspend(cp);
    else if (!cp->timer_armed)
        rc = start_timer(cp) ? -1 : cp_suspend(cp);
    else
        rc = wait_for_timer(cp);
    if (rc) {
        cp->stop = cp->stop == CP_RAISED ? CP_RAISED : CP_FAILED;
        cp->quiet = 1;
        return 0;
    }
    if (cp->stop == CP_RAISED) {        /* interrupted while it suspended */
        cp->quiet = 1;
        return 0;
    }
    h = cp->hooks->suspend(cp->hooks->opaque);
    if (h == CP_GO) {
        /* libxc writes the epoch next: into memory when capturing */
        cap_epoch(&cp->cap);
        cp->wd_sending = 0;
        __atomic_store_n(&cp->wd_epoch_start, now_ms(), __ATOMIC_RELEASE);
        return 1;
    }
    cp->quiet = 1;
    if (h == CP_STOP) {
        cp->stop = CP_FAILED;
        set_error(cp, 0, "suspend callback returned a false value; "
                  "checkpointing stopped");
    } else {
        cp->stop = CP_RAISED;
    }
    return 0;
}

static int tr_postcopy(void *data)
{
    struct cp_state *cp = data;
    int h;

    /* the epoch is on the fd: the deadline no longer runs */
    __atomic_store_n(&cp->wd_epoch_start, 0, __ATOMIC_RELEASE);
    h = cp->hooks->postcopy(cp->hooks->opaque);
    /* Resume whatever the callback said (§10.4). */
    if (cp_resume(cp)) {
        cp->stop = h == CP_EXCEPTION ? CP_RAISED : CP_FAILED;
        cp->quiet = 1;
        return -1;
    }
    if (__atomic_load_n(&cp->wd_fired, __ATOMIC_ACQUIRE)) {
        /* shut down just as the last write went through */
        cp->stop = h == CP_EXCEPTION ? CP_RAISED : CP_FAILED;
        cp->quiet = 1;
        return -1;
    }
    if (h == CP_GO)
        return 1;
    cp->quiet = 1;
    if (h == CP_STOP) {
        cp->stop = CP_FAILED;
        set_error(cp, 0, "postcopy callback returned a false value; "
                  "checkpointing stopped");
        return -1;
    }
    cp->stop = CP_RAISED;
    return 0;
}

/* Capture: the guest runs again; send the epoch libxc wrote into memory,
 * under the write deadline (the watchdog shuts the stream down past it).
 * 0, or -1 with the stream broken (cp_save() says why). */
static int transmit(struct cp_state *cp)
{
    int rc;

    if (!cp->cap.armed)
        return 0;
    cp->wd_sending = 1;
    __atomic_store_n(&cp->wd_epoch_start, now_ms(), __ATOMIC_RELEASE);
    rc = cap_flush(&cp->cap);
    __atomic_store_n(&cp->wd_epoch_start, 0, __ATOMIC_RELEASE);
    if (rc || __atomic_load_n(&cp->wd_fired, __ATOMIC_ACQUIRE))
        return -1;
    return 0;
}

static int tr_checkpoint(void *data)
{
    struct cp_state *cp = data;
    int h;

    /* everything of the epoch is on the stream before the hook writes its
     * own records (device model, CHECKPOINT_END) and commits */
    if (transmit(cp)) {
        cp->quiet = 1;
        cp->stop = CP_FAILED;
        return 0;
    }
    h = cp->hooks->checkpoint(cp->hooks->opaque);
    if (h == CP_GO)
        return 1;
    cp->quiet = 1;
    cp->stop = h == CP_STOP ? CP_STOPPED : CP_RAISED;
    return 0;
}

/* libxc's switch_qemu_logdirty: for an HVM guest, the device model's
 * log-dirty tracking (its DMA into guest memory must be in the dirty
 * bitmap); libxc asks for it on before the first pass and off at the end.
 * Nothing to do for PV and PVH guests, as in libxl. */
static int tr_logdirty(uint32_t domid, unsigned enable, void *data)
{
    struct cp_state *cp = data;
    int h;

    (void)domid;
    if (cp->guest != CP_GUEST_HVM || !cp->hooks || !cp->hooks->logdirty)
        return 0;
    h = cp->hooks->logdirty(cp->hooks->opaque, enable);
    if (h == CP_GO)
        return 0;
    cp->quiet = 1;
    if (h == CP_EXCEPTION) {
        cp->stop = CP_RAISED;
    } else {
        if (cp->stop != CP_RAISED)
            cp->stop = CP_FAILED;
        set_error(cp, 0, "qemu log-dirty callback returned a false value "
                  "(switching it %s); checkpointing stopped",
                  enable ? "on" : "off");
    }
    return -1;
}

/* The suspend path, said once per open when checkpointing starts (not at
 * open: a preflight open/probe/close must not say it a second time). */
static void announce_suspend_path(struct cp_state *cp)
{
    if (cp->announced)
        return;
    cp->announced = 1;
    if (cp->guest == CP_GUEST_HVM &&
        hvm_suspend_path(cp) == CP_HVM_HYPERCALL)
        fprintf(stderr, "domain %u is an HVM guest without PV drivers: "
                "suspending it with xc_domain_shutdown(SHUTDOWN_suspend)\n",
                cp->domid);
    else if (cp->local_port >= 0)
        fprintf(stderr, "bound to suspend event channel %u:%d as %d\n",
                cp->domid, cp->offered_port, cp->local_port);
    else if (cp->offered_port >= 0)
        fprintf(stderr, "WARNING: could not bind suspend event channel "
                "%u:%d, suspending domain %u through xenstore instead\n",
                cp->domid, cp->offered_port, cp->domid);
    else
        fprintf(stderr, "domain %u has no suspend event channel: suspending "
                "it through xenstore (control/shutdown)\n", cp->domid);
}

/* The end of a save with capture: send what libxc wrote since the last
 * checkpoint when the save ended cleanly (nothing, with Remus: libxc
 * writes no END record), drop it after a failure (an epoch cut short, which
 * the backup would discard anyway); stop the drain thread.  The stream's
 * first failed write, 0 if none. */
static int end_capture(struct cp_state *cp, int rc)
{
    int err;

    if (!cp->cap.armed)
        return 0;
    if (rc == 0 && cp->stop != CP_FAILED)
        transmit(cp);
    err = cap_error(&cp->cap);
    cap_stop(&cp->cap);
    return err;
}

int cp_save(struct cp_state *cp, int fd, unsigned int interval_ms,
            unsigned int flags, const struct cp_hooks *hooks)
{
    struct save_callbacks cbs;
    int rc, save_errno, cap_err, xfd = fd;

    (void)flags;        /* CHECKPOINT_FLAGS_COMPRESSION: gone in 4.17 */
    cp_clear_error(cp);
    if (!cp->opened) {
        set_error(cp, 0, "checkpoint state not opened");
        return -1;
    }
    /* Fail before libxc writes a byte when the hypervisor cannot track the
     * guest's dirty memory (a no-op when probe() passed already). */
    /* libxc cannot save an HVM guest without switch_qemu_logdirty, and the
     * stream is useless to the backup without the device model's state:
     * both come from a caller that drives the device model. */
    if (cp->guest == CP_GUEST_HVM && (!hooks || !hooks->logdirty)) {
        set_error(cp, EOPNOTSUPP, "domain %u is an HVM guest: its device "
                  "model must be saved with every checkpoint, which needs "
                  "start(..., logdirty_cb=...) and the emulator records "
                  "(xen_remus_compat.remus.devicemodel does both)",
                  cp->domid);
        return -1;
    }
    if (cp_probe(cp))
        return -1;
    announce_suspend_path(cp);
    memset(&cbs, 0, sizeof(cbs));
    cbs.suspend = tr_suspend;
    cbs.postcopy = tr_postcopy;
    cbs.checkpoint = tr_checkpoint;
    cbs.switch_qemu_logdirty = tr_logdirty;
    cbs.data = cp;
    cp->hooks = hooks;
    cp->save_thread = pthread_self();
    cp->interval_ms = interval_ms;
    cp->stop = CP_RUNNING;
    cp->quiet = 0;
    cp->wd_sending = 0;
    if (start_watchdog(cp, fd)) {
        stop_watchdog(cp);
        cp->hooks = NULL;
        return -1;
    }
    if (cp->cap.enabled) {
        /* its EAGAIN is the write timeout only when there is one */
        xfd = cap_start(&cp->cap, fd,
                        cp->wd_fd >= 0 ? &cp->wd_write_eagain : NULL);
        if (xfd < 0) {
            set_error(cp, errno, "could not start the checkpoint capture");
            stop_watchdog(cp);
            cp->hooks = NULL;
            return -1;
        }
    }

    rc = xc_domain_save(cp->xch, xfd, cp->domid, XCFLAGS_LIVE, &cbs,
                        XC_STREAM_REMUS, -1);
    save_errno = errno;

    stop_timer(cp);
    if (cp_ensure_running(cp))
        fprintf(stderr, "domain %u could not be resumed; close() will try "
                "again\n", cp->domid);
    /* the guest runs: what is left of the capture, under the deadline */
    cap_err = end_capture(cp, rc);
    stop_watchdog(cp);
    cp->hooks = NULL;
    if (cp->wd_fired || ((rc != 0 || cap_err) && cp->wd_write_eagain)) {
        /* the cause, whatever else failed after it */
        cp_clear_error(cp);
        if (cp->wd_fired && cp->wd_sending)
            set_error(cp, ETIMEDOUT, "the backup stopped taking the stream: "
                      "a checkpoint was still being sent %lld ms after "
                      "the guest resumed (write timeout %u ms)",
                      (long long)cp->wd_fired, cp->write_timeout_ms);
        else if (cp->wd_fired)
            set_error(cp, ETIMEDOUT, "the backup stopped taking the stream: "
                      "a checkpoint was still being written %lld ms after "
                      "the guest was suspended (write timeout %u ms)",
                      (long long)cp->wd_fired, cp->write_timeout_ms);
        else
            set_error(cp, ETIMEDOUT, "the backup stopped taking the stream: "
                      "a write blocked for the write timeout (%u ms)",
                      cp->write_timeout_ms);
    } else if (cap_err) {
        /* libxc only saw its pair fail: the stream's own error */
        cp_clear_error(cp);
        set_error(cp, cap_err, "xc_domain_save failed: Failed to write the "
                  "stream: %s", strerror(cap_err));
    }
    if (cp->stop == CP_RAISED)
        return -1;
    if (rc != 0 && !cp->has_err) {
        if (cp->xcerr[0])
            set_error(cp, cp->xcerr_errno ? cp->xcerr_errno : save_errno,
                      "xc_domain_save failed: %s", cp->xcerr);
        else
            set_error(cp, save_errno, "xc_domain_save failed");
    }
    return cp->has_err ? -1 : 0;
}

/* ---------------------------------------------------------- open, close */

void cp_init(struct cp_state *cp)
{
    memset(cp, 0, sizeof(*cp));
    cp->local_port = -1;
    cp->lockfd = -1;
    cp->timerfd = cp->stopfd = -1;
    cp->wd_stopfd = cp->wd_fd = -1;
    cap_init(&cp->cap);
    cp->suspend_timeout_ms = 5000;
    cp->logger.vtable.vmessage = log_vmessage;
    cp->logger.vtable.progress = NULL;
    cp->logger.vtable.destroy = log_destroy;
    cp->logger.cp = cp;
    pthread_mutex_init(&cp->lock, NULL);
}

void cp_destroy(struct cp_state *cp)
{
    cp_close(cp);
    pthread_mutex_destroy(&cp->lock);
}

static void consume_initial_watch(struct cp_state *cp)
{
    int64_t deadline = now_ms() + INITIAL_WATCH_MS;

    if (wait_readable(cp, xs_fileno(cp->xsh), deadline, 0) == 0)
        drain_watches(cp);
}

/*
 * HVM containers.  Xen 4.17 gives a domU's HVM container one of exactly two
 * sets of emulated devices (emulation_flags_ok() in the hypervisor; libxl
 * asks for one or the other in libxl__arch_domain_prepare_config): the
 * whole PC platform (PIC, IOAPIC, RTC, PIT, HPET, ACPI PM, VGA, IOMMU),
 * which only makes sense with a device model serving the rest of the PC,
 * i.e. an HVM guest; or the local APIC alone, i.e. a PVH guest, which has
 * no device model (a qemu serving PV backends, e.g. qdisk, is no emulator
 * and keeps no state in the stream).  So the domain's emulation flags tell
 * the two apart.  HVM_PARAM_CALLBACK_IRQ cannot: a Linux PVH guest sets it
 * just as a PV-on-HVM guest does.
 */
#define PVH_EMULATION (XEN_X86_EMU_LAPIC | XEN_X86_EMU_VPCI)

static enum cp_guest hvm_container_kind(const xc_dominfo_t *info)
{
    return info->arch_config.emulation_flags & ~PVH_EMULATION
        ? CP_GUEST_HVM : CP_GUEST_PVH;
}

/* An HVM guest whose device model runs in a stub domain: libxl saves that
 * one through the stub domain's console (fdset 1), which is not done here
 * (libxl_get_stubdom_id reads the same node). */
static int refuse_stubdom(struct cp_state *cp)
{
    char path[80], *v;
    unsigned int len = 0;
    long dm = 0;

    snprintf(path, sizeof(path), "/local/domain/%u/image/device-model-domid",
             cp->domid);
    v = xs_read(cp->xsh, XBT_NULL, path, &len);
    if (v)
        dm = strtol(v, NULL, 10);
    free(v);
    if (dm <= 0)
        return 0;
    set_error(cp, EOPNOTSUPP, "domain %u is an HVM guest whose device model "
              "runs in stub domain %ld: saving a stub domain's device model "
              "is not supported; run its device model in dom0 "
              "(device_model_stubdomain_override=0)", cp->domid, dm);
    return -1;
}

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

int cp_open(struct cp_state *cp, uint32_t domid)
{
    xc_dominfo_t info;
    int n, port;

    cp_clear_error(cp);
    if (cp->opened) {
        set_error(cp, EBUSY, "checkpointer already open for domain %u",
                  cp->domid);
        return -1;
    }
    if (domid == 0) {
        set_error(cp, EINVAL, "refusing to checkpoint domain 0");
        return -1;
    }
    cp->domid = domid;
    cp->xch = xc_interface_open(&cp->logger.vtable, NULL, 0);
    if (!cp->xch) {
        set_error(cp, errno, "could not open control interface (are you "
                  "root?)");
        goto fail;
    }
    cp->xsh = xs_open(0);
    if (!cp->xsh) {
        set_error(cp, errno, "could not open xenstore handle");
        goto fail;
    }
    cp->xce = xenevtchn_open(NULL, 0);
    if (!cp->xce) {
        set_error(cp, errno, "could not open event channel handle");
        goto fail;
    }
    n = xc_domain_getinfo(cp->xch, domid, 1, &info);
    if (n < 0) {
        set_error(cp, errno, "could not get domain info for domain %u", domid);
        goto fail;
    }
    if (n == 0 || info.domid != domid) {
        set_error(cp, ESRCH, "domain %u does not exist", domid);
        goto fail;
    }
    cp->guest = info.hvm ? hvm_container_kind(&info) : CP_GUEST_PV;
    if (cp->guest == CP_GUEST_HVM && refuse_stubdom(cp))
        goto fail;
    snprintf(cp->token, sizeof(cp->token), "%u", domid);
    if (!xs_watch(cp->xsh, "@releaseDomain", cp->token)) {
        set_error(cp, errno, "could not bind to shutdown watch");
        goto fail;
    }
    cp->watching = 1;
    consume_initial_watch(cp);

    /* As libxl does for PV and PVH guests alike: the guest's suspend event
     * channel when it offers one, else its xenstore control/shutdown node
     * (a Linux 6.1 guest offers none: that is its normal path, said once
     * here and not again per checkpoint). */
    port = xs_suspend_evtchn_port((int)domid);
    if (port >= 0)
        cp->local_port = xc_suspend_evtchn_init_exclusive(
            cp->xch, cp->xce, domid, port, &cp->lockfd);
    cp->offered_port = port;
    cp->announced = 0;
    cp->opened = 1;
    return 0;
 fail:
    cp_close(cp);
    return -1;
}

void cp_close(struct cp_state *cp)
{
    stop_timer(cp);
    if (cp->watching && !xs_unwatch(cp->xsh, "@releaseDomain", cp->token))
        fprintf(stderr, "Could not release shutdown watch\n");
    cp->watching = 0;
    if (cp->local_port >= 0 || cp->lockfd >= 0)
        xc_suspend_evtchn_release(cp->xch, cp->xce, cp->domid, cp->local_port,
                                  &cp->lockfd);
    cp->local_port = -1;
    cp->lockfd = -1;
    if (cp->xce)
        xenevtchn_close(cp->xce);
    if (cp->xsh)
        xs_close(cp->xsh);
    if (cp->xch)
        xc_interface_close(cp->xch);
    cp->xce = NULL;
    cp->xsh = NULL;
    cp->xch = NULL;
    cp->opened = 0;
    cp->suspended = 0;
    cp->domid = 0;
    cp->guest = CP_GUEST_NONE;
    cp->probed = CP_PROBE_NOT_RUN;
}
