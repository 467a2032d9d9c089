/*
 * domwatch: the xen tier's view of guests from the hypervisor, in dom0
 * (tests/xen/scenarios.py; docs/xen-tier.md, "How the side-by-side is
 * measured").  Built on the host by tests/xen/xenvm.py (gcc -lxenctrl) and run
 * in dom0, which sees the host's / (same libxenctrl).
 *
 *   domwatch now                 print CLOCK_MONOTONIC, seconds
 *   domwatch stamp               copy stdin to stdout, each line prefixed with
 *                                "<CLOCK_REALTIME> <CLOCK_MONOTONIC> "
 *   domwatch watch FILE [US]     until SIGTERM/SIGINT: ask the hypervisor for
 *                                every domain's state every US microseconds
 *                                (default 1000) and append a line to FILE at
 *                                each change: "<CLOCK_MONOTONIC> <domid> <state>"
 *
 * A domain's state: R runs (neither paused, shut down nor dying: running or
 * blocked, as the scheduler has it), P paused, S shut down for suspend (a
 * checkpoint's pause), X<code> shut down otherwise, D dying, G gone.  A
 * checkpoint is seen as R -> S (-> P) -> R; its pause is the time between.
 * At exit a "# samples N interval_us I gap_median_us M gap_max_us X" line says
 * how finely it actually sampled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenctrl.h>

#define MAX_DOMS 256

static volatile sig_atomic_t stop;

static void on_signal(int signo)
{
    (void)signo;
    stop = 1;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stamp(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        printf("%.6f %.6f ", clock_s(CLOCK_REALTIME), clock_s(CLOCK_MONOTONIC));
        fwrite(line, 1, n, stdout);
        if (n == 0 || line[n - 1] != '\n')
            putchar('\n');
    }
    free(line);
    return 0;
}

static void state_of(const xc_domaininfo_t *d, char *out, size_t len)
{
    uint32_t f = d->flags;

    if (f & XEN_DOMINF_dying)
        snprintf(out, len, "D");
    else if (f & XEN_DOMINF_shutdown) {
        unsigned int code = (f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
        if (code == SHUTDOWN_suspend)
            snprintf(out, len, "S");
        else
            snprintf(out, len, "X%u", code);
    } else if (f & XEN_DOMINF_paused)
        snprintf(out, len, "P");
    else
        snprintf(out, len, "R");
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;

    return x < y ? -1 : x > y;
}

static int watch(const char *path, long interval_us)
{
    static xc_domaininfo_t info[MAX_DOMS];
    unsigned int ids[MAX_DOMS];              /* the domains known, and their state */
    char known[MAX_DOMS][8];
    int nknown = 0;
    long *gaps = NULL;
    size_t ngaps = 0, capgaps = 0;
    unsigned long samples = 0;
    double last = 0;
    struct timespec pause = { interval_us / 1000000, (interval_us % 1000000) * 1000 };
    struct sigaction sa;
    xc_interface *xch;
    FILE *out;

    out = fopen(path, "a");
    if (!out) {
        perror(path);
        return 1;
    }
    setvbuf(out, NULL, _IOLBF, 0);
    xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        fprintf(stderr, "domwatch: cannot open the hypervisor interface\n");
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(out, "# start %.6f interval_us %ld\n", clock_s(CLOCK_MONOTONIC), interval_us);
    while (!stop) {
        int n = xc_domain_getinfolist(xch, 0, MAX_DOMS, info);
        double now = clock_s(CLOCK_MONOTONIC);

        if (n < 0) {
            fprintf(out, "# %.6f getinfolist failed: %s\n", now, strerror(errno));
            nanosleep(&pause, NULL);
            continue;
        }
        if (samples++ && ngaps < 10000000) {
            if (ngaps == capgaps) {
                capgaps = capgaps ? capgaps * 2 : 65536;
                gaps = realloc(gaps, capgaps * sizeof(*gaps));
                if (!gaps)
                    return 1;
            }
            gaps[ngaps++] = (long)((now - last) * 1e6);
        }
        last = now;
        /* gone: known, no longer listed */
        for (int k = 0; k < nknown; k++) {
            int listed = 0;

            for (int i = 0; i < n && !listed; i++)
                listed = info[i].domain == ids[k];
            if (!listed) {
                fprintf(out, "%.6f %u G\n", now, ids[k]);
                ids[k] = ids[--nknown];
                memcpy(known[k], known[nknown], sizeof(known[k]));
                k--;
            }
        }
        for (int i = 0; i < n; i++) {
            char st[8];
            int k;

            state_of(&info[i], st, sizeof(st));
            for (k = 0; k < nknown && ids[k] != info[i].domain; k++)
                ;
            if (k == nknown) {
                if (nknown == MAX_DOMS)
                    continue;
                ids[nknown] = info[i].domain;
                known[nknown++][0] = 0;
            }
            if (strcmp(st, known[k])) {
                fprintf(out, "%.6f %u %s\n", now, ids[k], st);
                strcpy(known[k], st);
            }
        }
        nanosleep(&pause, NULL);
    }
    if (ngaps) {
        qsort(gaps, ngaps, sizeof(*gaps), cmp_long);
        fprintf(out, "# samples %lu interval_us %ld gap_median_us %ld gap_max_us %ld\n",
                samples, interval_us, gaps[ngaps / 2], gaps[ngaps - 1]);
    }
    fprintf(out, "# end %.6f\n", clock_s(CLOCK_MONOTONIC));
    fclose(out);
    xc_interface_close(xch);
    free(gaps);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "now")) {
        printf("%.6f\n", clock_s(CLOCK_MONOTONIC));
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "stamp"))
        return stamp();
    if (argc >= 3 && !strcmp(argv[1], "watch"))
        return watch(argv[2], argc >= 4 ? atol(argv[3]) : 1000);
    fprintf(stderr, "usage: domwatch now | stamp | watch FILE [INTERVAL_US]\n");
    return 2;
}
