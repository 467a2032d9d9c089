/* Shared by the libxlstub.so sources. */
#ifndef XLSTUB_H
#define XLSTUB_H

/* With XLSTUB_TRACE set in the environment, note a call on stderr. */
void xlstub_trace(const char *function, const char *what);

#endif
