"""The vocabulary the xend sxpr reader and writer share: element shapes,
value coercion with error paths, the keys this package adds.

Values in a domain sxpr are strings (parsed text) or ``int``/``float``
(XML-RPC, legacy-api.md section 11.5); an element is ``[name, value...]``
with an optional ``(@ ...)`` attribute list after the name (11.1).  Bad
values raise :class:`~xen_remus_compat.errors.ConfigError` naming the source
and the key path (``domain/memory``).
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Sequence

from ...errors import ConfigError
from ..common import parse_cpulist

__all__ = ["ROOT_NAMES", "IMAGE_TYPE_KEY", "RUNTIME_EXTRA_KEYS", "Ctx", "is_elem",
           "children", "tail", "plain", "scalar", "short", "as_text", "as_int",
           "as_number", "as_flag", "maybe_int", "expand_cpulist", "field_setter"]

#: Top-level element names that hold one domain.
ROOT_NAMES = ("domain", "vm")

#: Keys of ``image_extra`` this package invents (not xend keys).
IMAGE_TYPE_KEY = "image_type"

#: Runtime facts: emitted by ``form="runtime"`` only.
RUNTIME_EXTRA_KEYS = frozenset({
    "online_vcpus", "up_time", "shutdown_reason", "memory_dynamic_min",
    "memory_dynamic_max", "cpu_time", "start_time", "status", "state",
    "store_mfn", "console_mfn"})


class Ctx:
    """Where we are, for error messages."""

    def __init__(self, source: Optional[str]) -> None:
        self.source = source or "<sxpr>"

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}", source=self.source)


# --------------------------------------------------------------------------
# Element shapes
# --------------------------------------------------------------------------

def is_elem(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], str)


def children(elem: Sequence) -> List[Any]:
    """Items after the name, skipping an ``(@ ...)`` attribute list
    (legacy-api.md 11.1)."""
    items = list(elem[1:])
    if items and isinstance(items[0], (list, tuple)) and items[0][:1] == ["@"]:
        items = items[1:]
    elif items and isinstance(items[0], tuple) and items[0][:1] == ("@",):
        items = items[1:]
    return items


def tail(elem: Sequence) -> list:
    """The element's values as a plain list (for ``extra``)."""
    return [plain(v) for v in children(elem)]


def plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def short(v: Any) -> str:
    text = repr(plain(v))
    return text if len(text) <= 60 else text[:57] + "..."


def scalar(ctx: Ctx, path: str, elem: Sequence) -> Any:
    """The single value of ``(key value)``; ``(key)`` is None."""
    vals = children(elem)
    if not vals:
        return None
    if len(vals) > 1:
        # a multi-line string that the reader split: (uname\n phy:/x\n) is
        # one atom, but (args a b) is not something xend wrote
        raise ctx.error(path, f"expected one value, got {len(vals)}")
    return vals[0]


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------

def as_text(ctx: Ctx, path: str, v: Any) -> Optional[str]:
    """A string value; empty means "not set" (xend wrote ``(bootloader )``)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return v if v != "" else None
    raise ctx.error(path, f"expected a string, got a list {short(v)}")


def as_int(ctx: Ctx, path: str, v: Any, *, minimum: Optional[int] = 0,
           base_prefixes: bool = False) -> Optional[int]:
    """An integer given as int, integral float or numeric string."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not v.is_integer():
            raise ctx.error(path, f"expected an integer, got {v!r}")
        n = int(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            if base_prefixes and s.lower().startswith(("0x", "-0x")):
                n = int(s, 16)
            else:
                n = int(s, 10)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise ctx.error(path, f"expected an integer, got {v!r}") from None
            if not f.is_integer():
                raise ctx.error(path, f"expected an integer, got {v!r}") from None
            n = int(f)
    else:
        raise ctx.error(path, f"expected an integer, got a list {short(v)}")
    if minimum is not None and n < minimum:
        raise ctx.error(path, f"must be >= {minimum}, got {n}")
    return n


def as_number(ctx: Ctx, path: str, v: Any) -> Optional[float]:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise ctx.error(path, f"expected a number, got {short(v)}")


def as_flag(ctx: Ctx, path: str, v: Any) -> Optional[bool]:
    """xend's 0/1 platform flags (XENAPI_PLATFORM_CFG_TYPES: int)."""
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    n = as_int(ctx, path, v, minimum=None)
    return None if n is None else n != 0


_DIGITS = re.compile(r"^\d+$")


def maybe_int(v: Any) -> Optional[int]:
    """An int when *v* is one (or all digits), else None: a ``backend``
    is a domain id or a domain name."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _DIGITS.match(v):
        return int(v)
    return None


def expand_cpulist(ctx: Ctx, path: str, text: str) -> List[int]:
    """xend's ``_convert_cpus_to_list``: ``"0-3,^1"`` -> ``[0, 2, 3]``."""
    bits = parse_cpulist(text)
    if bits is None:
        raise ctx.error(path, f"bad CPU list {text!r}")
    return bits


def field_setter(attr: str, conv: Callable) -> Callable:
    """A key handler ``(ctx, path, obj, elem)`` that sets ``obj.attr`` to
    the converted single value of the element (key tables of the reader)."""
    def handler(ctx: Ctx, path: str, obj: Any, elem: Sequence) -> None:
        setattr(obj, attr, conv(ctx, path, scalar(ctx, path, elem)))
    return handler
