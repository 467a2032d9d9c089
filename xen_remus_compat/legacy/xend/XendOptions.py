"""``xen.xend.XendOptions`` (legacy-api.md §12.2): xend-config.sxp settings.

The ``remus`` command reads its default port with
``XendOptions.instance().get_xend_relocation_port()`` while building its
options (§1.1), so this import must work on an xl host where the file is
usually gone.  ``instance()`` reads ``$XEND_CONFIG``, else
``/etc/xen/xend-config.sxp`` (:mod:`xen_remus_compat.sources.xendconfig`), once;
a missing file means xend's defaults.  The getters are generated from
:data:`GETTERS` (xend's names, keys and defaults); a value that does not
convert raises :class:`~xen_remus_compat.legacy.xend.XendError.XendError`
with xend's message, ``invalid xend config KEY: expected int: VALUE``.

What each setting means on an xl host is in the getter's docstring: xl
itself reads none of them; only our ``remus``, ``remus-receiver`` and
legacy scripts do.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from ... import sxp
from ...sources import xendconfig
from .XendError import XendError

_TRUE = ("yes", "y", "1", "on", "true", "t")
_FALSE = ("no", "n", "0", "off", "false", "f")

#: getter -> (config key, kind, xend's default, what it means on an xl host)
GETTERS: Dict[str, Tuple[str, str, Any, str]] = {
    "get_xend_relocation_port": (
        "xend-relocation-port", "int", 8002,
        "TCP port of the relocation server.  On xl: the port 'remus -p' "
        "connects to and 'remus-receiver' listens on (default 8002)."),
    "get_xend_relocation_address": (
        "xend-relocation-address", "str", "",
        "Address the relocation server binds ('' = all).  On xl: the "
        "address 'remus-receiver' binds unless --listen says otherwise."),
    "get_xend_relocation_server": (
        "xend-relocation-server", "bool", "no",
        "Whether xend ran the relocation server.  On xl nothing listens "
        "unless 'remus-receiver' runs; xl migration uses ssh."),
    "get_xend_relocation_hosts_allow": (
        "xend-relocation-hosts-allow", "str", "",
        "Space-separated regexps of peers allowed to relocate ('' = any).  "
        "On xl: the peers 'remus-receiver' admits, matched as xend did "
        "(address or reverse name), unless --hosts-allow says otherwise."),
    "get_xend_relocation_ssl_server": (
        "xend-relocation-ssl-server", "bool", "no",
        "Whether xend ran the SSL relocation server.  On xl: "
        "'remus-receiver' serves TLS with the two ssl key/cert files below "
        "(on the SSL port) unless --tls-cert says otherwise."),
    "get_xend_relocation_server_ssl_key_file": (
        "xend-relocation-server-ssl-key-file", "str", None,
        "Private key of the SSL relocation server.  On xl: "
        "remus-receiver's TLS key (relative: next to xend-config.sxp)."),
    "get_xend_relocation_server_ssl_cert_file": (
        "xend-relocation-server-ssl-cert-file", "str", None,
        "Certificate of the SSL relocation server.  On xl: "
        "remus-receiver's TLS certificate."),
    "get_xend_relocation_ssl_port": (
        "xend-relocation-ssl-port", "int", 8003,
        "Port of the SSL relocation server.  On xl: the port of "
        "'remus-receiver' when xend-relocation-ssl-server is set."),
    "get_xend_relocation_ssl": (
        "xend-relocation-ssl", "bool", "no",
        "Whether xm migrate used SSL.  On xl migration is always over ssh."),
    "get_xend_port": (
        "xend-port", "int", 8000,
        "Port of xend's deprecated HTTP server.  Gone with xend."),
    "get_xend_address": (
        "xend-address", "str", "",
        "Address of xend's HTTP server.  Gone with xend."),
    "get_xend_http_server": (
        "xend-http-server", "bool", "no",
        "Whether xend ran its HTTP server.  Gone with xend."),
    "get_xend_unix_server": (
        "xend-unix-server", "bool", "no",
        "Whether xend ran its unix-domain HTTP server.  Gone with xend."),
    "get_xend_unix_path": (
        "xend-unix-path", "str", "/var/lib/xend/xend-socket",
        "Socket of xend's unix-domain HTTP server.  Gone with xend."),
    "get_xend_tcp_xmlrpc_server": (
        "xend-tcp-xmlrpc-server", "bool", "no",
        "Whether xend served XML-RPC on TCP.  Gone: XendClient.server "
        "answers from libxl/xl here."),
    "get_xend_tcp_xmlrpc_server_port": (
        "xend-tcp-xmlrpc-server-port", "int", 8006,
        "Port of xend's TCP XML-RPC server.  Gone with xend."),
    "get_xend_tcp_xmlrpc_server_address": (
        "xend-tcp-xmlrpc-server-address", "str", "localhost",
        "Address of xend's TCP XML-RPC server.  Gone with xend."),
    "get_xend_unix_xmlrpc_server": (
        "xend-unix-xmlrpc-server", "bool", "yes",
        "Whether xend served XML-RPC on /var/run/xend/xmlrpc.sock.  Our "
        "domain sources still use that socket when it exists."),
    "get_xend_domains_path": (
        "xend-domains-path", "str", "/var/lib/xend/domains",
        "Where xend kept managed domains (config.sxp files).  "
        "'xen-remus-compat convert' reads them; xl keeps no such store."),
    "get_xend_state_path": (
        "xend-state-path", "str", "/var/lib/xend/state",
        "xend's state directory.  Gone with xend."),
    "get_xend_storage_path": (
        "xend-storage-path", "str", "/var/lib/xend/storage",
        "xend's QCoW storage repository.  Gone with xend."),
    "get_xend_security_path": (
        "xend-security-path", "str", "/var/lib/xend/security",
        "xend's security state.  Gone with xend."),
    "get_external_migration_tool": (
        "external-migration-tool", "str", "",
        "vTPM migration helper.  No xl equivalent."),
    "get_enable_dump": (
        "enable-dump", "bool", "no",
        "Core-dump crashed domains.  On xl: 'on_crash=\"coredump-destroy\"' "
        "in xl.cfg."),
    "get_vif_script": (
        "vif-script", "str", "vif-bridge",
        "Default vif hotplug script.  On xl: 'vif.default.script' in "
        "/etc/xen/xl.conf."),
    "get_dom0_min_mem": (
        "dom0-min-mem", "int", 0,
        "Floor (MiB) under which xend would not balloon dom0.  "
        "XendClient.server.xend.domain.setMemoryTarget(0, N) honours it; "
        "xl has no floor (set dom0_mem= and autoballoon=0 instead)."),
    "get_dom0_vcpus": (
        "dom0-cpus", "int", 0,
        "vCPUs xend left online in dom0 (0 = all).  On xl: dom0_max_vcpus= "
        "on the Xen command line."),
    "get_console_limit": (
        "console-limit", "int", 1024,
        "Console buffer limit (KiB).  xenconsoled's own option on xl."),
    "get_vnclisten_address": (
        "vnc-listen", "str", "127.0.0.1",
        "Default VNC listen address.  On xl: 'vnclisten=' in xl.cfg."),
    "get_vncpasswd_default": (
        "vncpasswd", "str", None,
        "Default VNC password.  On xl: 'vncpasswd=' in xl.cfg."),
    "get_keymap": (
        "keymap", "str", None,
        "Default keymap.  On xl: 'keymap=' in xl.cfg."),
    "get_qemu_dm_logrotate_count": (
        "qemu-dm-logrotate-count", "int", 10,
        "Rotated qemu-dm logs kept.  libxl rotates its own logs."),
}


def _make_getter(key: str, kind: str, default: Any, doc: str) -> Callable:
    def getter(self):
        return self._converters[kind](self, key, default)
    getter.__doc__ = f"``({key} ...)``, default {default!r} ({kind}). {doc}"
    return getter


class XendOptions(object):
    """xend's configuration, read from ``config_path`` at construction."""

    config_default = xendconfig.DEFAULT_PATH
    config_var = "XEND_CONFIG"

    def __init__(self, path: Optional[str] = None) -> None:
        self.config_path = path or xendconfig.config_path()
        self.set_config()

    def set_config(self) -> None:
        """(Re)read the file; a missing file gives ``['xend-config']``."""
        self.config = xendconfig.load(self.config_path)

    def get_config_value(self, name, val=None):
        """The first child of the ``(name ...)`` form, else ``val``."""
        return sxp.child_value(self.config, name, val=val)

    def get_config_bool(self, name, val=None):
        v = str(self.get_config_value(name, val)).lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise XendError("invalid xend config %s: expected bool: %s" % (name, v))

    def get_config_int(self, name, val=None):
        v = self.get_config_value(name, val)
        try:
            return int(v)
        except (TypeError, ValueError):
            raise XendError("invalid xend config %s: expected int: %s" % (name, v)) from None

    def get_config_string(self, name, val=None):
        return self.get_config_value(name, val)

    _converters = {"int": get_config_int, "bool": get_config_bool,
                   "str": get_config_string}

    def get_enable_dom0_ballooning(self):
        """``(enable-dom0-ballooning ...)``; default ``yes`` unless
        dom0-min-mem is 0.  On xl: 'autoballoon' in /etc/xen/xl.conf."""
        default = "no" if self.get_dom0_min_mem() == 0 else "yes"
        return self.get_config_bool("enable-dom0-ballooning", default)

    def get_xen_api_server(self):
        """``(xen-api-server ...)``, default ``[['unix']]``.  The Xen-API
        server went with xend."""
        return self.get_config_value("xen-api-server", [["unix"]])


for _name, (_key, _kind, _default, _doc) in GETTERS.items():
    setattr(XendOptions, _name, _make_getter(_key, _kind, _default, _doc))
del _name, _key, _kind, _default, _doc

#: xend's class name for the file-backed options.
XendOptionsFile = XendOptions

_instance: Optional[XendOptions] = None


def instance() -> XendOptions:
    """The process-wide options object, read on first use (as xend did)."""
    global _instance
    if _instance is None:
        _instance = XendOptions()
    return _instance


def reset() -> None:
    """Forget the singleton so the next ``instance()`` rereads the file
    (not in xend; for tests and long-running callers)."""
    global _instance
    _instance = None
