"""Domain sources: ``open_domain(ref, source="auto")`` (see ``base.py``)."""
from __future__ import annotations

import os
from typing import Any

from .. import errors
from ..log import logger
from .base import DomainRecord, classify_ref, resolve  # noqa: F401

FILES_ENV = "XEN_REMUS_COMPAT_FILES"
SOURCES = ("auto", "libxl", "xl", "xend", "files", "sim")


def get_source(name: str = "auto", **options: Any):
    """Build a source by name; ``auto`` follows the documented order."""
    if name == "libxl":
        from .libxl import LibxlSource
        return LibxlSource(options.get("library"))
    if name == "xl":
        from .xlcli import XlSource
        return XlSource(options.get("xl"))
    if name == "xend":
        from .xend import XendSource
        return XendSource(options.get("url"))
    if name == "files":
        from .files import FilesSource
        paths = options.get("paths") or [
            p for p in os.environ.get(FILES_ENV, "").split(os.pathsep) if p]
        if not paths:
            raise errors.InputError(f"the files source needs at least one path "
                                    f"(set {FILES_ENV}, ':'-separated)")
        return FilesSource(paths)
    if name == "sim":
        from .sim import SimSource
        return SimSource()
    if name != "auto":
        raise errors.InputError(f"unknown domain source {name!r} "
                                f"(choose from {', '.join(SOURCES)})")
    return _auto(**options)


def _auto(**options: Any):
    from .xend import DEFAULT_URL, XendSource
    url = options.get("url") or os.environ.get("XM_SERVER") or DEFAULT_URL
    if url.startswith("httpu://") and os.path.exists(url[len("httpu://"):]):
        logger.debug("source auto: xend socket present, using xend")
        return XendSource(url)
    try:
        from .libxl import Context, LibxlSource
        Context(options.get("library"), quiet=True).close()
        logger.debug("source auto: libxenlight context opened, using libxl")
        return LibxlSource(options.get("library"))
    except errors.CompatError as e:
        logger.debug("source auto: libxl unusable (%s); trying xl", e)
    from .xlcli import XlSource, find_xl
    return XlSource(find_xl())


PRIVCMD = ("/proc/xen/privcmd", "/dev/xen/privcmd")


def no_hypervisor_hint(exists=os.path.exists) -> str:
    """A hint for the user when this host runs no Xen at all ('' otherwise)."""
    if any(exists(p) for p in PRIVCMD):
        return ""
    return ("; this host is not running a Xen hypervisor (no /proc/xen/privcmd): "
            "run on the dom0, use a recorded dump (XEN_REMUS_COMPAT_SOURCE=files), "
            "or try the simulated guest with --sim")


def open_domain(ref: Any, source: str = "auto", **options: Any) -> DomainRecord:
    """Look up a domain by name, domid or UUID in the chosen source."""
    classify_ref(ref)   # validate early, with a clear message
    try:
        return get_source(source, **options).open_domain(ref)
    except (errors.XenError, errors.EnvironmentProblem) as e:
        hint = no_hypervisor_hint() if source in ("auto", "libxl", "xl") else ""
        if hint and hint not in e.message:
            e.message += hint
            e.args = (e.message,)
        raise
