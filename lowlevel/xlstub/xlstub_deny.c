/*
 * Failing definitions for every Xen library call in deny.def.
 *
 * Deliberately compiled WITHOUT the Xen headers: each function is defined
 * with an empty parameter list and a result type of the right class
 * (integer or pointer, always register-wide), which is enough to return an error.  This is
 * sound on the Linux ABIs listed below, where the caller owns and cleans
 * up the arguments and the result comes back in a register; the callee
 * ignoring its arguments is then harmless.  On anything else, refuse to
 * build rather than guess.
 */
#if !defined(__x86_64__) && !defined(__aarch64__) && !defined(__i386__)
#error "xlstub_deny.c relies on a caller-cleans-up calling convention"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "xlstub.h"

void xlstub_trace(const char *function, const char *what)
{
    /* getenv per call: cheap enough here, and no constructor state. */
    if (getenv("XLSTUB_TRACE"))
        fprintf(stderr, "xlstub: %s: %s\n", function, what);
}

#define DENY_NEG(f)                                   \
    long f();                                         \
    long f() { xlstub_trace(#f, "denied"); errno = ENOSYS; return -1; }

#define DENY_NULL(f)                                  \
    void *f();                                        \
    void *f() { xlstub_trace(#f, "denied"); errno = ENOSYS; return NULL; }

/* A full-width 0 reads as false (bool) and as XBT_NULL (uint32_t). */
#define DENY_FALSE(f)                                 \
    long f();                                         \
    long f() { xlstub_trace(#f, "denied"); errno = ENOSYS; return 0; }

#define DENY_VOID(f)                                  \
    void f();                                         \
    void f() { xlstub_trace(#f, "ignored"); }

#include "deny.def"
