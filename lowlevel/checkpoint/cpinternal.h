/*
 * Private to the checkpoint trampoline's C files (libcheckpoint.c,
 * suspend.c, threads.c): what one of them defines and another uses.  Not
 * an API (that is libcheckpoint.h); hidden from outside the extension.
 * Written for xen-remus-compat.
 */
#ifndef CPINTERNAL_H
#define CPINTERNAL_H

#include <stdint.h>

#include "libcheckpoint.h"

#define CP_INTERNAL __attribute__((visibility("hidden")))

/* libcheckpoint.c: errors */
CP_INTERNAL void set_error(struct cp_state *cp, int errnum,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
CP_INTERNAL void prof(const char *what);

/* suspend.c: time */
CP_INTERNAL int64_t now_ms(void);
CP_INTERNAL int remaining_ms(int64_t deadline);
CP_INTERNAL int interrupted(struct cp_state *cp);
CP_INTERNAL int wait_readable(struct cp_state *cp, int fd, int64_t deadline,
                              int finish);

/* suspend.c: guest state, suspend, resume */
CP_INTERNAL void drain_watches(struct cp_state *cp);
CP_INTERNAL enum cp_hvm_suspend hvm_suspend_path(struct cp_state *cp);
CP_INTERNAL int cp_suspend(struct cp_state *cp);
CP_INTERNAL int cp_resume(struct cp_state *cp);

/* threads.c: the timer thread, the write deadline */
CP_INTERNAL int start_timer(struct cp_state *cp);
CP_INTERNAL void stop_timer(struct cp_state *cp);
CP_INTERNAL int wait_for_timer(struct cp_state *cp);
CP_INTERNAL int start_watchdog(struct cp_state *cp, int fd);
CP_INTERNAL void stop_watchdog(struct cp_state *cp);

#endif
