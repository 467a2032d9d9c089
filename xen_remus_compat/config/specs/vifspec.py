"""Network interfaces: xend vif props, the xl vif string, libxl device_nic.

* xend (legacy-api.md §4, §11.5): ``(vif (mac 0:16:3E:1:2:3) (bridge xenbr0)
  (type ioemu) (rate 10240KB/s) ...)``; MACs are canonicalised the way
  ``xen.remus.util.canonifymac`` does.
* xl (xl-side.md §4.3, ``xl-network-configuration.5``): comma-separated
  ``key=value`` items, parsed as xl 4.17's ``parse_nic_config`` does
  (strtok on ``,``, leading blanks skipped, later keys override earlier).
* libxl (xl-side.md §4.2): ``rate`` becomes ``rate_bytes_per_interval`` /
  ``rate_interval_usecs`` with libxlutil's arithmetic (``xlu_vif_parse_rate``:
  decimal or, with a leading 0, octal numbers; default interval 50 ms).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ... import errors
from ..model import Nic

log = logging.getLogger("xen_remus_compat")

# ---------------------------------------------------------------- MAC

_MAC = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}\Z")


def canonical_mac(s: str) -> str:
    """``0:16:3E:1:2:3`` -> ``00:16:3e:01:02:03`` (canonifymac, §4)."""
    text = str(s).strip()
    if not _MAC.match(text):
        raise errors.VifSpecError(
            f"invalid MAC address {s!r}: expected six hex octets separated by ':'")
    return ":".join(f"{int(octet, 16):02x}" for octet in text.split(":"))


def _xl_mac(value: str) -> str:
    """xl's MAC loop: six ``strtoul(.., 16)`` octets, each followed by any
    one separator character (xl_parse.c parse_nic_config)."""
    octets, pos = [], 0
    for _ in range(6):
        m = re.compile(r"[ \t\n\v\f\r]*\+?(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)").match(
            value, pos)
        if m is None or int(m.group(1), 16) > 255:
            raise errors.VifSpecError(f"Invalid parameter `mac'. ({value!r})")
        octets.append(int(m.group(1), 16))
        pos = m.end() + 1
    if pos < len(value):
        log.warning("vif mac %r: trailing %r ignored, as xl does", value, value[pos:])
    return ":".join(f"{o:02x}" for o in octets)


# ---------------------------------------------------------------- rate

_UINT32_MAX = 0xFFFFFFFF
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF
_DEFAULT_INTERVAL = 50000               # usecs
_RATE_RE = re.compile(r"[0-9]+[GMK]?[Bb]/s\Z")
_INTERVAL_RE = re.compile(r"[0-9]+[mu]?s?\Z")
_UNITS = {"G": 1000 ** 3, "M": 1000 ** 2, "K": 1000}
_INTERVAL_UNITS = {"s": 1000 ** 2, "": 1000 ** 2, "m": 1000}


def _strtoull0(text: str) -> Tuple[int, str]:
    """C ``strtoull(s, &end, 0)`` on a string starting with digits:
    value and the rest (a leading 0 means octal)."""
    m = re.match(r"0[0-7]*" if text.startswith("0") else r"[0-9]+", text)
    digits = m.group()
    value = int(digits, 8) if digits.startswith("0") else int(digits)
    return value, text[m.end():]


def _rate_error(message: str, text: str) -> errors.VifSpecError:
    return errors.VifSpecError(f"config parsing error in vif: {message} in `{text}'")


def parse_rate(rate: str) -> Tuple[int, int]:
    """``RATE[@INTERVAL]`` -> (bytes per interval, interval usecs), exactly
    as ``xlu_vif_parse_rate`` computes them; errors carry its messages."""
    amount, at, interval = rate.partition("@")
    if amount == "":
        raise _rate_error("no rate specified", rate)
    if not _RATE_RE.match(amount):
        raise _rate_error("invalid rate", amount)
    bps, rest = _strtoull0(amount)
    if bps == 0 or bps > _UINT32_MAX:
        raise _rate_error("rate overflow", amount)
    bps *= _UNITS.get(rest[:1], 1)
    if rest[:1] == "b" or rest[1:2] == "b":
        bps //= 8
    usecs = _DEFAULT_INTERVAL
    if at:
        if not _INTERVAL_RE.match(interval):
            raise _rate_error("invalid replenishment interval", interval)
        usecs, rest = _strtoull0(interval)
        if usecs == 0 or usecs > _UINT32_MAX:
            raise _rate_error("replenishment interval overflow", interval)
        usecs *= _INTERVAL_UNITS.get(rest[:1], 1)
        if usecs > _UINT32_MAX:
            raise _rate_error("replenishment interval overflow", interval)
    if bps > _UINT64_MAX // usecs:
        raise _rate_error("rate overflow", rate)
    return bps * usecs // 1000000, usecs


def _interval_text(usecs: int) -> str:
    if usecs == _DEFAULT_INTERVAL:
        return ""
    for unit, scale in (("s", 1000 ** 2), ("ms", 1000)):
        if usecs % scale == 0:
            return f"@{usecs // scale}{unit}"
    return f"@{usecs}us"


def rate_string(bytes_per_interval: int, interval_usecs: int) -> Optional[str]:
    """An xl rate that :func:`parse_rate` maps back to exactly these two
    numbers (roundest unit first), or None when none exists."""
    if interval_usecs <= 0 or interval_usecs > _UINT32_MAX or bytes_per_interval < 0:
        return None
    lo = max(1, -(-bytes_per_interval * 1000000 // interval_usecs))
    hi = -(-(bytes_per_interval + 1) * 1000000 // interval_usecs)   # exclusive
    for unit, scale in (("G", 1000 ** 3), ("M", 1000 ** 2), ("K", 1000), ("", 1)):
        n = -(-lo // scale)
        if n * scale < hi and n <= _UINT32_MAX:
            text = f"{n}{unit}B/s{_interval_text(interval_usecs)}"
            try:
                if parse_rate(text) == (bytes_per_interval, interval_usecs):
                    return text
            except errors.VifSpecError:
                pass
    return None


_XEND_RATE = re.compile(r"([0-9]+)([GMK]?)([Bb])/s(?:@([0-9]+)([mu]?)s)?\Z")


def _xend_rate(text: str) -> Optional[Tuple[int, int]]:
    """xend's netif.parseRate (decimal); None where xend fell back to
    "unlimited" (no match, zero or over 32 bits)."""
    m = _XEND_RATE.match(text)
    if not m:
        return None
    bps = int(m.group(1)) * _UNITS.get(m.group(2), 1)
    if m.group(3) == "b":
        bps //= 8
    usecs = _DEFAULT_INTERVAL
    if m.group(4) is not None:
        usecs = int(m.group(4)) * {"": 1000 ** 2, "m": 1000, "u": 1}[m.group(5)]
    per_interval = bps * usecs // 1000000
    if not 0 < per_interval <= _UINT32_MAX or not 0 < usecs <= _UINT32_MAX:
        return None
    return per_interval, usecs


# ---------------------------------------------------------------- xl string

#: xl keyword -> Nic attribute (replace_string semantics: last one wins).
_XL_STRINGS = {"bridge": "bridge", "gatewaydev": "gatewaydev", "ip": "ip",
               "script": "script", "backend": "backend", "vifname": "vifname",
               "model": "model"}
_XL_TYPES = {"vif": "vif", "ioemu": "ioemu"}
_COLO_FIELDS = tuple(
    [f"colo_sock_{s}_{k}" for s in ("mirror", "compare_pri_in", "compare_sec_in",
                                     "compare_notify", "redirector0", "redirector1",
                                     "redirector2", "sec_redirector0",
                                     "sec_redirector1")
     for k in ("id", "ip", "port")]
    + [f"colo_filter_{s}_{k}" for s, ks in (
        ("mirror", ("queue", "outdev")),
        ("redirector0", ("queue", "indev", "outdev")),
        ("redirector1", ("queue", "indev", "outdev")),
        ("sec_redirector0", ("queue", "indev", "outdev")),
        ("sec_redirector1", ("queue", "indev", "outdev")),
        ("sec_rewriter0", ("queue",))) for k in ks]
    + ["colo_compare_pri_in", "colo_compare_sec_in", "colo_compare_out",
       "colo_compare_notify_dev", "colo_checkpoint_host", "colo_checkpoint_port"])
#: xl keyword -> libxl field kept in Nic.extra
_XL_EXTRA = dict({"forwarddev": "coloft_forwarddev"}, **{f: f for f in _COLO_FIELDS})


def _xl_ulong(value: str) -> int:
    m = re.match(r"[ \t\n\v\f\r]*\+?([0-9]+)", value)
    if m is None:
        raise errors.VifSpecError(f"xl: failed to convert \"{value}\" to number")
    return int(m.group(1))


def parse_xl(spec: str, *, source: Optional[str] = None) -> Nic:
    """An xl vif string, item by item as xl 4.17 ``parse_nic_config``
    (xl-side.md §4.3); an unknown item raises (xl prints and, in a config
    file, carries on)."""
    nic = Nic()
    try:
        for item in (t.lstrip(" ") for t in spec.split(",") if t):
            key, eq, value = item.partition("=")
            if not eq:
                if item in ("trusted", "untrusted"):
                    _set_extra(nic, "trusted", item == "trusted")
                    continue
                raise errors.VifSpecError(f"unrecognized argument `{item}'")
            if key in _XL_STRINGS:
                setattr(nic, _XL_STRINGS[key], value)
            elif key == "netdev":
                log.warning("vif: the netdev parameter is deprecated, "
                            "please use gatewaydev instead")
                nic.gatewaydev = value
            elif key == "type":
                if value not in _XL_TYPES:
                    raise errors.VifSpecError("Invalid parameter `type'.")
                nic.type = _XL_TYPES[value]
            elif key == "mac":
                nic.mac = _xl_mac(value)
            elif key == "rate":
                parse_rate(value)
                nic.rate = value
            elif key == "accel":
                log.warning("vif: the accel parameter for vifs is currently "
                            "not supported (xl ignores it)")
                nic.accel = value
            elif key in ("devid", "mtu"):
                setattr(nic, key, _xl_ulong(value))
            elif key in _XL_EXTRA:
                _set_extra(nic, _XL_EXTRA[key], value)
            else:
                raise errors.VifSpecError(f"unrecognized argument `{item}'")
    except errors.VifSpecError as exc:
        exc.source = exc.source or source
        exc.message = f"{exc.message} in vif {spec!r}"
        exc.args = (exc.message,)
        raise
    return nic


def _set_extra(nic: Nic, key: str, value: Any) -> None:
    nic.extra = [(k, v) for k, v in nic.extra if k != key] + [(key, value)]


def _extra(nic: Nic, key: str, default: Any = None) -> Any:
    for k, v in nic.extra:
        if k == key:
            return v
    return default


def _check(key: str, value: str) -> str:
    if "," in value or "\n" in value or "\0" in value:
        raise errors.UntranslatableError(
            f"vif {key} {value!r} contains a comma or newline, which the xl "
            "vif syntax cannot carry")
    return value


def format_xl(nic: Nic) -> str:
    """The xl vif string (xl-network-configuration.5 keywords), in the
    order libvirt's xl writer uses (mac, bridge, ip, script, model, vifname,
    type, ...); a zero or absent MAC is left to libxl (random)."""
    items: List[Tuple[str, Any]] = [
        ("mac", nic.mac and canonical_mac(nic.mac)), ("bridge", nic.bridge),
        ("ip", nic.ip), ("script", nic.script), ("model", nic.model),
        ("vifname", nic.vifname),
        ("type", {"ioemu": "ioemu", "vif": "vif", "netfront": "vif"}.get(nic.type or "")),
        ("backend", nic.backend if nic.backend is not None
         else (str(nic.backend_domid) if nic.backend_domid else None)),
        ("rate", nic.rate), ("gatewaydev", nic.gatewaydev),
        ("mtu", nic.mtu or None), ("devid", nic.devid)]
    if nic.type and nic.type not in ("ioemu", "vif", "netfront"):
        raise errors.UntranslatableError(f"vif type {nic.type!r} has no xl equivalent")
    if nic.rate is not None:
        parse_rate(nic.rate)
    for xl_key, field in _XL_EXTRA.items():
        items.append((xl_key, _extra(nic, field)))
    for name, why in (("accel", "netfront accelerator plugins are not supported by xl"),
                      ("uuid", "xl has no vif uuid")):
        if getattr(nic, name):
            log.info("vif %s=%r dropped: %s", name, getattr(nic, name), why)
    text = [f"{k}={_check(k, str(v))}" for k, v in items if v is not None]
    trusted = _extra(nic, "trusted")
    if trusted is not None:
        text.append("trusted" if trusted else "untrusted")
    return ",".join(text)


# ---------------------------------------------------------------- xend props

_LEGACY_STRINGS = ("bridge", "ip", "script", "vifname", "model", "uuid", "accel")
_LEGACY_TYPES = ("ioemu", "netfront", "vif")


def parse_legacy(props: Mapping[str, Any], *, source: Optional[str] = None) -> Nic:
    """xend vif props (sxpr device entry or ``vm.dom`` dict) -> Nic.

    ``backend`` is a domid in xend; ``rate`` is re-expressed in xl syntax
    with xend's (decimal) meaning; a rate xend ignored (it then ran the vif
    unlimited) is kept in ``extra`` with nothing set.  Unknown keys go to
    ``extra``."""
    nic = Nic()
    try:
        for key, value in props.items():
            if key == "mac":
                nic.mac = canonical_mac(value)
            elif key in _LEGACY_STRINGS:
                setattr(nic, key, str(value))
            elif key == "type":
                if str(value) not in _LEGACY_TYPES:
                    raise errors.VifSpecError(f"vif type {value!r} unknown "
                                              f"(one of {', '.join(_LEGACY_TYPES)})")
                nic.type = str(value)
            elif key == "backend":
                text = str(value)
                if text.isdigit():
                    nic.backend_domid = int(text)
                else:
                    nic.backend = text
            elif key == "rate":
                parsed = _xend_rate(str(value))
                nic.rate = parsed and rate_string(*parsed)
                if nic.rate is None:
                    log.warning("vif rate %r: xend ran this vif unlimited; "
                                "kept as untranslated", value)
                    nic.extra.append(("rate", value))
            elif key in ("devid", "mtu"):
                setattr(nic, key, int(value))
            else:
                nic.extra.append((key, value))
    except errors.VifSpecError as exc:
        exc.source = exc.source or source
        raise
    except ValueError as exc:
        raise errors.VifSpecError(f"vif {dict(props)!r}: {exc}", source=source) from None
    return nic


# ---------------------------------------------------------------- libxl

#: libxl_device_nic fields in IDL order (4.17).
_NIC_FIELDS = (("backend_domid", "backend_domname", "devid", "mtu", "model", "mac",
                "ip", "bridge", "ifname", "script", "nictype",
                "rate_bytes_per_interval", "rate_interval_usecs", "gatewaydev",
                "coloft_forwarddev") + _COLO_FIELDS + ("trusted",))
_NICTYPES = {"ioemu": "vif_ioemu", "vif": "vif", "netfront": "vif"}
_ZERO_MAC = "00:00:00:00:00:00"


def nic_to_libxl(nic: Nic) -> Dict[str, Any]:
    """A ``libxl_device_nic`` as libxl's JSON generator writes it (IDL
    order, defaults omitted: devid -1, mtu 0, zero MAC, unknown nictype)."""
    v: Dict[str, Any] = {
        "backend_domid": nic.backend_domid, "backend_domname": nic.backend,
        "devid": nic.devid, "mtu": nic.mtu, "model": nic.model,
        "mac": nic.mac and canonical_mac(nic.mac), "ip": nic.ip,
        "bridge": nic.bridge, "ifname": nic.vifname, "script": nic.script,
        "nictype": _NICTYPES.get(nic.type or ""), "gatewaydev": nic.gatewaydev}
    if nic.rate is not None:
        v["rate_bytes_per_interval"], v["rate_interval_usecs"] = parse_rate(nic.rate)
    for key, value in nic.extra:
        if key in _NIC_FIELDS and v.get(key) is None:
            v[key] = value
    if isinstance(v.get("trusted"), bool):
        v["trusted"] = "True" if v["trusted"] else "False"
    out = {}
    for name in _NIC_FIELDS:
        value = v.get(name)
        if value is None or (value == 0 and name != "devid") or value == _ZERO_MAC \
                or (name == "devid" and value == -1):
            continue
        out[name] = value
    return out


def nic_from_libxl(d: Mapping[str, Any]) -> Nic:
    """The model from a ``libxl_device_nic`` JSON object; fields the model
    does not name (COLO, trusted, a rate no xl string expresses) go to
    ``extra``."""
    nic = Nic()
    simple = {"backend_domname": "backend", "model": "model", "ip": "ip",
              "bridge": "bridge", "ifname": "vifname", "script": "script",
              "gatewaydev": "gatewaydev"}
    for key, value in d.items():
        if key in simple:
            setattr(nic, simple[key], value)
        elif key in ("backend_domid", "devid", "mtu"):
            setattr(nic, key, int(value))
        elif key == "mac":
            nic.mac = None if value == _ZERO_MAC else canonical_mac(value)
        elif key == "nictype":
            nictype = str(value).lower()
            nic.type = {"vif_ioemu": "ioemu", "vif": "vif"}.get(nictype)
            if nic.type is None and nictype != "unknown":
                raise errors.ConfigError(f"nic nictype {value!r} unknown")
        elif key in ("rate_bytes_per_interval", "rate_interval_usecs"):
            continue
        elif key == "trusted":
            if value not in (None, "<default>"):
                nic.extra.append(("trusted", str(value).lower() == "true"))
        else:
            nic.extra.append((key, value))
    if "rate_bytes_per_interval" in d or "rate_interval_usecs" in d:
        per = int(d.get("rate_bytes_per_interval", 0))
        usecs = int(d.get("rate_interval_usecs", 0))
        nic.rate = rate_string(per, usecs)
        if nic.rate is None:
            nic.extra += [("rate_bytes_per_interval", per), ("rate_interval_usecs", usecs)]
    return nic
