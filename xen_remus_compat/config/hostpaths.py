"""Where a xend-era host kept Xen's programs, and where a Debian bookworm
xl host (Xen 4.17) has them.

xend configs name absolute paths of the Xen release they ran on:
``/usr/lib/xen-4.1/bin/pygrub`` (Debian squeeze/wheezy),
``/usr/lib/xen/bin/pygrub`` and ``/usr/lib64/xen/bin/pygrub`` (upstream and
RPM builds), ``/usr/lib/xen/boot/pv-grub-x86_64.gz`` (the GRUB-legacy stub
domain), ``/usr/lib/xen/boot/hvmloader``, ``/usr/lib/xen/bin/qemu-dm``.
None of them exists on bookworm, where (package contents of bookworm's
xen-utils-4.17, xen-utils-common, qemu-system-xen and grub-xen-host):

* libxl's private programs are in ``/usr/lib/xen-4.17/bin`` (``pygrub``
  there, and ``/usr/bin/pygrub`` links to it); xl.cfg(5): a ``bootloader``
  that is not an absolute path is looked up there first;
* firmware (``hvmloader``, ``xen-shim``) is in ``/usr/lib/xen-4.17/boot``,
  and xl loads its own hvmloader when none is named;
* the device model is upstream QEMU, ``/usr/libexec/xen-qemu-system-i386``
  (qemu-system-xen); qemu-traditional (``qemu-dm``) is gone;
* pv-grub (GRUB legacy built as a Xen PV kernel) is gone; its successor,
  pvgrub2 (GRUB 2 built as a Xen PV kernel), is
  ``/usr/lib/grub-xen/grub-x86_64-xen.bin`` (and ``grub-i386-xen.bin``)
  from grub-xen-host.  It boots the guest's GRUB 2 ``/boot/grub/grub.cfg``;
  pv-grub read GRUB legacy's ``menu.lst``, which ``pygrub`` also reads.

The rules here say what to write instead (:func:`bootloader`,
:func:`pvgrub2`), which written paths are known not to exist on bookworm
(:func:`xend_era`), and where xl itself looks for a name that is not a path
(:func:`candidates`, for ``convert --check-host``).
"""
from __future__ import annotations

import posixpath
import re
from typing import List, Optional, Tuple

__all__ = ["XEN_LIBEXEC", "XEN_FIRMWARE", "QEMU_XEN", "PVGRUB2", "PVGRUB2_PACKAGE",
           "PYGRUB", "xend_era", "bootloader", "pvgrub2", "pvgrub_menu",
           "candidates"]

#: libxl's private bindir on bookworm (bootloaders, helpers).
XEN_LIBEXEC = "/usr/lib/xen-4.17/bin"
#: Xen's firmware directory on bookworm (hvmloader, xen-shim).
XEN_FIRMWARE = "/usr/lib/xen-4.17/boot"
#: The device model libxl starts on bookworm (package qemu-system-xen).
QEMU_XEN = "/usr/libexec/xen-qemu-system-i386"
#: pvgrub2 images by the bitness of pv-grub they replace.
PVGRUB2 = {"x86_64": "/usr/lib/grub-xen/grub-x86_64-xen.bin",
           "x86_32": "/usr/lib/grub-xen/grub-i386-xen.bin"}
PVGRUB2_PACKAGE = "grub-xen-host"
#: The bootloader name xl resolves in :data:`XEN_LIBEXEC`.
PYGRUB = "pygrub"
#: pygrub paths that do exist on bookworm (kept as written).
_BOOKWORM_PYGRUB = ("/usr/bin/pygrub", f"{XEN_LIBEXEC}/pygrub")

#: Directories of Xen's programs and firmware on xend-era hosts: upstream
#: (/usr/lib/xen, /usr/lib64/xen, /usr/local/lib/xen) and Debian's
#: versioned /usr/lib/xen-X.Y.
_XEN_DIR = re.compile(r"^/usr(?:/local)?/lib(?:64)?/xen(?:-(?P<ver>\d+\.\d+))?/(?:bin|boot)/")
_PVGRUB = re.compile(r"^pv-grub-(?P<arch>x86_64|x86_32)\.gz$")
#: pv-grub's command line: GRUB legacy's config file, e.g.
#: ``(hd0,0)/boot/grub/menu.lst``.
_PVGRUB_MENU = re.compile(r"^\s*(\(hd\d+(,\d+)?\))?\S*menu\.lst\s*$")


def xend_era(path: Optional[str]) -> bool:
    """Whether *path* is in a Xen program or firmware directory that a
    bookworm host does not have (``/usr/lib/xen/...``, ``/usr/lib/xen-4.1/...``;
    ``/usr/lib/xen-4.17/...`` is bookworm's own)."""
    if not path:
        return False
    m = _XEN_DIR.match(path)
    return bool(m) and m.group("ver") != "4.17"


def bootloader(path: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(what to write, why it changed or None).  A pygrub that bookworm does
    not have at that path becomes ``pygrub`` (xl finds its own)."""
    if not path or posixpath.basename(path) != PYGRUB:
        return path, None
    if path == PYGRUB or path in _BOOKWORM_PYGRUB:
        return path, None
    return PYGRUB, (f"{path} is not on a Debian bookworm host; xl runs its own "
                    f"pygrub ({XEN_LIBEXEC}/pygrub)")


def pvgrub2(kernel: Optional[str]) -> Optional[str]:
    """The pvgrub2 image replacing a pv-grub *kernel*, or None."""
    if not kernel:
        return None
    m = _PVGRUB.match(posixpath.basename(kernel))
    return PVGRUB2[m.group("arch")] if m else None


def pvgrub_menu(cmdline: Optional[str]) -> bool:
    """Whether *cmdline* is pv-grub's GRUB-legacy config file argument."""
    return bool(cmdline and _PVGRUB_MENU.match(cmdline))


def candidates(kind: str, path: str) -> List[str]:
    """Where xl looks for *path* of *kind* (``bootloader``, ``firmware``,
    anything else: the path itself): a bootloader that is not absolute is
    tried in :data:`XEN_LIBEXEC`, then as a program on ``PATH`` (libxl
    ``bootloader_find``); a firmware file name in :data:`XEN_FIRMWARE`."""
    if posixpath.isabs(path):
        return [path]
    if kind == "bootloader":
        return [posixpath.join(XEN_LIBEXEC, path), "PATH:" + path]
    if kind == "firmware":
        return [posixpath.join(XEN_FIRMWARE, path)]
    return [path]
