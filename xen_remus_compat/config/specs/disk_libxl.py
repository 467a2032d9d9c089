"""Disks as libxl's ``libxl_device_disk`` JSON (xl-side.md §4.2, §4.3).

The field table in IDL order, the defaults libxl's generator leaves out,
and the two directions between it and the model's :class:`~..model.Disk`.
Used by the libxl JSON reader and writer (through ``diskspec``, which
re-exports :func:`disk_to_libxl` / :func:`disk_from_libxl`) and by the xl
disk grammar (``disk_xl.py``), whose parse result is such a JSON object.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ... import errors
from ..common import defbool
from ..model import Disk
from .disk_remus import remus_from_target

__all__ = ["DISK_FIELDS", "DEFBOOLS", "is_default", "disk_to_libxl", "disk_from_libxl"]

#: libxl_device_disk fields in IDL order (4.17; grant_usage is 4.19+).
DISK_FIELDS = ("backend_domid", "backend_domname", "pdev_path", "vdev",
               "backend", "format", "script", "removable", "readwrite",
               "is_cdrom", "direct_io_safe", "discard_enable", "specification",
               "transport", "irq", "base", "colo_enable", "colo_restore_enable",
               "colo_host", "colo_port", "colo_export", "active_disk",
               "hidden_disk", "trusted", "grant_usage")
DEFBOOLS = frozenset(("discard_enable", "colo_enable", "colo_restore_enable",
                      "trusted", "grant_usage"))
_ENUM_FIELDS = {
    "backend": ("unknown", "phy", "tap", "qdisk", "standalone"),
    "format": ("unknown", "qcow", "qcow2", "vhd", "raw", "empty", "qed"),
    "specification": ("unknown", "xen", "virtio"),
    "transport": ("unknown", "mmio"),
}
#: model attribute -> libxl field, for the fields the model names.
_MODEL_FIELDS = (
    ("backend_domid", "backend_domid"), ("backend_domname", "backend_domname"),
    ("target", "pdev_path"), ("vdev", "vdev"), ("backend", "backend"),
    ("format", "format"), ("script", "script"), ("removable", "removable"),
    ("readwrite", "readwrite"), ("is_cdrom", "is_cdrom"),
    ("direct_io_safe", "direct_io_safe"), ("discard_enable", "discard_enable"),
    ("specification", "specification"), ("colo_enable", "colo_enable"),
    ("colo_host", "colo_host"), ("colo_port", "colo_port"),
    ("colo_export", "colo_export"), ("active_disk", "active_disk"),
    ("hidden_disk", "hidden_disk"), ("trusted", "trusted"))
_INT_FIELDS = frozenset(("removable", "readwrite", "is_cdrom"))
_ALWAYS = frozenset(("vdev",))       # mandatory: printed even when empty


def is_default(name: str, value: Any) -> bool:
    """Whether libxl's generator leaves field *name* out at *value*."""
    if name in _ALWAYS:
        return value is None
    return value in (None, 0, False, "unknown", "<default>")


def disk_to_libxl(disk: Disk) -> Dict[str, Any]:
    """A ``libxl_device_disk`` as libxl's JSON generator writes it: IDL
    order, fields equal to their default omitted (xl-side.md §4.2)."""
    values: Dict[str, Any] = {}
    for attr, name in _MODEL_FIELDS:
        value = getattr(disk, attr)
        if name in _INT_FIELDS:
            value = int(bool(value))
        elif name in DEFBOOLS and value is not None:
            value = defbool(value)
        values[name] = value
    for key, value in disk.extra:        # libxl fields the model does not name
        if key in DISK_FIELDS and key not in values:
            values[key] = value
    return {name: values[name] for name in DISK_FIELDS
            if name in values and not is_default(name, values[name])}


def _enum_in(key: str, value: Any) -> Optional[str]:
    value = None if value is None else str(value).lower()
    if value is not None and value not in _ENUM_FIELDS[key]:
        raise errors.ConfigError(f"disk field {key}: unknown value {value!r}")
    return None if value == "unknown" else value


def _defbool_in(key: str, value: Any) -> Optional[bool]:
    if value is None or value == "<default>":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise errors.ConfigError(f"disk field {key}: {value!r} is not a libxl defbool")


#: libxl field -> decoder(key, value) into the model's value; a field
#: without one is taken as it is.
_DECODERS: Dict[str, Callable[[str, Any], Any]] = {
    **{key: _enum_in for key in _ENUM_FIELDS},
    **{key: (lambda k, v: bool(int(v))) for key in _INT_FIELDS},
    **{key: _defbool_in for key in DEFBOOLS},
    "direct_io_safe": lambda k, v: bool(v),
    "backend_domid": lambda k, v: int(v),
    "colo_port": lambda k, v: int(v),
}


def disk_from_libxl(d: Dict[str, Any]) -> Disk:
    """The model from a ``libxl_device_disk`` JSON object (enums matched
    case-insensitively, as libxl's parser does); unmodelled fields go to
    ``extra``."""
    disk = Disk(readwrite=False)        # an omitted int field is 0
    known = {name: attr for attr, name in _MODEL_FIELDS}
    for key, value in d.items():
        attr = known.get(key)
        if attr is None:
            disk.extra.append((key, value))
            continue
        decode = _DECODERS.get(key)
        if decode is not None:
            value = decode(key, value)
        setattr(disk, attr, "" if attr == "vdev" and value is None else value)
    disk.remus = remus_from_target(disk)
    return disk
