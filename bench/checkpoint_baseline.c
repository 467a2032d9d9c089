/*
 * Baseline for bench/checkpoint.py: the same libcheckpoint + simxen loop as
 * the Python engine, driven from C with no Python at all.  Hooks do what the
 * engine's do minus Python: the checkpoint hook writes libxl's 8-byte
 * CHECKPOINT_END and counts.  Usage: checkpoint_baseline DOMID N OUTFILE
 * Prints: "<checkpoints> <seconds> <bytes>".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libcheckpoint.h"

static int fd = -1, done, limit;
static const unsigned char ckend[8] = {4, 0, 0, 0, 0, 0, 0, 0};

static int on_suspend(void *o) { (void)o; return CP_GO; }
static int on_postcopy(void *o) { (void)o; return CP_GO; }
static int on_checkpoint(void *o)
{
    (void)o;
    if (write(fd, ckend, sizeof(ckend)) != (ssize_t)sizeof(ckend))
        return CP_STOP;
    return ++done < limit ? CP_GO : CP_STOP;
}
static int on_interrupted(void *o) { (void)o; return CP_GO; }

int main(int argc, char **argv)
{
    struct cp_state cp;
    struct cp_hooks hooks = { on_suspend, on_postcopy, on_checkpoint,
                              on_interrupted, NULL };
    struct timespec a, b;
    struct stat st;
    /* libxl v2 header + LIBXC_CONTEXT, as the engine writes them */
    static const unsigned char pre[24] = {
        0x4c, 0x69, 0x62, 0x78, 0x6c, 0x46, 0x6d, 0x74, 0, 0, 0, 2, 0, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0 };

    if (argc != 4) {
        fprintf(stderr, "usage: %s DOMID N OUTFILE\n", argv[0]);
        return 2;
    }
    limit = atoi(argv[2]);
    fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, pre, sizeof(pre)) != (ssize_t)sizeof(pre)) {
        perror(argv[3]);
        return 1;
    }
    cp_init(&cp);
    if (cp_open(&cp, (uint32_t)atoi(argv[1]))) {
        fprintf(stderr, "open: %s\n", cp.errstr);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (cp_save(&cp, fd, 0, 0, &hooks) && done < limit) {
        fprintf(stderr, "save: %s\n", cp.errstr);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    cp_close(&cp);
    cp_destroy(&cp);
    fstat(fd, &st);
    printf("%d %.9f %lld\n", done,
           (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9, (long long)st.st_size);
    return 0;
}
