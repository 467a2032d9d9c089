/*
 * simxen stand-in for libxenstore.so.4: a small in-process store shared
 * with the simulated guest, and watches delivered through a pipe so that
 * xs_fileno() can be polled like the real one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenstore.h>

#include "simxen.h"

#define MAX_WATCHES 16
#define MAX_EVENTS 256

struct watch { char *path, *token; };
struct event { char *path, *token; };

struct xs_handle {
    int pipe[2];
    struct simxen_watch_sink sink;
    struct watch watches[MAX_WATCHES];
    struct event events[MAX_EVENTS];
    unsigned int head, count;
};

static int matches(const char *watched, const char *path)
{
    size_t n = strlen(watched);

    if (watched[0] == '@')
        return !strcmp(watched, path);
    return !strncmp(watched, path, n) && (path[n] == '\0' || path[n] == '/');
}

static void queue(struct xs_handle *h, const char *path, const char *token)
{
    struct event *e;
    char byte = 'w';

    if (h->count == MAX_EVENTS)        /* like a slow reader: drop */
        return;
    e = &h->events[(h->head + h->count) % MAX_EVENTS];
    e->path = strdup(path);
    e->token = strdup(token);
    if (!e->path || !e->token) {
        free(e->path);
        free(e->token);
        return;
    }
    h->count++;
    if (write(h->pipe[1], &byte, 1) != 1)
        abort();
}

static void fire(struct simxen_watch_sink *sink, const char *path)
{
    struct xs_handle *h = (struct xs_handle *)
        ((char *)sink - offsetof(struct xs_handle, sink));
    unsigned int i;

    for (i = 0; i < MAX_WATCHES; i++)
        if (h->watches[i].path && matches(h->watches[i].path, path))
            queue(h, path, h->watches[i].token);
}

struct xs_handle *xs_open(unsigned long flags)
{
    struct xs_handle *h;

    (void)flags;
    if (simxen_init())
        return NULL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (pipe2(h->pipe, O_CLOEXEC | O_NONBLOCK)) {
        free(h);
        return NULL;
    }
    h->sink.fire = fire;
    simxen_lock();
    simxen_watch_subscribe(&h->sink);
    simxen_unlock();
    return h;
}

struct xs_handle *xs_daemon_open(void)
{
    return xs_open(0);
}

void xs_close(struct xs_handle *h)
{
    unsigned int i;

    if (!h)
        return;
    simxen_lock();
    simxen_watch_unsubscribe(&h->sink);
    simxen_unlock();
    for (i = 0; i < MAX_WATCHES; i++) {
        free(h->watches[i].path);
        free(h->watches[i].token);
    }
    for (; h->count; h->count--, h->head = (h->head + 1) % MAX_EVENTS) {
        free(h->events[h->head].path);
        free(h->events[h->head].token);
    }
    close(h->pipe[0]);
    close(h->pipe[1]);
    free(h);
}

void xs_daemon_close(struct xs_handle *h)
{
    xs_close(h);
}

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path,
              unsigned int *len)
{
    const char *v;
    char *copy = NULL;

    (void)h;
    (void)t;
    simxen_lock();
    v = simxen_xs_get(path);
    if (v) {
        copy = strdup(v);
        if (copy && len)
            *len = (unsigned int)strlen(copy);
    } else {
        errno = ENOENT;
    }
    simxen_unlock();
    return copy;
}

struct dir_names {
    char names[4096];
    size_t used;
    unsigned int count;
};

static void add_name(const char *name, size_t len, void *arg)
{
    struct dir_names *d = arg;

    if (d->used + len + 1 > sizeof(d->names))
        return;
    memcpy(d->names + d->used, name, len);
    d->names[d->used + len] = '\0';
    d->used += len + 1;
    d->count++;
}

/* As libxenstore: one malloc'd block, the pointer array then the names. */
char **xs_directory(struct xs_handle *h, xs_transaction_t t,
                    const char *path, unsigned int *num)
{
    struct dir_names d = { .used = 0, .count = 0 };
    char **out, *p;
    unsigned int i;
    int rc;

    (void)h;
    (void)t;
    simxen_lock();
    rc = simxen_xs_children(path, add_name, &d);
    simxen_unlock();
    if (rc) {
        errno = ENOENT;
        return NULL;
    }
    out = malloc((d.count + 1) * sizeof(char *) + d.used);
    if (!out)
        return NULL;
    p = (char *)(out + d.count + 1);
    memcpy(p, d.names, d.used);
    for (i = 0; i < d.count; i++) {
        out[i] = p;
        p += strlen(p) + 1;
    }
    out[d.count] = NULL;
    if (num)
        *num = d.count;
    return out;
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path,
              const void *data, unsigned int len)
{
    char *value = malloc(len + 1);
    int rc;

    (void)h;
    (void)t;
    if (!value)
        return false;
    memcpy(value, data, len);
    value[len] = '\0';
    simxen_lock();
    rc = simxen_xs_set(path, value);
    simxen_unlock();
    free(value);
    return rc == 0;
}

bool xs_watch(struct xs_handle *h, const char *path, const char *token)
{
    unsigned int i;

    simxen_lock();
    for (i = 0; i < MAX_WATCHES && h->watches[i].path; i++)
        ;
    if (i == MAX_WATCHES) {
        simxen_unlock();
        errno = E2BIG;
        return false;
    }
    h->watches[i].path = strdup(path);
    h->watches[i].token = strdup(token);
    /* xenstored fires every new watch once, straight away. */
    queue(h, path, token);
    simxen_unlock();
    return true;
}

bool xs_unwatch(struct xs_handle *h, const char *path, const char *token)
{
    unsigned int i;

    simxen_lock();
    for (i = 0; i < MAX_WATCHES; i++) {
        if (h->watches[i].path && !strcmp(h->watches[i].path, path) &&
            !strcmp(h->watches[i].token, token)) {
            free(h->watches[i].path);
            free(h->watches[i].token);
            h->watches[i].path = h->watches[i].token = NULL;
            simxen_unlock();
            return true;
        }
    }
    simxen_unlock();
    errno = ENOENT;
    return false;
}

int xs_fileno(struct xs_handle *h)
{
    return h->pipe[0];
}

static char **pop(struct xs_handle *h)
{
    struct event *e = &h->events[h->head];
    size_t lp = strlen(e->path) + 1, lt = strlen(e->token) + 1;
    char **vec = malloc(2 * sizeof(char *) + lp + lt), byte;

    if (!vec)
        return NULL;
    vec[XS_WATCH_PATH] = (char *)(vec + 2);
    vec[XS_WATCH_TOKEN] = vec[XS_WATCH_PATH] + lp;
    memcpy(vec[XS_WATCH_PATH], e->path, lp);
    memcpy(vec[XS_WATCH_TOKEN], e->token, lt);
    free(e->path);
    free(e->token);
    h->head = (h->head + 1) % MAX_EVENTS;
    h->count--;
    if (read(h->pipe[0], &byte, 1) != 1)
        abort();
    return vec;
}

char **xs_check_watch(struct xs_handle *h)
{
    char **vec = NULL;

    simxen_lock();
    if (h->count)
        vec = pop(h);
    else
        errno = EAGAIN;
    simxen_unlock();
    return vec;
}

char **xs_read_watch(struct xs_handle *h, unsigned int *num)
{
    for (;;) {
        struct pollfd p = { .fd = h->pipe[0], .events = POLLIN };
        char **vec = xs_check_watch(h);

        if (vec) {
            if (num)
                *num = 2;
            return vec;
        }
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return NULL;
    }
}

/* Every call is atomic under the simulation's lock; a transaction only
 * has to exist, and never conflicts. */
xs_transaction_t xs_transaction_start(struct xs_handle *h)
{
    (void)h;
    return 1;
}

bool xs_transaction_end(struct xs_handle *h, xs_transaction_t t, bool abort)
{
    (void)h;
    (void)t;
    (void)abort;
    return true;
}

bool xs_resume_domain(struct xs_handle *h, unsigned int domid)
{
    (void)h;
    if (!simxen_domain_exists(domid)) {
        errno = ESRCH;
        return false;
    }
    return true;
}

int xs_suspend_evtchn_port(int domid)
{
    char path[128];
    const char *v;
    int port = -1;

    if (simxen_init())
        return -1;
    snprintf(path, sizeof(path),
             "/local/domain/%d/device/suspend/event-channel", domid);
    simxen_lock();
    v = simxen_xs_get(path);
    if (v && *v)
        port = atoi(v);
    simxen_unlock();
    return port;
}
