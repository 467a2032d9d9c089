"""xend's ``xend-config.sxp`` (legacy-api.md section 12.2), read-only.

Only the relocation settings matter to remus; the file usually no longer
exists on xl hosts, and then the xend defaults apply.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from .. import errors

DEFAULT_PATH = "/etc/xen/xend-config.sxp"
DEFAULTS = {
    "xend-relocation-port": 8002,
    "xend-relocation-server": "no",
    "xend-relocation-address": "",
    "xend-relocation-hosts-allow": "",
}


def config_path() -> str:
    return os.environ.get("XEND_CONFIG") or DEFAULT_PATH


def load(path: Optional[str] = None) -> list:
    """The file as ``['xend-config', ...]`` (empty when it does not exist)."""
    from .. import sxp
    path = path or config_path()
    try:
        values = sxp.load_file(path)
    except FileNotFoundError:
        values = []
    except OSError as e:
        raise errors.InputError(f"cannot read {path}: {os.strerror(e.errno)}",
                                source=path) from e
    return ["xend-config"] + list(values)


def get(key: str, default: Any = None, path: Optional[str] = None) -> Any:
    from .. import sxp
    conf = load(path)
    value = sxp.child_value(conf, key)
    if value is None:
        return DEFAULTS.get(key, default) if default is None else default
    return value


def relocation_port(path: Optional[str] = None) -> int:
    value = get("xend-relocation-port", path=path)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.InputError("invalid xend config xend-relocation-port: "
                                f"expected int: {value!r}",
                                source=path or config_path()) from None
