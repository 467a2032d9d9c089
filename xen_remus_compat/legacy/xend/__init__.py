"""``xen.xend`` (legacy-api.md §12): the xend pieces remus-era code imports.

xend was deleted in Xen 4.5 (legacy-api.md §0, §15).  Scripts written for
it still import a handful of its modules: the ``remus`` command imports
``XendOptions`` for the relocation port (§1.1); ``xen.remus.vm`` and
``save`` import ``XendClient``, ``sxp``, ``osdep`` and
``xenstore.{xsutil,xswatch}`` (§0.1).  The alias finder
(``xen_remus_compat/_xenalias.py``) maps ``xen.xend.*`` onto this package.

Provided (:data:`PROVIDED`; each module's docstring says what it reads on
an xl host):

=========================  ====================================================
``XendOptions``            ``instance()`` and the ``get_*`` getters, from
                           ``$XEND_CONFIG`` or ``/etc/xen/xend-config.sxp``
``XendClient``             ``server.xend.domain``, ``.domains``,
                           ``.domain.setMemoryTarget`` through our domain
                           sources; anything else raises naming the xl command
``XendError``              the exception classes (``XendError``, ``VmError``...)
``sxp``                    the xend S-expression module, legacy semantics
``osdep``                  ``lookup_balloon_stat``, ``vif_script``
``xenstore.xsutil``        ``xshandle``, ``ResumeDomain``, ``GetDomainPath``...
                           over Debian's ``xen.lowlevel.xs``
``xenstore.xswatch``       the ``xswatch`` class over the same handle
=========================  ====================================================

Everything else under ``xen.xend`` is **not** provided: importing it raises
:class:`XendModuleMissing` (an ``ImportError``) whose message names the module and what
replaces it on xl (:data:`NOT_PROVIDED`), instead of Python's bare "No module
named ...".  That message comes from :class:`MissingModuleFinder`, appended
to ``sys.meta_path`` when this package is first imported: the one import-time
effect of the package, deliberate (docs/decisions.d/run-legacy.md), and
harmless because it answers only names under ``xen.xend`` that no other
finder has found.
"""
from __future__ import annotations

import importlib.abc
import sys
from typing import Dict, Optional

#: xend modules we provide, by legacy name (relative to ``xen.xend``).
PROVIDED = ("XendOptions", "XendClient", "XendError", "sxp", "osdep",
            "xenstore", "xenstore.xsutil", "xenstore.xswatch")

_XAPI = ("the xl command, libxl, or libvirt's libxl driver (the Xen-API "
         "server went with xend)")
_DEVICES = ("xl's device commands (xl block-attach/-detach, "
            "network-attach/-detach, pci-attach/-detach, usbctrl-attach)")
_STORAGE = ("'disk=' specs in the domain's xl.cfg ('xen-remus-compat disk' "
            "translates legacy unames); xl has no storage repositories")
_NET = ("the distribution's network configuration for bridges, and the vif "
        "hotplug script libxl runs (/etc/xen/scripts/vif-bridge); xl manages "
        "no networks")

#: Not provided: legacy module (relative to ``xen.xend``) -> what replaces it on xl.
NOT_PROVIDED: Dict[str, str] = {
    "XendDomain": "'xl list', 'xl create', 'xl destroy' (libxl); from Python "
                  "xen.xend.XendClient.server.xend.domain(dom, 'all') or "
                  "xen.remus.vm.VM(dom)",
    "XendDomainInfo": "'xl list -l' (libxl_retrieve_domain_configuration); "
                      "xen.remus.vm.VM(dom).dom gives the legacy parsed view",
    "XendConfig": "xl.cfg files; 'xen-remus-compat convert' turns a xend sxpr "
                  "into xl.cfg or libxl JSON",
    "XendCheckpoint": "'xl save', 'xl restore', 'xl migrate'; for Remus "
                      "xen.remus.save.Saver or 'xl remus'",
    "XendConstants": "xl's state letters in 'xl list' (r b p s c d) or "
                     "libxl_dominfo",
    "XendNode": "'xl info' (and 'xl info -n' for NUMA)",
    "XendDmesg": "'xl dmesg'",
    "XendLogging": "Python's logging module (xl logs to /var/log/xen/)",
    "XendCPUPool": "'xl cpupool-create', 'xl cpupool-list', 'xl cpupool-migrate'",
    "XendBootloader": "the 'bootloader=' key of xl.cfg (libxl runs pygrub)",
    "XendAPI": _XAPI, "XendAPIConstants": _XAPI, "XendAPIStore": _XAPI,
    "XendAPIVersion": _XAPI, "XendAuthSessions": _XAPI, "XendBase": _XAPI,
    "XendTask": _XAPI, "XendTaskManager": _XAPI,
    "XendDevices": _DEVICES, "XendSXPDev": _DEVICES, "XendDPCI": _DEVICES,
    "XendDSCSI": _DEVICES, "XendPPCI": _DEVICES, "XendPSCSI": _DEVICES,
    "XendVDI": _STORAGE, "XendStorageRepository": _STORAGE,
    "XendLocalStorageRepo": _STORAGE, "XendQCoWStorageRepo": _STORAGE,
    "XendPBD": _STORAGE, "XendStateStore": _STORAGE,
    "XendNetwork": _NET, "XendPIF": _NET, "XendPIFMetrics": _NET,
    "XendVnet": _NET, "Vifctl": _NET,
    "XendVMMetrics": "'xl list', 'xl vcpu-list' or 'xentop'",
    "XendMonitor": "'xentop' or 'xl list'",
    "XendXSPolicy": "'xl getenforce', 'xl setenforce', 'xl loadpolicy' (FLASK)",
    "XendXSPolicyAdmin": "'xl getenforce', 'xl setenforce', 'xl loadpolicy' (FLASK)",
    "XendProtocol": "'xl migrate' (over ssh)",
    "MemoryPool": "dom0_mem= on the Xen command line; xl keeps no memory pool",
    "balloon": "'autoballoon' in /etc/xen/xl.conf, or 'xl mem-set 0 SIZE'",
    "image": "libxl builds the domain ('xl create') and starts, saves and "
             "restores an HVM guest's device model itself over QMP ('xl save', "
             "'xl migrate', 'xl remus'; for Remus xen.remus.save.Saver); there "
             "is no qemu-dm to signal through xenstore device-model/<domid>/command",
    "Args": "Python's argparse", "PrettyPrint": "xen.xend.sxp.show",
    "encode": "Python's urllib.parse", "uuid": "Python's uuid module",
    "arch": "platform.machine()",
    "server": "'remus-receiver' (TCP 8002) in place of the relocation "
              "server, 'ssh HOST xl migrate-receive' for migration, and the xl "
              "command in place of the XML-RPC server",
    "server.relocate": "'remus-receiver' on the backup (TCP 8002, 'receive' "
                       "greeting) or 'ssh HOST xl migrate-receive -r'",
    "xenstore.xstransact": "Debian's xen.lowlevel.xs (xs.xs().read('', path), "
                           ".write, .transaction_start) or the xenstore-read, "
                           "xenstore-write and xenstore-ls commands",
}
DEFAULT_REPLACEMENT = "the xl command or libxl"

PREFIXES = ("xen.xend", "xen_remus_compat.legacy.xend")


def legacy_name(fullname: str) -> Optional[str]:
    """``xen.xend.X`` or ``xen_remus_compat.legacy.xend.X`` -> ``X``."""
    for prefix in PREFIXES:
        if fullname.startswith(prefix + "."):
            return fullname[len(prefix) + 1:]
    return None


def replacement(rel: str) -> str:
    """What replaces ``xen.xend.<rel>`` on xl (most specific entry wins)."""
    parts = rel.split(".")
    for n in range(len(parts), 0, -1):
        hit = NOT_PROVIDED.get(".".join(parts[:n]))
        if hit:
            return hit
    return DEFAULT_REPLACEMENT


def missing_message(fullname: str) -> str:
    """The ImportError text for a xend module we do not provide."""
    rel = legacy_name(fullname) or fullname
    provided = ", ".join("xen.xend." + p for p in PROVIDED if p != "xenstore")
    return (f"xen.xend.{rel} is not provided by xen-remus-compat (xend was "
            f"removed in Xen 4.5); on xl use {replacement(rel)}. "
            f"Provided xend modules: {provided}")


class XendModuleMissing(ImportError):
    """Import of a xend module we do not provide (an ``ImportError``, not
    ``ModuleNotFoundError``, so ``from xen.xend import X`` keeps the text)."""

    __module__ = "xen.xend"     # tracebacks show the legacy namespace


class MissingModuleFinder(importlib.abc.MetaPathFinder):
    """End of ``sys.meta_path``: a clear ImportError for xend modules we lack.

    Consulted only after every other finder came back empty-handed.
    """

    def find_spec(self, fullname, path=None, target=None):
        rel = legacy_name(fullname)
        if rel is None or rel in PROVIDED:
            return None
        raise XendModuleMissing(missing_message(fullname), name="xen.xend." + rel)


def install_missing_finder() -> None:
    """Idempotent: put :class:`MissingModuleFinder` at the end of meta_path."""
    if not any(isinstance(f, MissingModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MissingModuleFinder())


install_missing_finder()
