"""What the xl.cfg writer says about the keys the model kept verbatim
(``extra``, ``image_extra``, a device's ``extra``): why xl.cfg cannot hold
one, or that leaving it out changes nothing.

Part of the xl.cfg writer (``xlcfg.py``).  A kept key is either

* **omitted**, not reported: its value is what xl does anyway (xend's
  ``(tsc_mode 0)``, ``(nomigrate 0)``, ``(on_xend_start ignore)``, an empty
  ``(pci ())``), it repeats a value translated elsewhere, or it is state of
  the running domain that a domain created by xl gets anew (``online_vcpus``,
  ELF ``notes``, device UUIDs, where xend put the console).  xend 4.x wrote
  these for every domain (XendConfig ``_defaults``, ``_platform_sanity_check``,
  ``to_sxp``), so reporting them buried the few that matter;
* or **untranslated**, with the reason: :data:`REASONS` by key,
  :data:`DEVICE_REASONS` by xend device class, else :data:`DEFAULT_REASON`.

The xl.cfg(5) of Xen 4.17 is the reference for "xl has no such setting".
"""
from __future__ import annotations

from typing import Any, Dict, FrozenSet, Optional, Tuple

from ..model import Domain

__all__ = ["REASONS", "DEVICE_REASONS", "DEFAULT_REASON", "classify", "device_class",
           "RUNTIME", "XL_DEFAULT", "DUPLICATE"]

#: Why a key was left out without a report (the ``omitted`` list).
XL_DEFAULT = "xl's default"
DUPLICATE = "repeats a translated value"
RUNTIME = "state of the running domain"

#: Why a kept key has no xl equivalent (keys of ``extra``/``image_extra``
#: and of device extras).
REASONS: Dict[str, str] = {
    "memory_dynamic_min": "xend ballooning range; xl has memory/maxmem only",
    "memory_dynamic_max": "xend ballooning range; xl has memory/maxmem only",
    "on_xend_start": "xend started the domain with the daemon; with xl, link its "
                     ".cfg into /etc/xen/auto (the xendomains service)",
    "on_xend_stop": "xend's action at daemon stop; with xl, the xendomains service "
                    "saves or shuts domains down (/etc/default/xendomains)",
    "auto_power_on": "xend started the domain with the daemon; with xl, link its "
                     ".cfg into /etc/xen/auto (the xendomains service)",
    "features": "xend's PV feature string for the domain builder; xl.cfg has none",
    "superpages": "xend PV superpages; xl.cfg has no such setting",
    "nomigrate": "not carried over: xl's nomigrate=1 forbids migration and so "
                 "Remus (set it by hand on a domain you do not protect)",
    "tsc_mode": "not one of xend's TSC modes 0-3",
    "videoram": "PV framebuffer memory; xl.cfg has none (the guest's xen-fbfront "
                "sizes it: video=MB,WIDTH,HEIGHT)",
    "pci": "xend image-level PCI list without PCI devices; pass devices with pci=",
    "vcpus": "differs from the domain's vcpus; xl has one vcpus setting",
    "cpu_weight": "xend 3.0 relative weight (float), not a credit weight",
    "security_label": "xend ACM security label; Xen 4.17 has FLASK labels "
                      "(xl seclabel=), which are not the same",
    "security": "xend ACM security label; Xen 4.17 has FLASK labels "
                "(xl seclabel=), which are not the same",
    "image_type": "kernel image type; xl boots it as a PV kernel",
    "driver": "xend frontend driver note",
    "VDI": "Xen-API VDI reference; xl has no VDIs",
    "backend": "non-default backend domain",
    "device_model": "PV framebuffer device model; xl starts its own qemu for a vfb",
    "dev": "xend vif backend device name; xl names vifs vif<domid>.<devid>",
    "guest_os_type": "IA-64 only",
    "vhpt": "IA-64 only",
    "isa": "qemu-traditional's ISA-only machine; Xen 4.17's qemu-xen has none",
    "fda": "floppy image; xl has no floppy drive",
    "fdb": "floppy image; xl has no floppy drive",
    "monitor_path": "qemu-traditional monitor socket; xl has none",
    "vncconsole": "xm started a VNC viewer; with xl: 'xl create -V' or "
                  "'xl vncviewer'",
    "xen_extended_power_mgmt": "removed from Xen; xl has no such setting",
    "memory_sharing": "xend memory sharing; xl.cfg has no such setting",
    "s3_integrity": "tboot S3 memory integrity (xend); xl.cfg has no such setting",
    "machine_address_size": "xend PV machine address width; xl.cfg has none",
    "suppress_spurious_page_faults": "xend PV option; xl.cfg has none",
    "cpuid_check": "xend checked the host's CPUID before starting the domain; "
                   "xl has no such check (xl.cfg(5) cpuid= sets, not checks)",
    "cpuid": "not xend's (cpuid ((INPUT ((REG BITS) ...))))",
    "rtc/timeoffset": "the guest's RTC offset xend kept across restarts; set "
                      "rtc_timeoffset= to keep it",
    "target": "xend stub-domain target; xl builds device-model stub domains "
              "itself (device_model_stubdomain_override)",
    "change_home_server": "xend-only option",
    "oos": "not a boolean",
    "pci_msitranslate": "not a boolean",
    "pci_power_mgmt": "not a boolean",
}

#: Why a ``(device (CLASS ...))`` without a reader has no xl equivalent.
DEVICE_REASONS: Dict[str, str] = {
    "vtpm": "xl has vtpm=[\"backend=DOMAIN,uuid=UUID\"], served by a vTPM stub "
            "domain (xen-vtpm(7)); xend's vTPM in dom0 and its state cannot be "
            "carried over, so none is written",
    "vscsi": "Xen 4.17's xl has no PV SCSI (no vscsi in xl.cfg(5)); give the "
             "guest the LUN as a disk (disk=, phy:/dev/...) or pass the HBA "
             "through (pci=)",
    "vusb": "xl has usbctrl=/usbdev= (PVUSB), but names host devices by "
            "hostbus/hostaddr, not by xend's port bus IDs; write them by hand",
    "vif2": "netchannel2 never left xend; use vif=",
    "ioports": "keys xend's ioports device does not have (xl: ioports=)",
    "irq": "keys xend's irq device does not have (xl: irqs=)",
}

DEFAULT_REASON = "not recognised (see xl.cfg(5))"

#: value(s) meaning "what xl does anyway", by key (the tail's one value as text)
_DEFAULTS: Dict[str, FrozenSet[str]] = {
    "nomigrate": frozenset({"0"}), "superpages": frozenset({"0"}),
    "on_xend_start": frozenset({"ignore"}), "on_xend_stop": frozenset({"ignore"}),
    "auto_power_on": frozenset({"0", "False", "false"}),
    "is_a_template": frozenset({"0", "False", "false"}),
    "guest_os_type": frozenset({"default"}), "vhpt": frozenset({"0"}),
    "isa": frozenset({"0"}), "xen_extended_power_mgmt": frozenset({"0"}),
    "memory_sharing": frozenset({"0"}), "target": frozenset({"0"}),
    "vncconsole": frozenset({"0"}), "rtc/timeoffset": frozenset({"0"}),
    "oos": frozenset({"1"}), "s3_integrity": frozenset({"1"}),
    "machine_address_size": frozenset({"0"}),
    "suppress_spurious_page_faults": frozenset({"0", "False", "false"}),
    "backend": frozenset({"0"}), "features": frozenset({""}),
    "change_home_server": frozenset({"False", "false", "0"}),
    "bootable": frozenset({"0", "1"}),
}

#: Facts about the running domain, not configuration.
_RUNTIME: FrozenSet[str] = frozenset({
    "online_vcpus", "up_time", "shutdown_reason", "notes", "location", "uuid",
    "VDI", "protocol", "frontend", "backend-id", "devid", "state", "cpu_time",
    "start_time"})


def _scalar(value: Any) -> Optional[str]:
    """The one value of a tail as text, None for anything else."""
    if isinstance(value, list):
        if len(value) != 1 or isinstance(value[0], (list, dict)):
            return None
        value = value[0]
    if isinstance(value, (dict, list)):
        return None
    return "" if value is None else str(value)


def _empty(value: Any) -> bool:
    if value in ([], "", [""], None, {}, [[]]):
        return True
    return isinstance(value, list) and all(_empty(v) for v in value)


def device_class(value: Any) -> Optional[str]:
    """The class of a kept ``device`` tail (``[["vtpm", ...]]``)."""
    if isinstance(value, list) and value and isinstance(value[0], list) and \
            value[0] and isinstance(value[0][0], str):
        return value[0][0]
    return None


def classify(key: str, value: Any, dom: Domain, where: str = "top"
             ) -> Tuple[str, str]:
    """(``"omitted"`` or ``"untranslated"``, why) for a kept key; *where*
    is ``top``, ``image`` or a device (``disk``, ``vif``, ``vfb``, ``pci``)."""
    if _empty(value):
        return "omitted", XL_DEFAULT
    text = _scalar(value)
    if key in _RUNTIME and not (key == "uuid" and where == "top"):
        return "omitted", RUNTIME
    if text is not None and text in _DEFAULTS.get(key, ()):
        return "omitted", XL_DEFAULT
    if where == "image":
        if key == "vcpus" and text is not None and dom.vcpus is not None \
                and text.strip() == str(dom.vcpus):
            return "omitted", DUPLICATE
        if key == "pci" and dom.pci:
            return "omitted", DUPLICATE
        if key == "videoram" and dom.type != "hvm" and (text == "4" or not dom.vfbs):
            return "omitted", XL_DEFAULT      # xend's default, or no framebuffer
        if key in ("pci_msitranslate", "pci_power_mgmt") and text in ("0", "1"):
            return "omitted", XL_DEFAULT
    if key == "device":
        cls = device_class(value)
        return "untranslated", DEVICE_REASONS.get(
            cls or "", "a device class xl does not have (see xl.cfg(5))")
    reason = REASONS.get(key)
    if reason is None and key.startswith("libxl:"):
        reason = "libxl setting this converter does not carry"
    elif reason is None and key.startswith("/"):
        reason = "libvirt element this converter does not carry"
    return "untranslated", reason or DEFAULT_REASON
