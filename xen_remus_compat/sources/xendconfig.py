"""xend's ``xend-config.sxp`` (legacy-api.md section 12.2), read-only.

Only the relocation settings matter to remus; the file usually no longer
exists on xl hosts, and then the xend defaults apply.
:func:`relocation_settings` gathers what ``remus-receiver`` honours, as
xend's ``relocate.listenRelocation`` read them: the address to bind, the
hosts-allow regular expressions and the SSL server with its key and
certificate (on ``xend-relocation-ssl-port``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from .. import errors

DEFAULT_PATH = "/etc/xen/xend-config.sxp"
DEFAULTS = {
    "xend-relocation-port": 8002,
    "xend-relocation-server": "no",
    "xend-relocation-address": "",
    "xend-relocation-hosts-allow": "",
    "xend-relocation-ssl-server": "no",
    "xend-relocation-ssl-port": 8003,
    "xend-relocation-server-ssl-key-file": "",
    "xend-relocation-server-ssl-cert-file": "",
}

#: xend's spellings of a boolean (XendOptions.get_config_bool)
_TRUE = ("yes", "y", "1", "on", "true", "t")
_FALSE = ("no", "n", "0", "off", "false", "f")


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


def _port(key: str, value: Any, path: Optional[str]) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise errors.InputError(f"invalid xend config {key}: "
                                f"expected int: {value!r}",
                                source=path or config_path()) from None
    if not 0 <= port <= 65535:
        raise errors.InputError(f"invalid xend config {key}: {port} is not a "
                                "TCP port (0-65535)",
                                source=path or config_path())
    return port


def _bool(key: str, value: Any, path: Optional[str]) -> bool:
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise errors.InputError(f"invalid xend config {key}: expected bool: "
                            f"{value!r}", source=path or config_path())


def relocation_port(path: Optional[str] = None) -> int:
    return _port("xend-relocation-port", get("xend-relocation-port", path=path),
                 path)


@dataclass(frozen=True)
class RelocationSettings:
    """What xend's relocation server was told (xend defaults when unset).

    ``key_file``/``cert_file`` are resolved against the directory of the
    file when relative (xend used them as given, from its working
    directory ``/``).
    """

    port: int
    address: str
    hosts_allow: str
    ssl_server: bool
    ssl_port: int
    key_file: str
    cert_file: str
    path: str


def relocation_settings(path: Optional[str] = None) -> RelocationSettings:
    path = path or config_path()
    conf = load(path)
    from .. import sxp

    def value(key: str) -> Any:
        v = sxp.child_value(conf, key)
        return DEFAULTS[key] if v is None else v

    def file(key: str) -> str:
        name = str(value(key) or "")
        if name and not os.path.isabs(name):
            name = os.path.join(os.path.dirname(os.path.abspath(path)), name)
        return name

    return RelocationSettings(
        port=_port("xend-relocation-port", value("xend-relocation-port"), path),
        address=str(value("xend-relocation-address") or ""),
        hosts_allow=str(value("xend-relocation-hosts-allow") or ""),
        ssl_server=_bool("xend-relocation-ssl-server",
                         value("xend-relocation-ssl-server"), path),
        ssl_port=_port("xend-relocation-ssl-port",
                       value("xend-relocation-ssl-port"), path),
        key_file=file("xend-relocation-server-ssl-key-file"),
        cert_file=file("xend-relocation-server-ssl-cert-file"),
        path=path)
