/*
 * libcheckpoint: the Remus save loop of the checkpoint trampoline
 * (legacy-api.md §10.2-10.5, adapted to libxenguest 4.17 as §10.8 says):
 * errors and libxc's logger, the save callbacks and cp_save(), open and
 * close.  suspend.c suspends and resumes the guest, threads.c holds the
 * timer thread and the write deadline; cpinternal.h is what the three
 * share.  Written for xen-remus-compat.
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
 *    "write deadline" in threads.c);
 *  - with capture (capture.c), the guest's pause does not include the
 *    link: libxc writes the epoch into memory, sent once the guest runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "libcheckpoint.h"
#include "cpinternal.h"

#include <xenguest.h>

#define INITIAL_WATCH_MS 500

/* ---------------------------------------------------------------- errors */

void set_error(struct cp_state *cp, int errnum, const char *fmt, ...)
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
void prof(const char *what)
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
