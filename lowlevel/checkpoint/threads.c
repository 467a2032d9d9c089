/*
 * libcheckpoint's helper threads: the timer thread of timer mode (it
 * suspends the guest every interval, once the save loop is ready for the
 * next epoch) and the write-deadline watchdog.  Written for
 * xen-remus-compat.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "libcheckpoint.h"
#include "cpinternal.h"

/* how often the write watchdog looks at the clock outside an epoch */
#define WATCHDOG_TICK_MS 20

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

int start_timer(struct cp_state *cp)
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

void stop_timer(struct cp_state *cp)
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
int wait_for_timer(struct cp_state *cp)
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

int start_watchdog(struct cp_state *cp, int fd)
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

void stop_watchdog(struct cp_state *cp)
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
