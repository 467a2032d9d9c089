"""``convert --to-pvh``: a xend PV or HVM domain as an xl PVH guest.

Why: Debian bookworm's hypervisor is built without shadow paging, so PV
guests cannot be checkpointed (no log-dirty mode) and Remus protects only
PVH and HVM guests there; PVH needs no device model, so it is the cheaper
of the two.  The conversion is refused where it would not boot or not be
the same guest, and every change is reported.

What PVH needs (xl.cfg(5) of 4.17, ``type="pvh"``):

* a kernel booted directly (``kernel=``, a Linux with PVH support: 4.11 or
  later with ``CONFIG_XEN_PVH``; Debian's kernels since stretch-backports) or
  grub built for PVH (``grub-i386-xen_pvh.bin`` from Debian's
  ``grub-xen-bin``, which reads the guest's own ``grub.cfg``); pygrub and
  pv-grub are PV-only;
* no device model: no emulated graphics, sound, USB or serial ports, no
  ioemu disks or NICs (they become PV devices), no PCI passthrough (not
  supported for PVH guests in 4.17), no CD-ROM drives (PV has none to
  emulate), no Windows (``viridian``).
"""
from __future__ import annotations

import copy
import dataclasses
import posixpath
import re
from typing import List, Optional, Tuple

from .. import errors
from ..config.model import Domain

#: grub for PVH guests in Debian's grub-xen-bin (what replaces pygrub/pv-grub)
PVGRUB2_PVH = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin"
#: the first Linux release with PVH (direct boot) support
MIN_LINUX = (4, 11)

_PV_BOOTLOADERS = re.compile(r"(^|/)(pygrub|pv-grub[^/]*|grub-x86_64-xen\.bin|"
                             r"grub-i386-xen\.bin)$")
_KERNEL_VERSION = re.compile(r"(?:vmlinu[xz]|bzImage|kernel)[-_]?(\d+)\.(\d+)")

#: HVM settings that need a device model, with why PVH cannot keep them
_DEVICE_MODEL_ONLY = (
    ("viridian", "Viridian enlightenments are for Windows, which has no PVH mode"),
    ("usb", "emulated USB needs a device model"),
    ("usbdevice", "emulated USB devices need a device model"),
    ("soundhw", "emulated sound needs a device model"),
    ("stdvga", "emulated graphics need a device model"),
    ("cdrom", "an emulated CD-ROM needs a device model"),
    ("parallel", "an emulated parallel port needs a device model"),
)


@dataclasses.dataclass
class PvhResult:
    domain: Domain
    notes: List[str]


def _kernel_too_old(kernel: str) -> Optional[Tuple[int, int]]:
    m = _KERNEL_VERSION.search(posixpath.basename(kernel))
    if not m:
        return None
    version = (int(m.group(1)), int(m.group(2)))
    return version if version < MIN_LINUX else None


def _refuse(dom: Domain, source: str, why: str) -> errors.UntranslatableError:
    return errors.UntranslatableError(
        f"domain {dom.name!r} cannot be converted to PVH: {why}", source=source)


def to_pvh(dom: Domain, *, source: str = "<input>") -> PvhResult:
    """A PVH copy of ``dom`` and what changed; raises UntranslatableError
    (naming the domain and the reason) where PVH would not be the same guest."""
    if dom.type == "pvh":
        return PvhResult(dom, [])
    new = copy.deepcopy(dom)
    notes: List[str] = []
    if dom.pci:
        raise _refuse(dom, source, "PCI passthrough is not supported for PVH "
                      "guests in Xen 4.17 (keep it HVM, which Remus also protects)")
    cdroms = [d.vdev for d in dom.disks if d.is_cdrom]
    if cdroms:
        raise _refuse(dom, source, f"CD-ROM drive(s) {', '.join(cdroms)} need a "
                      "device model (remove them, or keep the guest HVM)")
    if dom.type == "hvm":
        hvm = dom.hvm
        for attr, why in _DEVICE_MODEL_ONLY:
            value = getattr(hvm, attr, None) if hvm is not None else None
            if value:
                raise _refuse(dom, source, f"{attr}: {why}")
        if hvm is not None and hvm.serial:
            notes.append("emulated serial port(s) dropped: a PVH guest has the PV "
                         "console (hvc0); add console=hvc0 to the guest's command line")
        # an HVM guest boots from its disk: grub for PVH reads the same grub.cfg
        if dom.kernel:
            notes.append(f"direct kernel boot kept: {dom.kernel} must support PVH "
                         f"(Linux {MIN_LINUX[0]}.{MIN_LINUX[1]} or later with CONFIG_XEN_PVH)")
        else:
            new.kernel = PVGRUB2_PVH
            notes.append(f"booted by grub for PVH ({PVGRUB2_PVH}, Debian package "
                         "grub-xen-bin) from the guest's own grub.cfg, instead of "
                         "firmware: the guest's kernel must support PVH and its "
                         "disk be partitioned for grub")
        new.hvm = None
        for nic in new.nics:
            if nic.type not in (None, "vif", "netfront"):
                notes.append(f"vif {nic.mac or nic.devid}: emulated NIC "
                             f"({nic.type}) becomes a PV vif")
                nic.type = None
            if getattr(nic, "model", None):
                nic.model = None
    else:
        boot = dom.bootloader or ""
        if boot:
            if not _PV_BOOTLOADERS.search(boot):
                raise _refuse(dom, source, f"bootloader {boot!r} is not one this "
                              "conversion knows to replace (pygrub, pv-grub)")
            new.bootloader = None
            new.bootloader_args = None
            new.kernel = PVGRUB2_PVH
            new.ramdisk = None
            notes.append(f"bootloader {posixpath.basename(boot)} replaced by grub for "
                         f"PVH ({PVGRUB2_PVH}, Debian package grub-xen-bin), which "
                         "reads the guest's own grub.cfg")
        elif dom.kernel and _PV_BOOTLOADERS.search(dom.kernel):
            new.kernel = PVGRUB2_PVH
            notes.append(f"pv-grub kernel {dom.kernel} replaced by grub for PVH "
                         f"({PVGRUB2_PVH}, Debian package grub-xen-bin)")
        elif dom.kernel:
            old = _kernel_too_old(dom.kernel)
            if old:
                raise _refuse(dom, source, f"kernel {dom.kernel} is Linux "
                              f"{old[0]}.{old[1]}; PVH needs {MIN_LINUX[0]}."
                              f"{MIN_LINUX[1]} or later with CONFIG_XEN_PVH")
            notes.append(f"kernel {dom.kernel} must support PVH (Linux "
                         f"{MIN_LINUX[0]}.{MIN_LINUX[1]} or later with "
                         "CONFIG_XEN_PVH; Debian's kernels do)")
        else:
            raise _refuse(dom, source, "no kernel and no bootloader to boot it with")
    graphics = [v for v in new.vfbs]
    if graphics:
        notes.append("framebuffer(s) dropped: PVH has no device model to serve them")
        new.vfbs = []
    new.type = "pvh"
    notes.insert(0, f"converted from {dom.type.upper()} to PVH (what a stock Debian "
                    "hypervisor can protect with Remus)")
    return PvhResult(new, notes)
