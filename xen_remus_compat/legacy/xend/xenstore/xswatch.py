"""``xen.xend.xenstore.xswatch`` (legacy-api.md §0.1): xenstore watches on a thread.

Same contract as xend 4.4: ``xswatch(path, fn, *args, **kwargs)`` registers
a watch on the shared :func:`xsutil.xshandle`; one daemon thread reads
watch events and calls ``fn(changed_path, *args, **kwargs)``; a false
return value unregisters the watch, ``unwatch()`` does it explicitly.
xend swallowed callback exceptions silently; here they are logged (the
thread keeps running, as before).
"""
from __future__ import annotations

import errno
import threading

from ....log import logger
from . import xsutil

watchThread = None
xs = None
xslock = threading.Lock()


class xswatch:
    def __init__(self, path, fn, *args, **kwargs):
        self.path = path
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        watchStart()
        xs.watch(path, self)

    def unwatch(self):
        xs.unwatch(self.path, self)


def watchStart():
    """Start the watch thread once (it shares xsutil's handle)."""
    global watchThread, xs
    with xslock:
        if watchThread is not None:
            return
        xs = xsutil.xshandle()
        watchThread = threading.Thread(name="Watcher", target=watchMain, daemon=True)
        watchThread.start()


def _enoent(exn: BaseException) -> bool:
    return bool(exn.args) and exn.args[0] == errno.ENOENT


def watchMain():
    while True:
        try:
            we = xs.read_watch()
        except Exception as exn:        # handle closed: the thread ends
            logger.debug("xswatch: read_watch failed, watch thread ends: %s", exn)
            return
        watch = we[1]
        try:
            res = watch.fn(we[0], *watch.args, **watch.kwargs)
            if not res:
                try:
                    watch.unwatch()
                except Exception as exn:
                    if not _enoent(exn):     # already unregistered is fine
                        raise
        except Exception as exn:
            logger.warning("xswatch: callback for %s failed: %s", watch.path, exn)
