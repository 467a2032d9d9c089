/*
 * capture: local capture of a checkpoint while the guest is paused
 * (issue 13, item 1; docs/decisions.md "Local capture during the pause").
 *
 * libxc is handed one end of a socket pair instead of the stream's fd; a
 * drain thread reads the other end.  Outside an epoch (the live pass,
 * whatever libxc writes between a checkpoint and the next suspension) it
 * writes the bytes straight through to the stream; from the suspension on
 * (cap_epoch) it appends them to a buffer we own, so the guest's pause
 * costs a memory copy, not the link.  Once the guest runs again the
 * trampoline sends the buffered epoch (cap_flush) before anything else is
 * written to the stream, so the bytes on the stream are exactly, and in
 * the same order, those libxc wrote.  The buffer is bounded (limit): an
 * epoch that outgrows it is written through for the rest of that epoch.
 *
 * No Python here, and no page data ever passes through Python.
 */
#ifndef CAPTURE_H
#define CAPTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Start a helper thread with every signal blocked, so that signals keep
 * going to Python's threads; the caller's own mask is restored at once.
 * Returns pthread_create's result. */
int cp_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* the default bound of one epoch's buffer (1 GiB) */
#define CAP_DEFAULT_LIMIT ((size_t)1 << 30)

struct cp_capture {
    /* settings (before cap_start) */
    int enabled;
    size_t limit;

    /* one save: set by cap_start, torn down by cap_stop */
    int armed;
    int real_fd;                /* the stream */
    int libxc_fd;               /* what libxc writes into */
    int drain_fd;               /* what the drain thread reads */
    int wake_fd;                /* eventfd: sync or stop requested */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int capturing;              /* append to buf (1) or write through (0) */
    int overflowed;             /* this epoch outgrew limit: through */
    unsigned int sync_req, sync_done;
    int stopping;
    int err;                    /* errno of the first failed stream write */
    int *eagain_flag;           /* set to 1 when that errno is EAGAIN */
    char *buf;                  /* the epoch being captured */
    size_t len, size;
    char *chunk;                /* write-through scratch */

    /* statistics of the last save (readable after it) */
    size_t peak;                /* the largest epoch held, bytes */
    unsigned int overflows;     /* epochs that outgrew limit */
    uint64_t captured;          /* bytes that went through the buffer */
};

void cap_init(struct cp_capture *c);
/* Start the drain thread for a save to @real_fd.  Returns the fd libxc is
 * to write into, or -1 with errno.  @eagain_flag (may be NULL) is set to 1
 * when a write to the stream fails with EAGAIN (its SO_SNDTIMEO). */
int cap_start(struct cp_capture *c, int real_fd, int *eagain_flag);
/* The guest is suspended: libxc's next bytes go to the buffer. */
void cap_epoch(struct cp_capture *c);
/* libxc waits in a callback: wait until the drain thread has taken all it
 * wrote, then write the buffered epoch to the stream and go back to
 * writing through.  0, or -errno (the stream write failed, now or in the
 * drain thread).  Bounded by the stream's SO_SNDTIMEO and the trampoline's
 * watchdog, which shuts the stream down. */
int cap_flush(struct cp_capture *c);
/* The first failed stream write's errno, 0 if none. */
int cap_error(struct cp_capture *c);
/* Stop and join the thread, close the pair, free the buffer (what is
 * still buffered is dropped: call cap_flush first to send it). */
void cap_stop(struct cp_capture *c);

#endif
