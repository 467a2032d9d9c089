/*
 * simxen core (libsimxen.so.0): the simulated domain shared by the
 * stand-in libraries.  Written for xen-remus-compat; see simxen.h.
 *
 * The guest does not run on a thread of its own.  Its memory is a vector
 * of page versions; whenever the simulation looks at it (a page batch, a
 * suspend), simxen_advance() dirties rate x elapsed-run-time pages first,
 * against CLOCK_MONOTONIC, following the configured pattern.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "simxen.h"

#define MAX_NODES 64
#define MAX_FAULTS 16

struct fault { enum simxen_fault kind; uint64_t n; int used; };
struct node { char *path; char *value; };

static struct simxen_config cfg;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_errno;
static pthread_mutex_t big_lock;

static struct fault faults[MAX_FAULTS];
static unsigned int nfaults;

/* The guest. */
static int suspended, destroyed;
static uint64_t suspends, suspend_requests, saves;
static uint64_t *versions, *dirty, *recorded;
static int recorded_valid;
static uint64_t last_ns, rng, seq_cursor;
static double carry;
static int runlog_fd = -1, versions_fd = -1, cplog_fd = -1, ldlog_fd = -1;
static int logdirty;

static struct node nodes[MAX_NODES];
static struct simxen_evtchn_sink *evtchn_sinks;
static struct simxen_watch_sink *watch_sinks;

/* ---------------------------------------------------------------- config */

static int bad_env(const char *name, const char *value, const char *why)
{
    fprintf(stderr, "simxen: bad %s=%s: %s\n", name, value, why);
    return -1;
}

static int env_u64(const char *name, uint64_t dflt, uint64_t lo, uint64_t hi,
                   uint64_t *out)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (!s || !*s) {
        *out = dflt;
        return 0;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || *end || s[0] == '-')
        return bad_env(name, s, "not an unsigned integer");
    if (v < lo || v > hi)
        return bad_env(name, s, "out of range");
    *out = v;
    return 0;
}

struct word { const char *word; int value; };

static int env_word(const char *name, const struct word *table, int dflt,
                    int *out)
{
    const char *s = getenv(name);

    if (!s || !*s) {
        *out = dflt;
        return 0;
    }
    for (; table->word; table++) {
        if (!strcmp(s, table->word)) {
            *out = table->value;
            return 0;
        }
    }
    return bad_env(name, s, "unknown value");
}

static const struct word pattern_words[] = {
    { "random", SIMXEN_RANDOM }, { "sequential", SIMXEN_SEQUENTIAL },
    { "hotspot", SIMXEN_HOTSPOT }, { NULL, 0 } };
static const struct word suspend_words[] = {
    { "evtchn", 1 }, { "xenstore", 0 }, { NULL, 0 } };
static const struct word type_words[] = {
    { "pv", SIMXEN_PV }, { "hvm", SIMXEN_HVM }, { "pvhvm", SIMXEN_PVHVM },
    { "pvh", SIMXEN_PVH }, { NULL, 0 } };
static const struct word fault_words[] = {
    { "open", SIMXEN_FAULT_OPEN }, { "suspend", SIMXEN_FAULT_SUSPEND },
    { "write", SIMXEN_FAULT_WRITE }, { "resume", SIMXEN_FAULT_RESUME },
    { NULL, 0 } };

/* SIMXEN_FAIL = item[,item...], item = kind[@N] (N defaults to 1). */
static int parse_faults(void)
{
    const char *s = getenv("SIMXEN_FAIL");
    char buf[256], *save = NULL, *item;

    if (!s || !*s)
        return 0;
    if (strlen(s) >= sizeof(buf))
        return bad_env("SIMXEN_FAIL", s, "too long");
    strcpy(buf, s);
    for (item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *at = strchr(item, '@'), *end;
        const struct word *w;
        unsigned long long n = 1;

        if (at) {
            *at = '\0';
            errno = 0;
            n = strtoull(at + 1, &end, 10);
            if (errno || *end || !at[1] || n == 0)
                return bad_env("SIMXEN_FAIL", s, "N in kind@N must be >= 1");
        }
        for (w = fault_words; w->word && strcmp(w->word, item); w++)
            ;
        if (!w->word)
            return bad_env("SIMXEN_FAIL", s,
                           "kinds are open, suspend, write, resume");
        if (nfaults == MAX_FAULTS)
            return bad_env("SIMXEN_FAIL", s, "too many items");
        faults[nfaults++] = (struct fault){ w->value, n, 0 };
    }
    return 0;
}

static int parse_config(void)
{
    uint64_t v;
    int w;
    const char *s;

    if (env_u64("SIMXEN_DOMID", 1, 1, 0x7fef, &v))
        return -1;
    cfg.domid = (uint32_t)v;
    s = getenv("SIMXEN_NAME");
    snprintf(cfg.name, sizeof(cfg.name), "%s", s && *s ? s : "simguest");
    if (env_u64("SIMXEN_PAGES", 16384, 1, 1u << 24, &cfg.pages))
        return -1;
    if (env_u64("SIMXEN_VCPUS", 1, 1, 128, &v))
        return -1;
    cfg.vcpus = (unsigned int)v;
    s = getenv("SIMXEN_DIRTY_RATE");
    cfg.dirty_rate = 5.0;
    if (s && *s) {
        char *end;
        errno = 0;
        cfg.dirty_rate = strtod(s, &end);
        if (errno || *end || !(cfg.dirty_rate >= 0.0) || cfg.dirty_rate > 1e6)
            return bad_env("SIMXEN_DIRTY_RATE", s, "want 0 <= rate <= 1e6");
    }
    if (env_word("SIMXEN_DIRTY_PATTERN", pattern_words, SIMXEN_RANDOM, &w))
        return -1;
    cfg.pattern = w;
    if (env_u64("SIMXEN_SEED", 1, 0, UINT64_MAX, &cfg.seed))
        return -1;
    s = getenv("SIMXEN_STATE_DIR");
    if (s && strlen(s) >= sizeof(cfg.state_dir) - 64)
        return bad_env("SIMXEN_STATE_DIR", s, "path too long");
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", s ? s : "");
    if (env_word("SIMXEN_TYPE", type_words, SIMXEN_PV, &w))
        return -1;
    cfg.type = w;
    /* Only a PV guest offers a suspend event channel unless told to: a
     * Linux PVH or PV-on-HVM guest offers none, an HVM guest without PV
     * drivers cannot. */
    if (env_word("SIMXEN_SUSPEND", suspend_words, cfg.type == SIMXEN_PV,
                 &cfg.suspend_evtchn))
        return -1;
    if (env_u64("SIMXEN_NO_SHADOW", 0, 0, 1, &v))
        return -1;
    cfg.shadow_paging = !v;
    return parse_faults();
}

/* Never pretend to be Xen where Xen is: that would hide the real one. */
static int refuse_on_xen_host(void)
{
    static const char *const marks[] = { "/proc/xen/privcmd", "/dev/xen" };
    const char *force = getenv("SIMXEN_FORCE");
    unsigned int i;

    if (force && !strcmp(force, "1"))
        return 0;
    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (access(marks[i], F_OK) == 0) {
            fprintf(stderr, "simxen: refusing to simulate Xen on a Xen host "
                    "(%s exists); set SIMXEN_FORCE=1 to override\n", marks[i]);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ recording */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int state_path(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int state_path(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, len, "%s/", cfg.state_dir);

    va_start(ap, fmt);
    n += vsnprintf(buf + n, len - n, fmt, ap);
    va_end(ap);
    return n < (int)len ? 0 : -1;
}

static void write_domain_json(void)
{
    static const char *const pattern_names[] = {
        "random", "sequential", "hotspot" };
    static const char *const type_names[] = { "pv", "hvm", "pvhvm", "pvh" };
    char path[1100], tmp[1100];
    FILE *f;

    if (state_path(path, sizeof(path), "domain.json") ||
        state_path(tmp, sizeof(tmp), "domain.json.%d", (int)getpid()))
        return;
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "simxen: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    fprintf(f, "{\"domid\": %u, \"name\": ", cfg.domid);
    json_string(f, cfg.name);
    fprintf(f, ", \"pages\": %llu, \"page_size\": %u, \"vcpus\": %u, "
            "\"type\": \"%s\", \"dirty_rate\": %.17g, \"dirty_pattern\": "
            "\"%s\", \"seed\": %llu, \"suspend\": \"%s\", \"pid\": %d, "
            "\"device_model\": %s, \"shadow_paging\": %s, "
            "\"contract\": \"simpage-v1\"}\n",
            (unsigned long long)cfg.pages, SIMXEN_PAGE_SIZE, cfg.vcpus,
            type_names[cfg.type], cfg.dirty_rate, pattern_names[cfg.pattern],
            (unsigned long long)cfg.seed,
            cfg.suspend_evtchn ? "evtchn" : "xenstore", (int)getpid(),
            simxen_has_device_model() ? "true" : "false",
            cfg.shadow_paging ? "true" : "false");
    if (fclose(f) == 0)
        rename(tmp, path);
}

/* runstate.log: "REALTIME MONOTONIC STATE SUSPENSIONS" per transition. */
static void log_runstate(const char *state)
{
    struct timespec rt, mt;
    char line[160];
    int n;

    if (runlog_fd < 0)
        return;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    n = snprintf(line, sizeof(line), "%lld.%06ld %lld.%09ld %s %llu\n",
                 (long long)rt.tv_sec, rt.tv_nsec / 1000,
                 (long long)mt.tv_sec, mt.tv_nsec, state,
                 (unsigned long long)suspends);
    if (write(runlog_fd, line, n) != n)
        fprintf(stderr, "simxen: runstate.log: %s\n", strerror(errno));
}

static int open_log(char *path, size_t len, const char *name)
{
    int fd = -1;

    if (!state_path(path, len, "%s", name))
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fprintf(stderr, "simxen: cannot open %s: %s\n", name, strerror(errno));
    return fd;
}

/* ----------------------------------------------------------------- init */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void init_xenstore(void)
{
    char path[128], value[32];

    snprintf(path, sizeof(path), "/local/domain/%u/name", cfg.domid);
    simxen_xs_set(path, cfg.name);
    snprintf(path, sizeof(path), "/local/domain/%u/domid", cfg.domid);
    snprintf(value, sizeof(value), "%u", cfg.domid);
    simxen_xs_set(path, value);
    snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
             cfg.domid);
    simxen_xs_set(path, "");
    if (cfg.suspend_evtchn) {
        snprintf(path, sizeof(path),
                 "/local/domain/%u/device/suspend/event-channel", cfg.domid);
        snprintf(value, sizeof(value), "%d", SIMXEN_SUSPEND_REMOTE_PORT);
        simxen_xs_set(path, value);
    }
    if (simxen_has_device_model()) {
        /* What libxl's device-model spawn leaves (DEVICE_MODEL_XS_PATH). */
        snprintf(path, sizeof(path), "/local/domain/0/device-model/%u/state",
                 cfg.domid);
        simxen_xs_set(path, "running");
        /* What qemu-xen's xen_save_physmap() writes once the guest maps
         * the VGA framebuffer (hex, no 0x), which libxl sends with every
         * checkpoint as EMULATOR_XENSTORE_DATA. */
        snprintf(path, sizeof(path), "/local/domain/0/device-model/%u/"
                 "physmap/40000000/start_addr", cfg.domid);
        simxen_xs_set(path, "f0000000");
        snprintf(path, sizeof(path), "/local/domain/0/device-model/%u/"
                 "physmap/40000000/size", cfg.domid);
        simxen_xs_set(path, "800000");
        snprintf(path, sizeof(path), "/local/domain/0/device-model/%u/"
                 "physmap/40000000/name", cfg.domid);
        simxen_xs_set(path, "vga.vram");
    }
    simxen_xs_set("/local/domain/0/name", "Domain-0");
}

static void do_init(void)
{
    const char *enable = getenv("SIMXEN_ENABLE");
    pthread_mutexattr_t attr;
    uint64_t seed;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&big_lock, &attr);
    pthread_mutexattr_destroy(&attr);

    if (!enable || strcmp(enable, "1")) {
        fprintf(stderr, "simxen: these are simulated Xen libraries; refusing "
                "to run without SIMXEN_ENABLE=1 (see xen_remus_compat.sim.simxen)\n");
        init_errno = ENODEV;
        return;
    }
    if (refuse_on_xen_host()) {
        init_errno = EEXIST;
        return;
    }
    if (parse_config()) {
        init_errno = EINVAL;
        return;
    }
    versions = calloc(cfg.pages, sizeof(*versions));
    recorded = calloc(cfg.pages, sizeof(*recorded));
    dirty = calloc((cfg.pages + 63) / 64, sizeof(*dirty));
    if (!versions || !dirty || !recorded) {
        init_errno = ENOMEM;
        return;
    }
    seed = cfg.seed;
    rng = splitmix(&seed) | 1;
    last_ns = simxen_now_ns();
    init_xenstore();
    if (cfg.state_dir[0]) {
        char path[1100];
        if (mkdir(cfg.state_dir, 0755) && errno != EEXIST) {
            fprintf(stderr, "simxen: cannot create %s: %s\n", cfg.state_dir,
                    strerror(errno));
            init_errno = errno;
            return;
        }
        write_domain_json();
        runlog_fd = open_log(path, sizeof(path), "runstate.log");
        versions_fd = open_log(path, sizeof(path), "versions.log");
        cplog_fd = open_log(path, sizeof(path), "checkpoints.log");
        ldlog_fd = open_log(path, sizeof(path), "logdirty.log");
    }
    log_runstate("running");
}

int simxen_init(void)
{
    pthread_once(&once, do_init);
    if (init_errno) {
        errno = init_errno;
        return -1;
    }
    return 0;
}

const struct simxen_config *simxen_config(void)
{
    return &cfg;
}

void simxen_lock(void)
{
    pthread_mutex_lock(&big_lock);
}

void simxen_unlock(void)
{
    pthread_mutex_unlock(&big_lock);
}

int simxen_fault(enum simxen_fault kind, uint64_t n)
{
    unsigned int i;

    for (i = 0; i < nfaults; i++) {
        if (faults[i].kind == kind && faults[i].n == n && !faults[i].used) {
            faults[i].used = 1;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------ HVM, log-dirty */

int simxen_is_hvm_container(void)
{
    return cfg.type != SIMXEN_PV;
}

int simxen_has_device_model(void)
{
    return cfg.type == SIMXEN_HVM || cfg.type == SIMXEN_PVHVM;
}

/* HVM_PARAM_* indexes (xen/hvm/params.h), the ones libxenguest sets up
 * for an HVM container and xc_domain_save sends. */
enum {
    P_CALLBACK_IRQ = 0, P_STORE_PFN = 1, P_IOREQ_PFN = 5,
    P_BUFIOREQ_PFN = 6, P_IDENT_PT = 12, P_CONSOLE_PFN = 17,
    P_PAGING_RING_PFN = 27, P_MONITOR_RING_PFN = 28,
    P_SHARING_RING_PFN = 29, P_IOREQ_SERVER_PFN = 32,
    P_NR_IOREQ_SERVER_PAGES = 33,
};
/* libxenguest's SPECIALPAGE_* order. */
enum { SP_PAGING, SP_ACCESS, SP_SHARING, SP_BUFIOREQ, SP_XENSTORE, SP_IOREQ,
       SP_IDENT_PT, SP_CONSOLE };

static uint64_t special_pfn(unsigned int which)
{
    uint64_t n = cfg.pages < SIMXEN_SPECIAL_PAGES ? cfg.pages
                                                  : SIMXEN_SPECIAL_PAGES;

    return cfg.pages - n + which % n;
}

int simxen_hvm_param(uint32_t index, uint64_t *value)
{
    if (!simxen_is_hvm_container()) {
        errno = EINVAL;
        return -1;
    }
    switch (index) {
    case P_CALLBACK_IRQ:
        /* A vector callback (type 2 in bits 63:56): Linux sets one up as a
         * PVH guest and as a PV-on-HVM one; a plain HVM guest has none. */
        *value = cfg.type == SIMXEN_HVM ? 0 : ((uint64_t)2 << 56) | 0xf3;
        break;
    case P_STORE_PFN: *value = special_pfn(SP_XENSTORE); break;
    case P_IOREQ_PFN: *value = special_pfn(SP_IOREQ); break;
    case P_BUFIOREQ_PFN: *value = special_pfn(SP_BUFIOREQ); break;
    case P_IDENT_PT: *value = special_pfn(SP_IDENT_PT) << 12; break;
    case P_CONSOLE_PFN: *value = special_pfn(SP_CONSOLE); break;
    case P_PAGING_RING_PFN: *value = special_pfn(SP_PAGING); break;
    case P_MONITOR_RING_PFN: *value = special_pfn(SP_ACCESS); break;
    case P_SHARING_RING_PFN: *value = special_pfn(SP_SHARING); break;
    /* Extra ioreq server pages: only with a device model. */
    case P_IOREQ_SERVER_PFN:
        *value = simxen_has_device_model() && cfg.pages > 2 * SIMXEN_SPECIAL_PAGES
            ? cfg.pages - 2 * SIMXEN_SPECIAL_PAGES : 0;
        break;
    case P_NR_IOREQ_SERVER_PAGES:
        *value = simxen_has_device_model() ? SIMXEN_SPECIAL_PAGES : 0;
        break;
    default:
        *value = 0;
        break;
    }
    return 0;
}

/* logdirty.log: "REALTIME on|off|refused-on|refused-off ERRNO" per call. */
static void log_logdirty(const char *what, int err)
{
    struct timespec rt;
    char line[96];
    int n;

    if (ldlog_fd < 0)
        return;
    clock_gettime(CLOCK_REALTIME, &rt);
    n = snprintf(line, sizeof(line), "%lld.%06ld %s %d\n",
                 (long long)rt.tv_sec, rt.tv_nsec / 1000, what, err);
    if (write(ldlog_fd, line, n) != n)
        fprintf(stderr, "simxen: logdirty.log: %s\n", strerror(errno));
}

int simxen_logdirty(int enable)
{
    int err = 0;

    if (destroyed)
        err = ESRCH;
    else if (cfg.type == SIMXEN_PV && !cfg.shadow_paging)
        /* Xen without CONFIG_SHADOW_PAGING: a PV domain has no log-dirty
         * ops (enable: EOPNOTSUPP), and no shadow mode to switch off. */
        err = enable ? EOPNOTSUPP : EINVAL;
    else if (enable && logdirty)
        err = EINVAL;                   /* paging_log_dirty_enable() */
    if (err) {
        log_logdirty(enable ? "refused-on" : "refused-off", err);
        errno = err;
        return -1;
    }
    logdirty = enable;
    log_logdirty(enable ? "on" : "off", 0);
    return 0;
}

int simxen_logdirty_enabled(void)
{
    return logdirty;
}

/* ---------------------------------------------------------------- guest */

uint64_t simxen_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int simxen_domain_exists(uint32_t domid)
{
    return domid == SIMXEN_DOM0 || (domid == cfg.domid && !destroyed);
}

int simxen_destroy(uint32_t domid)
{
    if (domid != cfg.domid || destroyed) {
        errno = ESRCH;
        return -1;
    }
    destroyed = 1;
    suspended = 0;
    logdirty = 0;
    log_runstate("destroyed");
    simxen_xs_fire("@releaseDomain");
    return 0;
}

int simxen_is_suspended(void)
{
    return suspended;
}

const uint64_t *simxen_versions(void)
{
    return versions;
}

static uint64_t next_random(void)
{
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t below(uint64_t n)
{
    return (uint64_t)(((unsigned __int128)next_random() * n) >> 64);
}

/* The pfn the guest writes next.  hotspot: 90% of writes go to the first
 * sixteenth of memory, the rest anywhere. */
static uint64_t pick_pfn(void)
{
    switch (cfg.pattern) {
    case SIMXEN_SEQUENTIAL:
        seq_cursor = seq_cursor + 1 < cfg.pages ? seq_cursor + 1 : 0;
        return seq_cursor;
    case SIMXEN_HOTSPOT:
        if ((next_random() & 0xff) < 230) {
            uint64_t hot = cfg.pages / 16 ? cfg.pages / 16 : 1;
            return below(hot);
        }
        return below(cfg.pages);
    case SIMXEN_RANDOM:
    default:
        return below(cfg.pages);
    }
}

void simxen_advance(void)
{
    uint64_t now = simxen_now_ns(), n, i, cap = cfg.pages * 4;
    double want;

    if (suspended || now <= last_ns) {
        last_ns = now > last_ns ? now : last_ns;
        return;
    }
    want = (double)(now - last_ns) / 1e6 * cfg.dirty_rate + carry;
    last_ns = now;
    n = (uint64_t)want;
    carry = want - (double)n;
    if (n > cap) {          /* long idle run: bound the work, not the result */
        n = cap;
        carry = 0.0;
    }
    for (i = 0; i < n; i++) {
        uint64_t pfn = pick_pfn();
        versions[pfn]++;
        dirty[pfn / 64] |= 1ull << (pfn % 64);
    }
}

uint64_t simxen_take_dirty(uint64_t *dst, int all)
{
    uint64_t words = (cfg.pages + 63) / 64, count = 0, i;

    if (all) {
        memset(dirty, 0xff, words * sizeof(*dirty));
        if (cfg.pages % 64)
            dirty[words - 1] = (1ull << (cfg.pages % 64)) - 1;
    }
    for (i = 0; i < words; i++)
        count += (uint64_t)__builtin_popcountll(dirty[i]);
    if (dst)
        memcpy(dst, dirty, words * sizeof(*dirty));
    memset(dirty, 0, words * sizeof(*dirty));
    return count;
}

int simxen_request_suspend(const char *how)
{
    struct simxen_evtchn_sink *s;

    if (destroyed) {
        errno = ESRCH;
        return -1;
    }
    suspend_requests++;
    if (simxen_fault(SIMXEN_FAULT_SUSPEND, suspend_requests)) {
        fprintf(stderr, "simxen: guest ignores suspend request %llu (%s)\n",
                (unsigned long long)suspend_requests, how);
        return -1;
    }
    if (suspended)
        return 0;
    simxen_advance();
    suspended = 1;
    suspends++;
    log_runstate("suspended");
    /* Xen: VIRQ_DOM_EXC -> xenstored fires @releaseDomain, and the
     * subscribed suspend event channel is notified. */
    simxen_xs_fire("@releaseDomain");
    for (s = evtchn_sinks; s; s = s->next)
        s->deliver(s, s->local_port);
    return 0;
}

int simxen_resume(int fast)
{
    (void)fast;
    if (destroyed) {
        errno = ESRCH;
        return -1;
    }
    if (!suspended)
        return 0;
    if (simxen_fault(SIMXEN_FAULT_RESUME, suspends)) {
        errno = EIO;
        return -1;
    }
    suspended = 0;
    last_ns = simxen_now_ns();
    log_runstate("running");
    return 0;
}

uint64_t simxen_new_save(void)
{
    recorded_valid = 0;
    return ++saves;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/*
 * versions.log, one entry per checkpoint, little-endian u64 words:
 *   save, n, count, then count x (pfn, version)
 * listing the pages whose version changed since the previous entry of the
 * same save (every page in a save's first entry).  Appended with a single
 * write() before the CHECKPOINT record goes out, so it costs what the
 * dirty pages cost, not a whole vector, inside the suspended window.
 */
int simxen_record_checkpoint(uint64_t save, uint64_t n, uint64_t pages_sent)
{
    uint64_t count = 0, i, *buf;
    struct timespec rt;
    char line[200];
    int k, rc = 0;

    if (versions_fd < 0)
        return 0;
    buf = malloc((3 + 2 * cfg.pages) * sizeof(*buf));
    if (!buf)
        return -1;
    for (i = 0; i < cfg.pages; i++) {
        if (!recorded_valid || recorded[i] != versions[i]) {
            buf[3 + 2 * count] = i;
            buf[4 + 2 * count] = versions[i];
            recorded[i] = versions[i];
            count++;
        }
    }
    recorded_valid = 1;
    buf[0] = save;
    buf[1] = n;
    buf[2] = count;
    if (write_all(versions_fd, buf, (3 + 2 * count) * sizeof(*buf)))
        rc = -1;
    free(buf);
    if (cplog_fd >= 0) {
        clock_gettime(CLOCK_REALTIME, &rt);
        k = snprintf(line, sizeof(line), "%llu %llu %lld.%06ld %llu\n",
                     (unsigned long long)save, (unsigned long long)n,
                     (long long)rt.tv_sec, rt.tv_nsec / 1000,
                     (unsigned long long)pages_sent);
        if (write_all(cplog_fd, line, (size_t)k))
            rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------- xenstore */

const char *simxen_xs_get(const char *path)
{
    unsigned int i;

    for (i = 0; i < MAX_NODES; i++)
        if (nodes[i].path && !strcmp(nodes[i].path, path))
            return nodes[i].value;
    return NULL;
}

static void guest_sees_write(const char *path, const char *value)
{
    char shutdown[128];

    snprintf(shutdown, sizeof(shutdown), "/local/domain/%u/control/shutdown",
             cfg.domid);
    if (strcmp(path, shutdown) || strcmp(value, "suspend"))
        return;
    /* An HVM guest without PV drivers: nobody reads control/shutdown. */
    if (cfg.type == SIMXEN_HVM)
        return;
    if (simxen_request_suspend("xenstore") == 0) {
        /* The guest acknowledges by clearing the node (before it
         * suspends, in reality; nobody can tell the difference here). */
        unsigned int i;
        for (i = 0; i < MAX_NODES; i++) {
            if (nodes[i].path && !strcmp(nodes[i].path, shutdown)) {
                free(nodes[i].value);
                nodes[i].value = strdup("");
            }
        }
        simxen_xs_fire(shutdown);
    }
}

int simxen_xs_set(const char *path, const char *value)
{
    unsigned int i, freeslot = MAX_NODES;
    char *copy = strdup(value);

    if (!copy)
        return -1;
    for (i = 0; i < MAX_NODES; i++) {
        if (nodes[i].path && !strcmp(nodes[i].path, path)) {
            free(nodes[i].value);
            nodes[i].value = copy;
            goto written;
        }
        if (!nodes[i].path && freeslot == MAX_NODES)
            freeslot = i;
    }
    if (freeslot == MAX_NODES || !(nodes[freeslot].path = strdup(path))) {
        free(copy);
        errno = ENOSPC;
        return -1;
    }
    nodes[freeslot].value = copy;
 written:
    simxen_xs_fire(path);
    guest_sees_write(path, value);
    return 0;
}

int simxen_xs_children(const char *dir,
                       void (*fn)(const char *name, size_t len, void *arg),
                       void *arg)
{
    size_t dl = strlen(dir);
    unsigned int i, j;
    int found = 0;

    for (i = 0; i < MAX_NODES; i++) {
        const char *p = nodes[i].path, *name, *end;
        size_t len;
        int seen = 0;

        if (!p || strncmp(p, dir, dl))
            continue;
        if (!p[dl]) {
            found = 1;
            continue;
        }
        if (p[dl] != '/' || !p[dl + 1])
            continue;
        found = 1;
        name = p + dl + 1;
        end = strchr(name, '/');
        len = end ? (size_t)(end - name) : strlen(name);
        /* once per name: skip it if an earlier node gave it already */
        for (j = 0; j < i && !seen; j++) {
            const char *q = nodes[j].path;
            seen = q && !strncmp(q, dir, dl) && q[dl] == '/' &&
                !strncmp(q + dl + 1, name, len) &&
                (q[dl + 1 + len] == '/' || !q[dl + 1 + len]);
        }
        if (!seen)
            fn(name, len, arg);
    }
    return found ? 0 : -1;
}

void simxen_xs_fire(const char *path)
{
    struct simxen_watch_sink *s;

    for (s = watch_sinks; s; s = s->next)
        s->fire(s, path);
}

void simxen_watch_subscribe(struct simxen_watch_sink *sink)
{
    sink->next = watch_sinks;
    watch_sinks = sink;
}

void simxen_watch_unsubscribe(struct simxen_watch_sink *sink)
{
    struct simxen_watch_sink **p;

    for (p = &watch_sinks; *p; p = &(*p)->next) {
        if (*p == sink) {
            *p = sink->next;
            return;
        }
    }
}

/* ---------------------------------------------------------- evtchn, log */

void simxen_evtchn_subscribe(struct simxen_evtchn_sink *sink)
{
    sink->next = evtchn_sinks;
    evtchn_sinks = sink;
}

void simxen_evtchn_unsubscribe(struct simxen_evtchn_sink *sink)
{
    struct simxen_evtchn_sink **p;

    for (p = &evtchn_sinks; *p; p = &(*p)->next) {
        if (*p == sink) {
            *p = sink->next;
            return;
        }
    }
}

void simxen_log(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (lg && lg->vmessage) {
        lg->vmessage(lg, level, errnoval, "xc", fmt, ap);
    } else if (level >= XTL_WARN) {
        fprintf(stderr, "xc: %s: ", level >= XTL_ERROR ? "error" : "warning");
        vfprintf(stderr, fmt, ap);
        if (errnoval >= 0)
            fprintf(stderr, ": %s", strerror(errnoval));
        fputc('\n', stderr);
    }
    va_end(ap);
}
