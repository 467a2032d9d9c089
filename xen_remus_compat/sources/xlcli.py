"""``xl list -l``: the fallback source when libxenlight cannot be loaded.

xl prints a JSON array of ``{"domid": N, "config": libxl_domain_config}``
(xl-side.md section 4.1), or, with ``output_format="sxp"`` in xl.conf, an
sxp dump of a different schema than xend's (legacy-api.md section 15):
``(domain (domid N) (create_info) ... (device (tap ...)) (device (vif ...)))``,
printed line by line with unquoted values.  Both are read; the sxp dump
through :func:`read_xl_sxp` into the ``libxl_domain_config`` it shows.

Debian installs ``/usr/sbin/xl`` as a wrapper that asks the hypervisor which
version to run; the real binary lives in ``/usr/lib/xen-<version>/bin/xl``.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import errors
from ..log import logger
from .base import DomainRecord, Source

XEND_SOCKET = "/var/run/xend/xmlrpc.sock"


def find_xl(candidates: Optional[Sequence[str]] = None) -> str:
    """The real xl binary: ``$XL``, then Debian's versioned path, then PATH."""
    env = os.environ.get("XL")
    if env:
        return env
    paths = list(candidates) if candidates is not None else \
        sorted(glob.glob("/usr/lib/xen-*/bin/xl"), reverse=True)
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("xl")
    if found:
        return found
    raise errors.EnvironmentProblem(
        "the xl binary was not found (install Debian's xen-utils-4.17, or set $XL)")


def host_toolstack(xend_socket: str = XEND_SOCKET) -> str:
    """``"xend"`` when a xend socket exists, ``"xl"`` otherwise."""
    return "xend" if os.path.exists(xend_socket) else "xl"


def _run_xl(argv: List[str], timeout: float = 30.0) -> str:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except OSError as e:
        raise errors.XenError(f"cannot run {argv[0]}", errno=e.errno) from e
    except subprocess.TimeoutExpired as e:
        raise errors.XenError(f"{' '.join(argv)} timed out after {timeout}s") from e
    if proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise errors.XenError(f"{' '.join(argv)} failed (exit {proc.returncode})"
                              + (f": {err[-1]}" if err else ""),
                              code=proc.returncode)
    return proc.stdout.decode("utf-8", "replace")


def parse_list_output(text: str, *, source: str = "xl list -l") -> List[DomainRecord]:
    """Records from ``xl list -l`` output, JSON or sxp."""
    from ..config.formats import libxl_json
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise errors.ConfigError(f"malformed JSON from xl: {e.msg}",
                                     source=source, line=e.lineno, col=e.colno) from e
        items = data if isinstance(data, list) else [data]
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise errors.ConfigError(f"entry {i} is not an object", source=source)
            if "config" in item:
                domid, cfg = item.get("domid"), item["config"]
            else:
                domid, cfg = None, item
            dom = libxl_json.domain_from_libxl(cfg, domid=domid, source=source)
            out.append(DomainRecord(dom, domid, source="xl", libxl_config=cfg))
        return out
    return _parse_sxp_dump(text, source)


def _parse_sxp_dump(text: str, source: str) -> List[DomainRecord]:
    """xl's ``output_format="sxp"`` dump (not xend's schema, legacy-api.md
    section 15): each domain becomes the ``libxl_domain_config`` it was
    printed from, read by :func:`libxl_json.domain_from_libxl`."""
    from ..config.formats import libxl_json
    out = []
    for domid, cfg, raw in xl_sxp_configs(read_xl_sxp(text, source), source):
        dom = libxl_json.domain_from_libxl(cfg, domid=domid, source=source)
        out.append(DomainRecord(dom, domid, source="xl", sxpr=raw, libxl_config=cfg))
    return out


_XL_SXP_OPEN = re.compile(r"\(([^\s()]+)")
_XL_SXP_LEAF = re.compile(r"\(([^\s()]+)(?:[ \t](.*))?\)")


def read_xl_sxp(text: str, source: str = "xl list -l") -> list:
    """xl's sxp dump as ``["domain", ...]`` trees, one per domain.

    Why not :func:`xen_remus_compat.sxp.loads`: xl does not write xend's
    dialect.  ``printf_info_sexp`` (tools/xl/xl_sxp.c) prints one element
    per line, ``(key %s)`` with the value unquoted (``<default>``, spaces,
    quotes and parentheses inside a kernel command line, ``(null)`` for
    NULL), or ``(key`` alone to open a list and ``)`` to close it.  So it
    is read line by line: a leaf is ``[key]`` or ``[key, "value text"]``.

    xl 4.17 closes a PV domain's ``(domain`` right after its ``(image
    ...)``: the PV devices follow at top level and a stray ``)`` ends the
    dump.  Exactly that is repaired (the devices go back into their
    domain, logged at debug level); anything else that does not fit is a
    :class:`errors.ConfigError` with its line and column.
    """
    top: List[list] = []
    stack: List[list] = []
    opened: List[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body:
            continue
        col = len(line) - len(line.lstrip()) + 1
        leaf = _XL_SXP_LEAF.fullmatch(body)
        if body == ")":
            if stack:
                stack.pop()
                opened.pop()
            elif top:
                logger.debug("%s:%d: stray ')' after a PV domain (xl's sxp quirk)",
                             source, lineno)
            else:
                raise errors.ConfigError("')' with no matching '('", source=source,
                                         line=lineno, col=col)
        elif leaf and stack:
            stack[-1].append([leaf.group(1)] if leaf.group(2) is None
                             else [leaf.group(1), leaf.group(2)])
        elif _XL_SXP_OPEN.fullmatch(body):
            node = [body[1:]]
            if stack:
                stack[-1].append(node)
            elif node[0] == "domain":
                top.append(node)
            elif node[0] == "device" and top:
                logger.debug("%s:%d: device printed after its PV domain was "
                             "closed (xl's sxp quirk)", source, lineno)
                top[-1].append(node)
            else:
                raise errors.ConfigError(
                    f"unexpected ({node[0]} outside a (domain ...)", source=source,
                    line=lineno, col=col)
            stack.append(node)
            opened.append(lineno)
        else:
            raise errors.ConfigError(
                f"not a line of xl's sxp output: {body[:60]!r} (a value with a "
                f"line break cannot be read back; use xl's JSON output)",
                source=source, line=lineno, col=col)
    if stack:
        raise errors.ConfigError(f"end of input with ({stack[-1][0]} not closed "
                                 f"(truncated output?)", source=source,
                                 line=opened[-1], col=1)
    return top


#: libxl_disk_backend by value (``_libxl_types.h``): xl prints the number.
_DISK_BACKENDS = ("unknown", "phy", "tap", "qdisk", "standalone")


def _v_str(v: str) -> Optional[str]:
    return None if v in ("", "(null)") else v     # printf("%s", NULL)


def _v_words(v: str) -> Optional[List[str]]:
    return v.split() or None


def _v_int(v: str) -> int:
    return int(v)


def _v_positive(v: str) -> Optional[int]:
    n = int(v)
    return n if n > 0 else None           # 0 / -1 (LIBXL_MEMKB_DEFAULT): default


def _v_defbool(v: str) -> Optional[str]:
    if v not in ("True", "False", "<default>"):
        raise ValueError(f"expected True, False or <default>, got {v!r}")
    return None if v == "<default>" else v


def _v_mac(v: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{12}", v):
        raise ValueError(f"expected 12 hex digits, got {v!r}")
    return ":".join(v[i:i + 2].lower() for i in range(0, 12, 2))


def _v_disk_backend(v: str) -> Optional[str]:
    n = int(v)
    if not 0 <= n < len(_DISK_BACKENDS):
        raise ValueError(f"unknown libxl_disk_backend {n}")
    return _DISK_BACKENDS[n] if n else None


def _v_except(*defaults: str) -> Callable[[str], Optional[str]]:
    def conv(v: str) -> Optional[str]:
        return None if v in defaults else _v_str(v)
    return conv


def _v_stdvga(v: str) -> Optional[str]:
    return "std" if v == "True" else None   # False: cirrus or the default


#: element -> (libxl_domain_config JSON path, converter) for what xl prints
#: (tools/xl/xl_sxp.c, 4.17).  Elements not listed (oos, ssidref, xsdata,
#: platformdata, tsc_mode, nomigrate, grant frames, nx, vpt_align,
#: nestedhvm, spice*, gfx_passthru, vkb_device, e820_host, frontend_domid)
#: are defaults or host facts the model does not keep.  xl does not print
#: a disk's format or script, a vif's bridge, ip or script, nor on_*.
XL_SXP_DOMAIN: Dict[str, tuple] = {
    "name": ("c_info.name", _v_str),
    "uuid": ("c_info.uuid", _v_except("<unknown>")),
    "cpupool": ("c_info.pool_name", _v_str),
    "hap": ("c_info.hap", _v_defbool),
    "max_vcpus": ("b_info.max_vcpus", _v_positive),
    "max_memkb": ("b_info.max_memkb", _v_positive),
    "target_memkb": ("b_info.target_memkb", _v_positive),
    "bootloader": ("b_info.bootloader", _v_str),
    "bootloader_args": ("b_info.bootloader_args", _v_words),
}
XL_SXP_PV_IMAGE: Dict[str, tuple] = {
    "kernel": ("b_info.kernel", _v_str),
    "cmdline": ("b_info.cmdline", _v_str),
    "ramdisk": ("b_info.ramdisk", _v_str),
}
XL_SXP_HVM_IMAGE: Dict[str, tuple] = {
    "firmware": ("b_info.type.hvm.firmware", _v_str),
    "video_memkb": ("b_info.video_memkb", _v_positive),
    "shadow_memkb": ("b_info.shadow_memkb", _v_positive),
    "pae": ("b_info.type.hvm.pae", _v_defbool),
    "apic": ("b_info.type.hvm.apic", _v_defbool),
    "acpi": ("b_info.type.hvm.acpi", _v_defbool),
    "viridian": ("b_info.type.hvm.viridian", _v_defbool),
    "hpet": ("b_info.type.hvm.hpet", _v_defbool),
    "timer_mode": ("b_info.timer_mode", _v_except("unknown")),
    "stdvga": ("b_info.type.hvm.vga.kind", _v_stdvga),
    "vnc": ("b_info.type.hvm.vnc.enable", _v_defbool),
    "vnclisten": ("b_info.type.hvm.vnc.listen", _v_str),
    "vncdisplay": ("b_info.type.hvm.vnc.display", _v_positive),
    "vncunused": ("b_info.type.hvm.vnc.findunused", _v_defbool),
    "keymap": ("b_info.type.hvm.keymap", _v_str),
    "sdl": ("b_info.type.hvm.sdl.enable", _v_defbool),
    "opengl": ("b_info.type.hvm.sdl.opengl", _v_defbool),
    "nographic": ("b_info.type.hvm.nographic", _v_defbool),
    "device_model": ("b_info.device_model", _v_except("default")),
    "serial": ("b_info.type.hvm.serial", _v_str),
    "boot": ("b_info.type.hvm.boot", _v_str),
    "usb": ("b_info.type.hvm.usb", _v_defbool),
    "usbdevice": ("b_info.type.hvm.usbdevice", _v_str),
}
#: ``(device (tap ...))`` is every disk, whatever its backend
XL_SXP_DISK: Dict[str, tuple] = {
    "backend_domid": ("backend_domid", _v_positive),
    "physpath": ("pdev_path", _v_str),
    "phystype": ("backend", _v_disk_backend),
    "virtpath": ("vdev", _v_str),
    "unpluggable": ("removable", _v_positive),
    "readwrite": ("readwrite", _v_positive),
    "is_cdrom": ("is_cdrom", _v_positive),
}
XL_SXP_NIC: Dict[str, tuple] = {
    "vifname": ("ifname", _v_str),
    "backend_domid": ("backend_domid", _v_positive),
    "devid": ("devid", _v_int),
    "mtu": ("mtu", _v_positive),
    "model": ("model", _v_str),
    "mac": ("mac", _v_mac),
}
XL_SXP_VFB: Dict[str, tuple] = {
    "backend_domid": ("backend_domid", _v_positive),
    "devid": ("devid", _v_int),
    "vnc": ("vnc.enable", _v_defbool),
    "vnclisten": ("vnc.listen", _v_str),
    "vncdisplay": ("vnc.display", _v_positive),
    "vncunused": ("vnc.findunused", _v_defbool),
    "keymap": ("keymap", _v_str),
    "sdl": ("sdl.enable", _v_defbool),
    "opengl": ("sdl.opengl", _v_defbool),
    "display": ("sdl.display", _v_str),
    "xauthority": ("sdl.xauthority", _v_str),
}
#: device class -> (libxl_domain_config list, field table)
XL_SXP_DEVICES: Dict[str, tuple] = {
    "tap": ("disks", XL_SXP_DISK), "vif": ("nics", XL_SXP_NIC),
    "vfb": ("vfbs", XL_SXP_VFB)}
_PCI_DEV = re.compile(r"dev ([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])@([0-9a-f]{2})")


def _put_path(d: dict, path: str, value: Any) -> None:
    parts: List[str] = []
    for part in path.split("."):
        # "type.hvm" is one libxl JSON key (xl-side.md 4.2)
        if parts and parts[-1] == "type" and part in ("hvm", "pv", "pvh"):
            parts[-1] = "type." + part
        else:
            parts.append(part)
    for key in parts[:-1]:
        d = d.setdefault(key, {})
    d[parts[-1]] = value


def _fill(target: dict, elems: list, table: Dict[str, tuple], where: str,
          source: str) -> None:
    for elem in elems:
        if len(elem) != 2 or not isinstance(elem[1], str) or elem[0] not in table:
            continue
        path, conv = table[elem[0]]
        try:
            value = conv(elem[1])
        except ValueError as e:
            raise errors.ConfigError(f"{where}/{elem[0]}: {e}", source=source) from None
        if value is not None:
            _put_path(target, path, value)


def _pci_entry(elems: list, where: str, source: str) -> dict:
    """``(pci (pci dev DDDD:BB:SS.F@VV) (opts msitranslate N power_mgmt N))``."""
    out: dict = {}
    for elem in elems:
        if elem[0] == "pci" and len(elem) == 2:
            m = _PCI_DEV.fullmatch(elem[1])
            if not m:
                raise errors.ConfigError(f"{where}: bad device {elem[1]!r}", source=source)
            for key, text in zip(("domain", "bus", "dev", "func", "vdevfn"), m.groups()):
                if int(text, 16):
                    out[key] = int(text, 16)
        elif elem[0] == "opts" and len(elem) == 2:
            words = elem[1].split()
            for key, value in zip(words[::2], words[1::2]):
                if key in ("msitranslate", "power_mgmt") and value != "0":
                    out[key] = True
    return out


def xl_sxp_configs(trees: list, source: str) -> List[tuple]:
    """``(domid, libxl_domain_config dict, tree)`` for each domain tree of
    :func:`read_xl_sxp`.  The running domid is ``(domid N)``; ``-1`` (what
    ``xl -N create`` prints) is None."""
    out = []
    for tree in trees:
        leaves = {e[0]: e[1] for e in tree[1:] if len(e) == 2 and isinstance(e[1], str)}
        where = f"domain {leaves.get('name', '?')}"
        try:
            domid: Optional[int] = int(leaves.get("domid", "-1"))
        except ValueError:
            raise errors.ConfigError(f"{where}/domid: not a number: {leaves['domid']!r}",
                                     source=source) from None
        if domid is not None and domid < 0:
            domid = None
        hvm = leaves.get("hvm") == "1"
        cfg: dict = {"c_info": {"type": "hvm" if hvm else "pv"},
                     "b_info": {"type.hvm" if hvm else "type.pv": {}}}
        _fill(cfg, tree[1:], XL_SXP_DOMAIN, where, source)
        for image in (e for e in tree[1:] if e[0] == "image"):
            _fill(cfg, image[1:], XL_SXP_PV_IMAGE, where + "/image", source)
            for part in image[1:]:
                if part[0] == "hvm" and len(part) > 1 and isinstance(part[1], list):
                    _fill(cfg, part[1:], XL_SXP_HVM_IMAGE, where + "/image/hvm", source)
        for device in (e for e in tree[1:] if e[0] == "device"):
            for dev in device[1:]:
                if not isinstance(dev, list) or len(dev) < 1:
                    continue
                if dev[0] == "pci":
                    cfg.setdefault("pcidevs", []).append(
                        _pci_entry(dev[1:], where + "/device/pci", source))
                elif dev[0] in XL_SXP_DEVICES:
                    key, table = XL_SXP_DEVICES[dev[0]]
                    entry: dict = {}
                    _fill(entry, dev[1:], table, f"{where}/device/{dev[0]}", source)
                    if key == "disks":
                        entry.setdefault("vdev", "")
                    cfg.setdefault(key, []).append(entry)
        out.append((domid, cfg, tree))
    return out


class XlSource(Source):
    name = "xl"

    def __init__(self, xl: Optional[str] = None,
                 run: Callable[[List[str]], str] = _run_xl) -> None:
        self.xl = xl
        self.run = run

    def records(self) -> List[DomainRecord]:
        xl = self.xl or find_xl()
        text = self.run([xl, "list", "-l"])
        return parse_list_output(text, source=f"{xl} list -l")

    def open_domain(self, ref) -> DomainRecord:
        rec = super().open_domain(ref)
        logger.debug("xl source: %s is domid %s", ref, rec.domid)
        return rec
