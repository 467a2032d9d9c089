"""Recorded domain configurations on disk (design.md, ``sources/files.py``).

The sxpr part: xend ``config.sxp`` files, ``xm list -l`` dumps and libvirt's
fixtures are read with :func:`read_sxpr_file`, a thin wrapper over
:func:`xen_remus_compat.sxp.load_file` (legacy-api.md section 11).
"""
from __future__ import annotations

import errno
import os
from typing import Union

from .. import errors, sxp


def read_sxpr_file(path: Union[str, "os.PathLike[str]"], *, continuations: bool = False,
                   lenient: bool = False) -> list:
    """Every top-level sxpr value in the file at ``path``.

    ``continuations=True`` deletes backslash-newline pairs first (libvirt's
    fixture convention); ``lenient=True`` accepts a missing final ``)`` or a
    stray ``)`` with a warning.  Errors are ``errors.SxpParseError`` naming
    the file, line and column; ``OSError`` propagates unchanged.
    """
    return sxp.load_file(path, continuations=continuations, lenient=lenient)


class FilesSource:
    """The ``files`` domain source: recorded sxpr dumps and libxl JSON.

    Each path may hold one domain or several (an ``xm list -l`` dump, an
    ``xl list -l`` array); a directory is searched for ``config.sxp`` files
    (a ``/var/lib/xend/domains`` tree).  libvirt-style fixtures with
    backslash-newline continuations are read as libvirt read them.
    """

    name = "files"

    def __init__(self, paths, *, lenient: bool = False) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.lenient = lenient

    def _files(self):
        for path in self.paths:
            if os.path.isdir(path):
                for root, _dirs, files in sorted(os.walk(path)):
                    for f in sorted(files):
                        if f == "config.sxp" or f.endswith((".sxp", ".sexpr", ".json")):
                            yield os.path.join(root, f)
            else:
                yield path

    def records(self):
        from ..config.formats import libxl_json, sxpr as sxprmod
        from .base import DomainRecord
        out = []
        for path in self._files():
            try:
                with open(path, "rb") as f:
                    raw = f.read()
            except OSError as e:
                # an input problem, not a crash: named, errno kept in text and cause
                raise errors.InputError(
                    f"cannot read recorded domain file: {e.strerror} "
                    f"({errno.errorcode.get(e.errno, e.errno)})", source=path) from e
            head = raw.lstrip()[:1]
            if head in (b"[", b"{"):
                text = raw.decode("utf-8")
                for dom in libxl_json.loads(text, source=path):
                    out.append(DomainRecord(dom, dom.domid, state=dom.state,
                                            source="files",
                                            libxl_config=libxl_json.domain_to_libxl(dom)))
                continue
            values = sxp.load_file(path, continuations=b"\\\n" in raw,
                                   lenient=self.lenient)
            for value in values:
                if not (isinstance(value, list) and value and value[0] in ("domain", "vm")):
                    continue
                dom = sxprmod.domain_from_sxpr(value, source=path)
                out.append(DomainRecord(dom, dom.domid, state=dom.state,
                                        source="files", sxpr=value))
        return out

    def open_domain(self, ref):
        from .base import resolve
        return resolve(ref, self.records(), "files " + ", ".join(self.paths))
