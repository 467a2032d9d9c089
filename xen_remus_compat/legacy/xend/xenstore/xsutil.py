"""``xen.xend.xenstore.xsutil`` (legacy-api.md §12.4): one shared xenstore handle.

The handle is Debian's ``xen.lowlevel.xs.xs()`` (xen-utils 4.17 ships that
binding in ``/usr/lib/xen-4.17/lib/python``), opened on first use and not at
import, so ``xen.remus.save`` imports on any host (§0.2).  ``XS_FACTORY``
replaces the opener (tests, or a site with its own binding).  The helpers
keep xend's names: ``xshandle``, ``IntroduceDomain``, ``SetTarget``,
``GetDomainPath``, ``ResumeDomain``.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

DEBIAN_PYTHON_DIR = "/usr/lib/xen-4.17/lib/python"

#: callable returning a xenstore handle; None: Debian's xen.lowlevel.xs.xs
XS_FACTORY: Optional[Callable[[], Any]] = None

xs_lock = threading.Lock()
xs_handle = None


def _open() -> Any:
    if XS_FACTORY is not None:
        return XS_FACTORY()
    try:
        import xen.lowlevel.xs as lowlevel_xs
    except ImportError as e:
        raise ImportError(
            "xen.xend.xenstore.xsutil needs Debian's xenstore binding "
            "xen.lowlevel.xs (package xen-utils-4.17, directory %s, which is "
            "not on sys.path): %s" % (DEBIAN_PYTHON_DIR, e)) from e
    return lowlevel_xs.xs()


def xshandle() -> Any:
    """The process-wide xenstore handle (opened on first call)."""
    global xs_handle
    if xs_handle is None:
        with xs_lock:
            if xs_handle is None:
                xs_handle = _open()
    return xs_handle


def reset() -> None:
    """Drop the shared handle (not in xend; tests and reconnects)."""
    global xs_handle
    with xs_lock:
        xs_handle = None


def IntroduceDomain(domid, page, port):
    return xshandle().introduce_domain(domid, page, port)


def SetTarget(domid, target):
    return xshandle().set_target(domid, target)


def GetDomainPath(domid):
    return xshandle().get_domain_path(domid)


def ResumeDomain(domid):
    return xshandle().resume_domain(domid)
