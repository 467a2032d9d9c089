"""Recorded domain configurations on disk (design.md, ``sources/files.py``).

The sxpr part: xend ``config.sxp`` files, ``xm list -l`` dumps and libvirt's
fixtures are read with :func:`read_sxpr_file`, a thin wrapper over
:func:`xen_remus_compat.sxp.load_file` (legacy-api.md section 11).
"""
from __future__ import annotations

import os
from typing import Union

from .. import sxp


def read_sxpr_file(path: Union[str, "os.PathLike[str]"], *, continuations: bool = False,
                   lenient: bool = False) -> list:
    """Every top-level sxpr value in the file at ``path``.

    ``continuations=True`` deletes backslash-newline pairs first (libvirt's
    fixture convention); ``lenient=True`` accepts a missing final ``)`` or a
    stray ``)`` with a warning.  Errors are ``errors.SxpParseError`` naming
    the file, line and column; ``OSError`` propagates unchanged.
    """
    return sxp.load_file(path, continuations=continuations, lenient=lenient)
