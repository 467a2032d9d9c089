"""Passed-through PCI functions: xend's ``(dev ...)`` keys, libxl's
``libxl_device_pci`` and xl's PCI_SPEC_STRING, onto one :class:`PciDev`.

* xend (``server/pciif.py``, ``util/pci.py``, ``XendConstants.py``):
  ``(dev (domain 0x0001) (bus 0x0c) (slot 0x1b) (func 0x2) (vdevfn 0x28)
  (opts (msitranslate 1)))``.  Xen 4.x names the guest's virtual device
  and function ``vdevfn`` (``slot << 3 | func``; ``AUTO_PHP_SLOT`` 0x100
  = "let qemu pick"); Xen 3.4 named the virtual slot alone ``vslot``
  (``AUTO_PHP_SLOT`` = ``NR_PCI_DEV`` = 0x20 = "let qemu pick");
* libxl (xl-side.md 4.2, ``libxl_types.idl`` ``libxl_device_pci``):
  ``func dev bus domain vdevfn vfunc_mask msitranslate power_mgmt
  permissive seize rdm_policy``, ``vdevfn`` again ``slot << 3 | func``;
* xl (``xl-pci-configuration(5)``): ``BDF[,KEY=VALUE...]`` with the
  options ``vslot``, ``msitranslate``, ``power_mgmt``, ``permissive``,
  ``seize``, ``rdm_policy``.

The model keeps the physical BDF in the :class:`PciDev` fields and
everything else as xl ``KEY=VALUE`` options: a requested virtual slot is
``("vslot", "0xNN")`` whichever format named it, so the readers of xend
sxprs and of libxl JSON agree.  Values are checked and converted by the
format readers (they name the source and the key path in errors); this
module holds what the keys mean.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from ...errors import ConfigError
from ..model import PciDev

__all__ = ["BDF_LIMITS", "LIBXL_BDF", "XEND_VSLOT_KEYS", "BOOL_OPTIONS",
           "RDM_POLICIES", "AUTO_PHP_SLOT", "LEGACY_AUTO_PHP_SLOT", "in_range",
           "vslot_from_xend", "options_from_libxl", "vdevfn", "pci_to_libxl",
           "format_xl"]

#: Model BDF field -> its largest value (16-bit segment, 8-bit bus,
#: 5-bit device, 3-bit function).
BDF_LIMITS: Dict[str, int] = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "func": 7}

#: libxl_device_pci BDF field -> model attribute, in libxl's IDL order.
LIBXL_BDF: Tuple[Tuple[str, str], ...] = (
    ("func", "func"), ("dev", "slot"), ("bus", "bus"), ("domain", "domain"))

#: Virtual-slot requests xend wrote: 4.x ``vdevfn`` and 3.4 ``vslot``.
XEND_VSLOT_KEYS = ("vdevfn", "vslot")

#: libxl booleans the model keeps as ``(KEY, "1")`` when on.
BOOL_OPTIONS = ("msitranslate", "power_mgmt", "permissive", "seize")

#: libxl_rdm_reserve_policy values worth writing ("invalid" is the default).
RDM_POLICIES = ("strict", "relaxed")

#: xend 4.x ``vdevfn`` bit meaning "no virtual slot requested" (also
#: libxl_internal.h's AUTO_PHP_SLOT).
AUTO_PHP_SLOT = 0x100
#: xend 3.4 ``vslot`` meaning "no virtual slot requested" (NR_PCI_DEV).
LEGACY_AUTO_PHP_SLOT = 0x20


def in_range(attr: str, value: int) -> bool:
    """Whether *value* fits the BDF field *attr* (see :data:`BDF_LIMITS`)."""
    return 0 <= value <= BDF_LIMITS[attr]


def _vslot(slot: int) -> Tuple[str, str]:
    return ("vslot", f"0x{slot:02x}")


def _from_vdevfn(devfn: int) -> Optional[Tuple[str, str]]:
    """``vdevfn`` (``slot << 3 | func``) -> the ``vslot`` option, None
    when it asks for no slot (:data:`AUTO_PHP_SLOT`)."""
    if devfn & AUTO_PHP_SLOT:
        return None
    return _vslot(devfn >> 3)


def vslot_from_xend(key: str, value: int) -> Optional[Tuple[str, str]]:
    """The model option for xend's ``(vdevfn N)`` or ``(vslot N)`` (see
    :data:`XEND_VSLOT_KEYS`); None when xend let qemu pick the slot."""
    if key == "vslot":
        return None if value >= LEGACY_AUTO_PHP_SLOT else _vslot(value)
    return _from_vdevfn(value)


# --------------------------------------------------------------------------
# libxl_device_pci
# --------------------------------------------------------------------------

Options = List[Tuple[str, str]]


def _bool_from_libxl(key: str, value: Any) -> Optional[Options]:
    return [(key, "1")] if value else []


def _vdevfn_from_libxl(key: str, value: Any) -> Optional[Options]:
    if not isinstance(value, int):
        return None
    option = _from_vdevfn(value)
    return [option] if option else []


def _rdm_from_libxl(key: str, value: Any) -> Optional[Options]:
    if value not in RDM_POLICIES + ("invalid",):
        return None
    return [] if value == "invalid" else [(key, value)]


def _vfunc_mask_from_libxl(key: str, value: Any) -> Optional[Options]:
    return [] if value == 1 else None      # 1: the one function the BDF names


#: libxl_device_pci field (besides the BDF) -> decoder to model options.
_FROM_LIBXL: Dict[str, Callable[[str, Any], Optional[Options]]] = {
    **{key: _bool_from_libxl for key in BOOL_OPTIONS},
    "vdevfn": _vdevfn_from_libxl,
    "rdm_policy": _rdm_from_libxl,
    "vfunc_mask": _vfunc_mask_from_libxl,
}


def options_from_libxl(key: str, value: Any) -> Optional[Options]:
    """The model options for one non-BDF ``libxl_device_pci`` field: a
    list (empty for a default or an "off"), or None when the model has no
    name for the field (the reader keeps it in ``extra``)."""
    decode = _FROM_LIBXL.get(key)
    return None if decode is None else decode(key, value)


def vdevfn(pci: PciDev) -> Optional[int]:
    """The ``vdevfn`` of the model's ``vslot`` option, or None without one;
    ConfigError when the option is not a number."""
    value = dict(pci.options).get("vslot")
    if value is None:
        return None
    try:
        return int(value, 0) << 3
    except ValueError:
        raise ConfigError(f"pci {pci.bdf}: bad vslot {value!r}") from None


def pci_to_libxl(pci: PciDev, *, defaults: Optional[Dict[str, str]] = None
                 ) -> Dict[str, Any]:
    """A ``libxl_device_pci`` as xl builds it from the PCI_SPEC_STRING;
    *defaults* are options the device gets unless it sets them itself (xl's
    ``pci_msitranslate``/``pci_power_mgmt``)."""
    d: Dict[str, Any] = {}
    for key, attr in LIBXL_BDF:
        value = getattr(pci, attr)
        if value:
            d[key] = value
    devfn = vdevfn(pci)
    if devfn is not None:
        d["vdevfn"] = devfn
    d["vfunc_mask"] = 1            # xl: the one function named by the BDF
    opts = {**(defaults or {}), **dict(pci.options)}
    for key in BOOL_OPTIONS:
        if key in opts:
            try:
                on = int(opts[key], 0) != 0
            except ValueError:
                raise ConfigError(f"pci {pci.bdf}: bad {key} {opts[key]!r}") from None
            if on:
                d[key] = True
    if opts.get("rdm_policy") in RDM_POLICIES:
        d["rdm_policy"] = opts["rdm_policy"]
    return d


# --------------------------------------------------------------------------
# xl PCI_SPEC_STRING
# --------------------------------------------------------------------------

def format_xl(pci: PciDev) -> Tuple[str, List[Tuple[str, str, str]]]:
    """``BDF[,KEY=VALUE...]`` for xl.cfg ``pci=[...]``, and the options
    that cannot be written there as ``(key, value, reason)``."""
    spec = pci.bdf
    skipped: List[Tuple[str, str, str]] = []
    for key, value in pci.options:
        if "," in str(value) or "=" in str(key):
            skipped.append((key, value, "value cannot hold a comma"))
            continue
        spec += f",{key}={value}"
    return spec, skipped
