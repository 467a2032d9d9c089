/*
 * simxen stand-in for libxenevtchn.so.1: one handle = one pipe; a bound
 * suspend channel becomes pending (the local port is written into the
 * pipe) whenever the simulated guest suspends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenevtchn.h>

#include "simxen.h"

struct xenevtchn_handle {
    int pipe[2];
    struct simxen_evtchn_sink sink;
    int bound;
};

static evtchn_port_t next_local_port = 40;

static void deliver(struct simxen_evtchn_sink *sink, uint32_t local_port)
{
    struct xenevtchn_handle *xce = (struct xenevtchn_handle *)
        ((char *)sink - offsetof(struct xenevtchn_handle, sink));

    /* Non-blocking: a full pipe means the event is pending already. */
    if (write(xce->pipe[1], &local_port, sizeof(local_port)) < 0 &&
        errno != EAGAIN)
        abort();
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned int open_flags)
{
    struct xenevtchn_handle *xce;

    (void)logger;
    (void)open_flags;
    if (simxen_init())
        return NULL;
    xce = calloc(1, sizeof(*xce));
    if (!xce)
        return NULL;
    if (pipe2(xce->pipe, O_CLOEXEC)) {
        free(xce);
        return NULL;
    }
    fcntl(xce->pipe[1], F_SETFL, O_NONBLOCK);
    xce->sink.deliver = deliver;
    return xce;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (!xce)
        return 0;
    simxen_lock();
    if (xce->bound)
        simxen_evtchn_unsubscribe(&xce->sink);
    simxen_unlock();
    close(xce->pipe[0]);
    close(xce->pipe[1]);
    free(xce);
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->pipe[0];
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    if (!xce->bound || port != xce->sink.local_port) {
        errno = EINVAL;
        return -1;
    }
    simxen_lock();
    simxen_request_suspend("event channel");
    simxen_unlock();
    return 0;
}

xenevtchn_port_or_error_t
xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                           evtchn_port_t remote_port)
{
    const struct simxen_config *c = simxen_config();
    evtchn_port_t local;

    if (domid != c->domid || !c->suspend_evtchn ||
        remote_port != SIMXEN_SUSPEND_REMOTE_PORT || xce->bound) {
        errno = EINVAL;
        return -1;
    }
    simxen_lock();
    local = next_local_port++;
    xce->sink.local_port = local;
    xce->bound = 1;
    simxen_evtchn_subscribe(&xce->sink);
    /* A fresh interdomain binding starts out pending. */
    deliver(&xce->sink, local);
    simxen_unlock();
    return (xenevtchn_port_or_error_t)local;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint32_t port;
    ssize_t n;

    do
        n = read(xce->pipe[0], &port, sizeof(port));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(port)) {
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    return (xenevtchn_port_or_error_t)port;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce;
    (void)port;
    return 0;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    if (!xce->bound || port != xce->sink.local_port) {
        errno = EINVAL;
        return -1;
    }
    simxen_lock();
    simxen_evtchn_unsubscribe(&xce->sink);
    xce->bound = 0;
    simxen_unlock();
    return 0;
}
