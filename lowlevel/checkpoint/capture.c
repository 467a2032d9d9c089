/*
 * capture: libxc writes an epoch into memory we own while the guest is
 * paused; it is sent once the guest runs again (capture.h).  Written for
 * xen-remus-compat.
 *
 * Threads: libxc writes into libxc_fd on the trampoline's (save) thread;
 * the drain thread alone reads drain_fd and, outside cap_flush, alone
 * writes to the stream.  cap_flush runs on the save thread while libxc
 * waits in a callback: it first asks the drain thread to take everything
 * libxc wrote (a sync: the drain thread notes the request, reads until the
 * pair is empty, then answers), so from then until libxc writes again the
 * drain thread is idle and the save thread may use the buffer and the
 * stream.  Order on the stream is therefore libxc's order: a byte goes
 * through (drain thread) or into the buffer, and the buffer is always sent
 * before anything libxc writes after it and before the callback's own
 * writes (device-model records, CHECKPOINT_END, heartbeats).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture.h"

/* one read from the pair, and the write-through scratch */
#define CHUNK ((size_t)1 << 20)
/* the pair's kernel buffer: fewer wake-ups per epoch (best effort) */
#define PAIR_BUFFER (4 << 20)

void cap_init(struct cp_capture *c)
{
    memset(c, 0, sizeof(*c));
    c->limit = CAP_DEFAULT_LIMIT;
    c->real_fd = c->libxc_fd = c->drain_fd = c->wake_fd = -1;
}

int cp_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int cap_error(struct cp_capture *c)
{
    return __atomic_load_n(&c->err, __ATOMIC_ACQUIRE);
}

/* A write to the stream failed: keep the first errno, and make libxc's
 * next write (and one blocked now) fail, so that the save ends. */
static void fail(struct cp_capture *c, int errnum)
{
    int expected = 0;

    if (errnum == EAGAIN && c->eagain_flag)
        __atomic_store_n(c->eagain_flag, 1, __ATOMIC_RELEASE);
    __atomic_compare_exchange_n(&c->err, &expected, errnum ? errnum : EIO, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    shutdown(c->drain_fd, SHUT_RDWR);
}

/* The epoch has reached the limit: send what is held, then write the rest
 * of this epoch through (with the guest paused: the pause is the link's
 * again for that epoch, nothing is dropped). */
static int overflow(struct cp_capture *c)
{
    if (!c->overflows)
        fprintf(stderr, "checkpoint: warning: a checkpoint outgrew the capture buffer "
                "(capture limit %zu MiB): the rest of it is written straight "
                "to the link while the guest is paused (said once)\n",
                c->limit >> 20);
    c->overflows++;
    c->overflowed = 1;
    if (write_all(c->real_fd, c->buf, c->len)) {
        fail(c, errno);
        return -1;
    }
    c->len = 0;
    return 0;
}

/* Room for @want more bytes in the buffer (never beyond the limit); 0 when
 * none could be had (then the epoch goes through, as at the limit). */
static size_t room(struct cp_capture *c, size_t want)
{
    size_t need, size;
    char *p;

    if (c->len >= c->limit)
        return 0;
    if (want > c->limit - c->len)
        want = c->limit - c->len;
    need = c->len + want;
    if (need <= c->size)
        return want;
    size = c->size ? c->size : CHUNK;
    while (size < need)
        size = size > c->limit / 2 ? c->limit : size * 2;
    if (size > c->limit)
        size = c->limit;
    p = realloc(c->buf, size);
    if (!p)
        return 0;
    c->buf = p;
    c->size = size;
    return want;
}

/* Read what the pair holds, until it is empty (0), at its end (1), or the
 * stream failed (-1). */
static int drain_available(struct cp_capture *c)
{
    for (;;) {
        int capture = __atomic_load_n(&c->capturing, __ATOMIC_ACQUIRE) &&
            !c->overflowed;
        size_t want = CHUNK;
        ssize_t n;

        if (capture && !(want = room(c, CHUNK))) {
            if (overflow(c))
                return -1;
            continue;
        }
        n = read(c->drain_fd, capture ? c->buf + c->len : c->chunk, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            fail(c, errno);
            return -1;
        }
        if (n == 0)
            return 1;
        if (capture) {
            c->len += (size_t)n;
            c->captured += (uint64_t)n;
            if (c->len > c->peak)
                c->peak = c->len;
        } else if (write_all(c->real_fd, c->chunk, (size_t)n)) {
            fail(c, errno);
            return -1;
        }
    }
}

static void *drain_main(void *arg)
{
    struct cp_capture *c = arg;
    int done = 0;           /* the pair failed or ended: only answer now */

    for (;;) {
        struct pollfd p[2] = { { .fd = c->wake_fd, .events = POLLIN },
                               { .fd = c->drain_fd, .events = POLLIN } };
        unsigned int want;
        uint64_t v;
        int stop;

        if (poll(p, done ? 1 : 2, -1) < 0 && errno != EINTR) {
            fail(c, errno);
            done = 1;
        }
        if ((p[0].revents & POLLIN) && read(c->wake_fd, &v, sizeof(v)) < 0 &&
            errno != EAGAIN)
            done = 1;
        /* the request is noted before the pair is read: everything libxc
         * wrote before asking is then read before the answer */
        pthread_mutex_lock(&c->mu);
        want = c->sync_req;
        stop = c->stopping;
        pthread_mutex_unlock(&c->mu);
        if (!done && !stop && drain_available(c))
            done = 1;
        pthread_mutex_lock(&c->mu);
        if (c->sync_done != want) {
            c->sync_done = want;
            pthread_cond_broadcast(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
    }
    return NULL;
}

static void wake(struct cp_capture *c)
{
    uint64_t one = 1;

    if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        fprintf(stderr, "capture: could not wake the drain thread: %s\n",
                strerror(errno));
}

static void bigger_buffers(int fd)
{
    int size = PAIR_BUFFER;

    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int cap_start(struct cp_capture *c, int real_fd, int *eagain_flag)
{
    int sv[2], rc, flags;

    c->real_fd = real_fd;
    c->eagain_flag = eagain_flag;
    c->capturing = c->overflowed = c->stopping = 0;
    c->sync_req = c->sync_done = 0;
    c->err = 0;
    c->len = 0;
    c->peak = 0;
    c->overflows = 0;
    c->captured = 0;
    if (c->limit < CHUNK)
        c->limit = CHUNK;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -1;
    c->libxc_fd = sv[0];
    c->drain_fd = sv[1];
    bigger_buffers(sv[0]);
    bigger_buffers(sv[1]);
    flags = fcntl(sv[1], F_GETFL);
    c->chunk = malloc(CHUNK);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (flags < 0 || fcntl(sv[1], F_SETFL, flags | O_NONBLOCK) ||
        !c->chunk || c->wake_fd < 0) {
        rc = errno ? errno : ENOMEM;
        goto fail;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    rc = cp_thread_start(&c->thread, drain_main, c);
    if (rc) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        goto fail;
    }
    c->armed = 1;
    return c->libxc_fd;
 fail:
    close(sv[0]);
    close(sv[1]);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    free(c->chunk);
    c->chunk = NULL;
    c->libxc_fd = c->drain_fd = c->wake_fd = -1;
    errno = rc;
    return -1;
}

void cap_epoch(struct cp_capture *c)
{
    if (c->armed)
        __atomic_store_n(&c->capturing, 1, __ATOMIC_RELEASE);
}

int cap_flush(struct cp_capture *c)
{
    unsigned int req;
    int err;

    if (!c->armed)
        return 0;
    pthread_mutex_lock(&c->mu);
    req = ++c->sync_req;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_mutex_lock(&c->mu);
    while ((int)(c->sync_done - req) < 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    /* the drain thread is idle until libxc writes again */
    err = cap_error(c);
    if (!err && c->len && write_all(c->real_fd, c->buf, c->len)) {
        fail(c, errno);
        err = cap_error(c);
    }
    c->len = 0;
    c->overflowed = 0;
    __atomic_store_n(&c->capturing, 0, __ATOMIC_RELEASE);
    return err ? -err : 0;
}

void cap_stop(struct cp_capture *c)
{
    if (!c->armed)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    close(c->libxc_fd);
    close(c->drain_fd);
    close(c->wake_fd);
    free(c->buf);
    free(c->chunk);
    c->buf = c->chunk = NULL;
    c->len = c->size = 0;
    c->libxc_fd = c->drain_fd = c->wake_fd = -1;
    c->capturing = 0;
    c->armed = 0;
}
