/*
 * simxen stand-in for libxenguest.so.4.17: resume, the suspend event
 * channel helpers, and xc_domain_save writing a libxc v3 stream
 * (docs/specs/libxc-migration-stream.pandoc, revision 3) of the simulated
 * guest, calling the save callbacks in the order libxenguest 4.17 does.
 * x86 PV guest:
 *
 *   headers, X86_PV_INFO, X86_CPUID_POLICY, X86_MSR_POLICY,
 *   STATIC_DATA_END, X86_PV_P2M_FRAMES, then per epoch:
 *   [live pre-copy rounds, first epoch only] suspend() PAGE_DATA*
 *   X86_TSC_INFO SHARED_INFO (per vcpu BASIC EXTENDED XSAVE MSRS)
 *   CHECKPOINT postcopy() checkpoint()     (XC_STREAM_REMUS)
 *
 * HVM container (PVH, or HVM whose device model state libxl would add):
 * domain type x86 HVM, switch_qemu_logdirty(1) first,
 *
 *   headers, X86_CPUID_POLICY, X86_MSR_POLICY, STATIC_DATA_END, then per
 *   epoch: [live rounds] suspend() PAGE_DATA* X86_TSC_INFO HVM_CONTEXT
 *   HVM_PARAMS CHECKPOINT postcopy() checkpoint()
 *
 * (4.17 writes HVM_CONTEXT before HVM_PARAMS, whatever the spec's layout
 * section says.)  Log-dirty mode is switched on before the first memory
 * pass, as libxc does (failing as it does when the hypervisor cannot:
 * "Failed to enable logdirty: 95,22,0" for PV without shadow paging, after
 * the headers are out), and off when the save ends.
 *
 * Everything is written straight to the fd (no output buffer), so the
 * stream is complete on the fd before postcopy() and checkpoint() run.
 * SIMXEN_TEE=<path>: a copy of every byte written to the fd also goes to
 * that file (tests compare it with what reached the stream when the
 * trampoline captures epochs in memory).
 * Page data goes out with writev(): a 16-byte (pfn, version) head from a
 * per-batch array and the 4080-byte tail pointed into one shared ramp.
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenguest.h>
#include <xen/domctl.h>
#include <xen/hvm/params.h>
#include <xen/hvm/save.h>

#include "simxen.h"

#define BATCH 1024                      /* MAX_BATCH_SIZE of the saver */
#define HEAD 16                         /* pfn + version */
#define IOV_CHUNK 1024                  /* IOV_MAX on Linux */

enum {
    REC_END = 0x00, REC_PAGE_DATA = 0x01, REC_X86_PV_INFO = 0x02,
    REC_X86_PV_P2M_FRAMES = 0x03, REC_X86_PV_VCPU_BASIC = 0x04,
    REC_X86_PV_VCPU_EXTENDED = 0x05, REC_X86_PV_VCPU_XSAVE = 0x06,
    REC_SHARED_INFO = 0x07, REC_X86_TSC_INFO = 0x08,
    REC_HVM_CONTEXT = 0x09, REC_HVM_PARAMS = 0x0a,
    REC_X86_PV_VCPU_MSRS = 0x0c, REC_CHECKPOINT = 0x0e,
    REC_STATIC_DATA_END = 0x10, REC_X86_CPUID_POLICY = 0x11,
    REC_X86_MSR_POLICY = 0x12,
};

/* Zero-filled blobs for the parts of the machine state nobody inspects. */
static const uint8_t zeros[sizeof(vcpu_guest_context_t)];
/* ramp[i] = i & 0xff: the tail of page (pfn, v) is ramp + 16 + rotation. */
static uint8_t ramp[SIMXEN_PAGE_SIZE + 256];

struct save {
    xc_interface *xch;
    xentoollog_logger *lg;
    int fd;
    const struct simxen_config *cfg;
    struct save_callbacks *cb;
    xc_stream_type_t type;
    int live;
    int hvm;                        /* x86 HVM stream (PVH, HVM) */
    int qemu_logdirty;              /* switch_qemu_logdirty(1) succeeded */
    uint64_t save_no;
    uint64_t epoch;                 /* 1-based; the one being sent */
    uint64_t sent;                  /* pages sent in this epoch */
    uint64_t start_ns;
    uint64_t *bitmap;
    uint64_t pfns[BATCH];
    uint64_t heads[BATCH][2];
    struct iovec iov[2 + 2 * BATCH];
};

/* ------------------------------------------------------------- writing */

static int fault_write(struct save *s)
{
    if (simxen_fault(SIMXEN_FAULT_WRITE, s->epoch)) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* SIMXEN_TEE's file, -1: none */
static int tee_fd = -1;

/* The @w bytes just written from @iov, to the tee (best effort). */
static void tee_out(const struct iovec *iov, size_t w)
{
    while (w > 0) {
        size_t n = iov->iov_len < w ? iov->iov_len : w;
        const char *p = iov->iov_base;
        size_t done = 0;

        while (done < n) {
            ssize_t t = write(tee_fd, p + done, n - done);

            if (t <= 0)
                return;
            done += (size_t)t;
        }
        w -= n;
        iov++;
    }
}

static int writev_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        int n = cnt < IOV_CHUNK ? cnt : IOV_CHUNK;
        ssize_t w = writev(fd, iov, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (tee_fd >= 0)
            tee_out(iov, (size_t)w);
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && w > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* One record from up to three body parts, padded to 8 bytes. */
static int record(struct save *s, uint32_t type, const void *a, size_t la,
                  const void *b, size_t lb, const void *c, size_t lc)
{
    static const uint8_t pad[8];
    uint32_t hdr[2] = { type, (uint32_t)(la + lb + lc) };
    struct iovec iov[5] = {
        { hdr, sizeof(hdr) }, { (void *)a, la }, { (void *)b, lb },
        { (void *)c, lc }, { (void *)pad, (8 - (la + lb + lc) % 8) % 8 },
    };

    if (fault_write(s) || writev_all(s->fd, iov, 5)) {
        simxen_log(s->lg, XTL_ERROR, errno,
                   "Failed to write record 0x%x to stream", type);
        return -1;
    }
    return 0;
}

static int write_headers(struct save *s)
{
    struct {
        uint64_t marker;
        uint32_t id, version;
        uint16_t options, res1;
        uint32_t res2;
    } __attribute__((packed)) ihdr = {
        .marker = ~0ull, .id = htonl(0x58454E46), .version = htonl(3),
        .options = htons(0),            /* bit 0 clear: little-endian */
    };
    struct {
        uint32_t type;
        uint16_t page_shift, res;
        uint32_t major, minor;
    } __attribute__((packed)) dhdr = {
        .type = 1 /* x86 PV */, .page_shift = 12, .major = 4, .minor = 17,
    };
    struct iovec iov[2] = { { &ihdr, sizeof(ihdr) }, { &dhdr, sizeof(dhdr) } };

    if (s->hvm)
        dhdr.type = 2;                  /* x86 HVM */
    if (fault_write(s) || writev_all(s->fd, iov, 2)) {
        simxen_log(s->lg, XTL_ERROR, errno,
                   "Unable to write Image Header to stream");
        return -1;
    }
    return 0;
}

static int write_static_data(struct save *s)
{
    const uint8_t pv_info[8] = { 8 /* guest width */, 4 /* pt levels */ };
    /* xen_cpuid_leaf_t: leaf, subleaf, a, b, c, d. */
    const uint32_t cpuid[2][6] = {
        { 0, 0xffffffff, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69 },
        { 1, 0xffffffff, 0x000906ea, 0x00000800, 0x80b82221, 0x078bfbff },
    };
    /* xen_msr_entry_t: idx, flags, val. */
    const struct { uint32_t idx, flags; uint64_t val; } msrs[1] = {
        { 0xce /* MSR_INTEL_PLATFORM_INFO */, 0, 0 },
    };

    return (!s->hvm && record(s, REC_X86_PV_INFO, pv_info, sizeof(pv_info),
                              0, 0, 0, 0)) ||
        record(s, REC_X86_CPUID_POLICY, cpuid, sizeof(cpuid), 0, 0, 0, 0) ||
        record(s, REC_X86_MSR_POLICY, msrs, sizeof(msrs), 0, 0, 0, 0) ||
        record(s, REC_STATIC_DATA_END, 0, 0, 0, 0, 0, 0) ? -1 : 0;
}

/* The guest's p2m lives in its last frames (512 entries per frame). */
static int write_p2m_frames(struct save *s)
{
    uint64_t pages = s->cfg->pages, frames = (pages + 511) / 512, i;
    uint32_t hdr[2] = { 0, (uint32_t)(pages - 1) };
    uint64_t *list = malloc(frames * sizeof(*list));
    int rc;

    if (!list)
        return -1;
    for (i = 0; i < frames; i++)
        list[i] = pages - frames + i;
    rc = record(s, REC_X86_PV_P2M_FRAMES, hdr, sizeof(hdr), list,
                frames * sizeof(*list), 0, 0);
    free(list);
    return rc;
}

static int flush_batch(struct save *s, unsigned int n)
{
    uint32_t rec[4] = { REC_PAGE_DATA, 0, n, 0 };
    const uint64_t *versions;
    unsigned int i;
    int cnt = 0;

    rec[1] = 8 + n * 8 + n * SIMXEN_PAGE_SIZE;
    simxen_lock();
    simxen_advance();               /* the guest ran while we wrote */
    versions = simxen_versions();
    for (i = 0; i < n; i++) {
        s->heads[i][0] = s->pfns[i];
        s->heads[i][1] = versions[s->pfns[i]];
    }
    simxen_unlock();

    s->iov[cnt++] = (struct iovec){ rec, sizeof(rec) };
    s->iov[cnt++] = (struct iovec){ s->pfns, n * sizeof(uint64_t) };
    for (i = 0; i < n; i++) {
        unsigned int rot = (unsigned int)((s->heads[i][0] * 7 +
                                           s->heads[i][1]) & 0xff);
        s->iov[cnt++] = (struct iovec){ s->heads[i], HEAD };
        s->iov[cnt++] = (struct iovec){ ramp + HEAD + rot,
                                        SIMXEN_PAGE_SIZE - HEAD };
    }
    if (fault_write(s) || writev_all(s->fd, s->iov, cnt)) {
        simxen_log(s->lg, XTL_ERROR, errno,
                   "Failed to write page data to stream");
        return -1;
    }
    s->sent += n;
    return 0;
}

static int send_pages(struct save *s)
{
    uint64_t words = (s->cfg->pages + 63) / 64, w;
    unsigned int n = 0;

    for (w = 0; w < words; w++) {
        uint64_t bits = s->bitmap[w];
        while (bits) {
            s->pfns[n++] = w * 64 + (uint64_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (n == BATCH) {
                if (flush_batch(s, n))
                    return -1;
                n = 0;
            }
        }
    }
    return n ? flush_batch(s, n) : 0;
}

/* ------------------------------------------------------------ the save */

/* libxc's default policy: stop-and-copy below 50 dirty pages or after 5
 * iterations. */
static int default_policy(struct precopy_stats st, void *user)
{
    (void)user;
    return ((st.dirty_count >= 0 && st.dirty_count < 50) ||
            st.iteration >= 5)
        ? XGS_POLICY_STOP_AND_COPY : XGS_POLICY_CONTINUE_PRECOPY;
}

static int send_memory_live(struct save *s)
{
    precopy_policy_t policy = s->cb->precopy_policy
        ? s->cb->precopy_policy : default_policy;
    struct precopy_stats st = { 0, 0, (long)s->cfg->pages };
    long to_send = (long)s->cfg->pages;
    unsigned int x = 0;
    int decision;

    simxen_lock();
    simxen_take_dirty(s->bitmap, 1);    /* log-dirty on: everything */
    simxen_unlock();
    for (;;) {
        decision = policy(st, s->cb->data);
        x++;
        if (to_send > 0 && decision != XGS_POLICY_ABORT && send_pages(s))
            return -1;
        if (decision != XGS_POLICY_CONTINUE_PRECOPY)
            break;
        st.iteration = x;
        st.total_written += (unsigned long)(st.dirty_count > 0
                                            ? st.dirty_count : 0);
        st.dirty_count = -1;
        decision = policy(st, s->cb->data);
        if (decision != XGS_POLICY_CONTINUE_PRECOPY)
            break;
        simxen_lock();
        to_send = (long)simxen_take_dirty(s->bitmap, 0);
        simxen_unlock();
        st.dirty_count = to_send;
    }
    if (decision == XGS_POLICY_ABORT) {
        simxen_log(s->lg, XTL_ERROR, -1, "Abort precopy loop");
        return -1;
    }
    return 0;
}

static int suspend_and_send_dirty(struct save *s, int everything)
{
    int rc = s->cb->suspend(s->cb->data), down;

    if (rc == 0) {
        simxen_log(s->lg, XTL_ERROR, -1,
                   "save callback suspend() failed: %d", rc);
        return -1;
    }
    simxen_lock();
    down = simxen_is_suspended();
    if (down)
        simxen_take_dirty(s->bitmap, everything);
    simxen_unlock();
    if (!down) {
        simxen_log(s->lg, XTL_ERROR, -1,
                   "Domain has not been suspended: shutdown 0, reason 0");
        return -1;
    }
    return send_pages(s);
}

/* HVM_PARAMS: the parameters libxenguest 4.17 saves, in its order, those
 * that are set. */
static int write_hvm_params(struct save *s)
{
    static const uint32_t params[] = {
        HVM_PARAM_STORE_PFN, HVM_PARAM_IOREQ_PFN, HVM_PARAM_BUFIOREQ_PFN,
        HVM_PARAM_PAGING_RING_PFN, HVM_PARAM_MONITOR_RING_PFN,
        HVM_PARAM_SHARING_RING_PFN, HVM_PARAM_VM86_TSS_SIZED,
        HVM_PARAM_CONSOLE_PFN, HVM_PARAM_ACPI_IOPORTS_LOCATION,
        HVM_PARAM_VIRIDIAN, HVM_PARAM_IDENT_PT,
        HVM_PARAM_VM_GENERATION_ID_ADDR, HVM_PARAM_IOREQ_SERVER_PFN,
        HVM_PARAM_NR_IOREQ_SERVER_PAGES, HVM_PARAM_X87_FIP_WIDTH,
        HVM_PARAM_MCA_CAP,
    };
    struct { uint64_t index, value; } entries[sizeof(params) /
                                              sizeof(params[0])];
    uint32_t hdr[2] = { 0, 0 };             /* count, reserved */
    unsigned int i;

    for (i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        uint64_t value = 0;

        if (xc_hvm_param_get(s->xch, s->cfg->domid, params[i], &value)) {
            simxen_log(s->lg, XTL_ERROR, errno,
                       "Failed to get HVMPARAM at index %u", params[i]);
            return -1;
        }
        if (value) {
            entries[hdr[0]].index = params[i];
            entries[hdr[0]].value = value;
            hdr[0]++;
        }
    }
    if (!hdr[0])
        return 0;
    return record(s, REC_HVM_PARAMS, hdr, sizeof(hdr), entries,
                  hdr[0] * sizeof(entries[0]), 0, 0);
}

/* HVM_CONTEXT: what XEN_DOMCTL_gethvmcontext returns for an HVM container
 * with an emulated local APIC only (a PVH guest): the save header, then
 * per vcpu its CPU, LAPIC, LAPIC_REGS and MTRR state, then END; each
 * behind a (typecode, instance, length) descriptor. */
struct ctx_buf {
    uint8_t *data;
    size_t len;
};

static void ctx_add(struct ctx_buf *b, uint16_t code, uint16_t instance,
                    const void *body, uint32_t len)
{
    struct hvm_save_descriptor d = { code, instance, len };

    memcpy(b->data + b->len, &d, sizeof(d));
    b->len += sizeof(d);
    if (len)
        memcpy(b->data + b->len, body, len);
    b->len += len;
}

static int write_hvm_context(struct save *s)
{
    size_t per_vcpu = 4 * sizeof(struct hvm_save_descriptor) +
        HVM_SAVE_LENGTH(CPU) + HVM_SAVE_LENGTH(LAPIC) +
        HVM_SAVE_LENGTH(LAPIC_REGS) + HVM_SAVE_LENGTH(MTRR);
    struct ctx_buf b = { NULL, 0 };
    struct hvm_save_header h = {
        .magic = HVM_FILE_MAGIC, .version = HVM_FILE_VERSION,
        .cpuid = 0x000906ea, .gtsc_khz = 2400000,
    };
    struct hvm_hw_cpu cpu;
    struct hvm_hw_lapic lapic;
    struct hvm_hw_lapic_regs regs;
    struct hvm_hw_mtrr mtrr;
    unsigned int v;
    int rc;

    b.data = malloc(2 * sizeof(struct hvm_save_descriptor) +
                    HVM_SAVE_LENGTH(HEADER) + s->cfg->vcpus * per_vcpu);
    if (!b.data)
        return -1;
    ctx_add(&b, HVM_SAVE_CODE(HEADER), 0, &h, sizeof(h));
    for (v = 0; v < s->cfg->vcpus; v++) {
        memset(&cpu, 0, sizeof(cpu));
        cpu.cr0 = 0x80050033;               /* PG WP NE ET MP PE */
        cpu.cr4 = 0x003706f0;
        cpu.msr_efer = 0xd01;               /* NXE LMA LME SCE */
        cpu.rip = 0xffffffff81000000ull + s->epoch;
        cpu.tsc = simxen_now_ns() - s->start_ns;
        memset(&lapic, 0, sizeof(lapic));
        lapic.apic_base_msr = 0xfee00000 | (v ? 0 : 0x100) | 0x800;
        memset(&regs, 0, sizeof(regs));
        regs.data[0x20] = (uint8_t)v;       /* APIC ID register */
        memset(&mtrr, 0, sizeof(mtrr));
        mtrr.msr_mtrr_def_type = 0xc06;     /* enabled, write-back */
        ctx_add(&b, HVM_SAVE_CODE(CPU), v, &cpu, sizeof(cpu));
        ctx_add(&b, HVM_SAVE_CODE(LAPIC), v, &lapic, sizeof(lapic));
        ctx_add(&b, HVM_SAVE_CODE(LAPIC_REGS), v, &regs, sizeof(regs));
        ctx_add(&b, HVM_SAVE_CODE(MTRR), v, &mtrr, sizeof(mtrr));
    }
    ctx_add(&b, HVM_SAVE_CODE(END), 0, NULL, 0);
    rc = record(s, REC_HVM_CONTEXT, b.data, b.len, 0, 0, 0, 0);
    free(b.data);
    return rc;
}

static int end_of_checkpoint(struct save *s)
{
    struct {
        uint32_t mode, khz;
        uint64_t nsec;
        uint32_t incarnation, res;
    } tsc = { 0, 2400000, simxen_now_ns() - s->start_ns,
              (uint32_t)s->epoch, 0 };
    unsigned int v;

    if (s->hvm)
        return record(s, REC_X86_TSC_INFO, &tsc, sizeof(tsc), 0, 0, 0, 0) ||
            write_hvm_context(s) || write_hvm_params(s) ? -1 : 0;
    if (record(s, REC_X86_TSC_INFO, &tsc, sizeof(tsc), 0, 0, 0, 0) ||
        record(s, REC_SHARED_INFO, zeros, SIMXEN_PAGE_SIZE, 0, 0, 0, 0))
        return -1;
    for (v = 0; v < s->cfg->vcpus; v++) {
        uint32_t vhdr[2] = { v, 0 };
        struct xen_domctl_ext_vcpucontext ext;
        uint64_t xsave_head[2] = { 3, 3 };          /* xcr0, xcr0_accum */
        struct { uint32_t index, reserved; uint64_t value; } msr = {
            0x48 /* MSR_SPEC_CTRL */, 0, 0 };

        memset(&ext, 0, sizeof(ext));
        ext.vcpu = v;
        ext.size = sizeof(ext);
        if (record(s, REC_X86_PV_VCPU_BASIC, vhdr, sizeof(vhdr), zeros,
                   sizeof(vcpu_guest_context_t), 0, 0) ||
            record(s, REC_X86_PV_VCPU_EXTENDED, vhdr, sizeof(vhdr), &ext,
                   sizeof(ext), 0, 0) ||
            record(s, REC_X86_PV_VCPU_XSAVE, vhdr, sizeof(vhdr), xsave_head,
                   sizeof(xsave_head), zeros, 512 + 64) ||
            record(s, REC_X86_PV_VCPU_MSRS, vhdr, sizeof(vhdr), &msr,
                   sizeof(msr), 0, 0))
            return -1;
    }
    return 0;
}

/* libxc's juggling (needed when qemu tracks VRAM): on; else off and on. */
static int enable_logdirty(struct save *s)
{
    int on1 = 0, off = 0, on2 = 0, rc;

    simxen_lock();
    rc = simxen_logdirty(1);
    if (rc) {
        on1 = errno;
        rc = simxen_logdirty(0);
        if (rc)
            off = errno;
        else if ((rc = simxen_logdirty(1)))
            on2 = errno;
    }
    simxen_unlock();
    if (rc)
        simxen_log(s->lg, XTL_ERROR, errno,
                   "Failed to enable logdirty: %d,%d,%d", on1, off, on2);
    return rc;
}

static int save_loop(struct save *s)
{
    int rc;

    if (write_headers(s) || write_static_data(s) ||
        (!s->hvm && write_p2m_frames(s)))
        return -1;
    for (;;) {
        int first = s->epoch == 1;

        s->sent = 0;
        if (first && enable_logdirty(s))
            return -1;
        if (s->live && first)
            rc = send_memory_live(s) || suspend_and_send_dirty(s, 0);
        else
            rc = suspend_and_send_dirty(s, first);
        if (rc || end_of_checkpoint(s))
            return -1;
        if (s->type == XC_STREAM_PLAIN)
            return record(s, REC_END, 0, 0, 0, 0, 0, 0);
        /* The version vector is on disk before the CHECKPOINT record is
         * on the wire, so a reader never finds one without the other. */
        simxen_lock();
        rc = simxen_record_checkpoint(s->save_no, s->epoch, s->sent);
        simxen_unlock();
        if (rc)
            simxen_log(s->lg, XTL_WARN, errno,
                       "simxen: cannot record checkpoint %llu",
                       (unsigned long long)s->epoch);
        if (record(s, REC_CHECKPOINT, 0, 0, 0, 0, 0, 0))
            return -1;
        rc = s->cb->postcopy(s->cb->data);
        if (rc <= 0)
            return rc;
        rc = s->cb->checkpoint(s->cb->data);
        if (rc <= 0)
            return rc;
        s->epoch++;
    }
}

int xc_domain_save(xc_interface *xch, int io_fd, uint32_t dom, uint32_t flags,
                   struct save_callbacks *callbacks,
                   xc_stream_type_t stream_type, int recv_fd)
{
    struct save *s;
    xc_dominfo_t info;
    int rc, saved_errno;
    unsigned int i;

    (void)recv_fd;
    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    if (xc_domain_getinfo(xch, dom, 1, &info) != 1 || info.domid != dom ||
        dom == SIMXEN_DOM0) {
        simxen_log(xch->logger, XTL_ERROR, ESRCH, "Domain %u does not exist",
                   dom);
        errno = ESRCH;
        return -1;
    }
    if (!callbacks || !callbacks->suspend ||
        (info.hvm && !callbacks->switch_qemu_logdirty) ||
        (stream_type == XC_STREAM_REMUS &&
         (!callbacks->postcopy || !callbacks->checkpoint)) ||
        (stream_type != XC_STREAM_REMUS && stream_type != XC_STREAM_PLAIN)) {
        /* libxc asserts here; a simulator had better say why. */
        simxen_log(xch->logger, XTL_ERROR, EINVAL,
                   "simxen: missing callbacks or unsupported stream type %d",
                   (int)stream_type);
        errno = EINVAL;
        return -1;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    for (i = 0; i < sizeof(ramp); i++)
        ramp[i] = (uint8_t)i;
    s->xch = xch;
    s->lg = xch->logger;
    s->fd = io_fd;
    s->cfg = simxen_config();
    s->cb = callbacks;
    s->type = stream_type;
    s->live = !!(flags & XCFLAGS_LIVE);
    s->hvm = info.hvm;
    s->epoch = 1;
    s->start_ns = simxen_now_ns();
    s->bitmap = calloc((s->cfg->pages + 63) / 64, sizeof(uint64_t));
    if (!s->bitmap) {
        free(s);
        return -1;
    }
    simxen_lock();
    s->save_no = simxen_new_save();
    simxen_unlock();
    if (getenv("SIMXEN_TEE") && *getenv("SIMXEN_TEE"))
        tee_fd = open(getenv("SIMXEN_TEE"),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    simxen_log(s->lg, XTL_INFO, -1, "Saving domain %u, type x86 %s", dom,
               s->hvm ? "HVM" : "PV");

    if (s->hvm) {
        /* x86_hvm_setup(): qemu's log-dirty tracking, before anything is
         * written. */
        if (callbacks->switch_qemu_logdirty(dom, 1, callbacks->data)) {
            simxen_log(s->lg, XTL_ERROR, errno,
                       "Couldn't enable qemu log-dirty mode");
            rc = -1;
            goto out;
        }
        s->qemu_logdirty = 1;
    }
    rc = save_loop(s);
 out:
    saved_errno = errno;
    if (rc)
        simxen_log(s->lg, XTL_ERROR, saved_errno, "Save failed");
    /* cleanup(): log-dirty off whatever happened, as libxc does. */
    simxen_lock();
    if (simxen_logdirty_enabled())
        simxen_logdirty(0);
    simxen_unlock();
    if (s->qemu_logdirty &&
        callbacks->switch_qemu_logdirty(dom, 0, callbacks->data))
        simxen_log(s->lg, XTL_ERROR, errno,
                   "Couldn't disable qemu log-dirty mode");
    free(s->bitmap);
    free(s);
    if (tee_fd >= 0)
        close(tee_fd);
    tee_fd = -1;
    errno = saved_errno;
    return rc;
}

/* ----------------------------------------------- resume, suspend evtchn */

int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast)
{
    int rc;

    if (!xch || xch->magic != SIMXEN_XCH_MAGIC) {
        errno = EBADF;
        return -1;
    }
    simxen_lock();
    if (domid != simxen_config()->domid) {
        errno = ESRCH;
        rc = -1;
    } else {
        rc = simxen_resume(fast);
    }
    simxen_unlock();
    if (rc)
        simxen_log(xch->logger, XTL_ERROR, errno, "Resuming domain %u failed",
                   domid);
    return rc;
}

int xc_await_suspend(xc_interface *xch, struct xenevtchn_handle *xce,
                     int suspend_evtchn)
{
    int rc;

    do {
        rc = xenevtchn_pending(xce);
        if (rc < 0) {
            simxen_log(xch ? xch->logger : NULL, XTL_ERROR, errno,
                       "error polling suspend notification channel: %d", rc);
            return -1;
        }
    } while (rc != suspend_evtchn);
    xenevtchn_unmask(xce, (evtchn_port_t)suspend_evtchn);
    return 0;
}

int xc_suspend_evtchn_release(xc_interface *xch, struct xenevtchn_handle *xce,
                              uint32_t domid, int suspend_evtchn, int *lockfd)
{
    (void)xch;
    (void)domid;
    if (suspend_evtchn >= 0)
        xenevtchn_unbind(xce, (evtchn_port_t)suspend_evtchn);
    if (lockfd && *lockfd >= 0) {
        close(*lockfd);
        *lockfd = -1;
    }
    return 0;
}

int xc_suspend_evtchn_init_sane(xc_interface *xch,
                                struct xenevtchn_handle *xce,
                                uint32_t domid, int port, int *lockfd)
{
    int local;

    /* The real lock is a file under /run/xen; a descriptor will do here. */
    *lockfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (*lockfd < 0)
        return -1;
    local = xenevtchn_bind_interdomain(xce, domid, (evtchn_port_t)port);
    if (local < 0) {
        simxen_log(xch ? xch->logger : NULL, XTL_ERROR, errno,
                   "failed to bind suspend event channel: %d", local);
        xc_suspend_evtchn_release(xch, xce, domid, -1, lockfd);
        return -1;
    }
    return local;
}

int xc_suspend_evtchn_init_exclusive(xc_interface *xch,
                                     struct xenevtchn_handle *xce,
                                     uint32_t domid, int port, int *lockfd)
{
    int local = xc_suspend_evtchn_init_sane(xch, xce, domid, port, lockfd);

    if (local < 0)
        return local;
    /* Eat the notification a fresh binding starts with. */
    if (xc_await_suspend(xch, xce, local) < 0) {
        xc_suspend_evtchn_release(xch, xce, domid, local, lockfd);
        return -1;
    }
    return local;
}
