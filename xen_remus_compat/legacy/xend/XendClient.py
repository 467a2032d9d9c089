"""``xen.xend.XendClient`` (legacy-api.md §12.1): the ``server`` object.

Legacy code calls xend over XML-RPC through the module global ``server``.
On an xl host there is no xend, so ``server`` answers the calls remus-era
code makes from our domain sources (``xen_remus_compat.sources``, the same
source ``xen.remus.vm`` uses: ``vm.SOURCE`` / ``vm.SOURCE_OPTIONS``):

* ``server.xend.domain(dom, 'all')`` - the runtime domain sxpr (§11.5), ints
  as ints, as xend delivered it;
* ``server.xend.domains(detail)`` - every domain's sxpr (detail true) or
  name (detail false), sorted by name as xend's ``list_sorted`` did;
* ``server.xend.domain.setMemoryTarget(dom, mib)`` - ``xl mem-set``; for
  dom0 the ``dom0-min-mem`` floor of xend-config.sxp is honoured (xend's
  "memory_dynamic_max too small").

Errors keep xend's shape, XML-RPC faults: an unknown domain is
``XendInvalidDomain`` (``faultCode`` 3), so ``except xmlrpclib.Fault``
works.  Any other call raises :class:`UnsupportedCall`, a ``Fault`` (what
xend answered for a method it lacked) and a ``NotImplementedError``, whose
message names the call and the xl command that replaces it
(:data:`REPLACEMENTS`).  When the domain source is xend itself (an xend
socket on this host, or ``vm.SOURCE == "xend"``), every call goes to the
real server unchanged.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

from ... import errors
from ...log import logger
from .XendError import (ERROR_GENERIC, ERROR_INTERNAL, ERROR_INVALID_DOMAIN,  # noqa: F401
                        Fault, XendError, XendInvalidDomain)

XML_RPC_SOCKET = "/var/run/xend/xmlrpc.sock"
XEN_API_SOCKET = "/var/run/xend/xen-api.sock"
uri = "httpu://" + XML_RPC_SOCKET

#: legacy XML-RPC method -> what replaces it on xl
REPLACEMENTS: Dict[str, str] = {
    "xend.domain.create": "'xl create CONFIG'",
    "xend.domain.new": "an xl.cfg file ('xen-remus-compat convert' writes one) and 'xl create'",
    "xend.domain.start": "'xl create CONFIG' (xl keeps no managed domains)",
    "xend.domain.delete": "removing the domain's xl.cfg (xl keeps no managed domains)",
    "xend.domain.destroy": "'xl destroy DOMAIN'",
    "xend.domain.shutdown": "'xl shutdown DOMAIN'",
    "xend.domain.reset": "'xl reset DOMAIN'",
    "xend.domain.pause": "'xl pause DOMAIN'",
    "xend.domain.unpause": "'xl unpause DOMAIN'",
    "xend.domain.suspend": "'xl save DOMAIN FILE'",
    "xend.domain.resume": "'xl restore FILE'",
    "xend.domain.save": "'xl save DOMAIN FILE'",
    "xend.domain.restore": "'xl restore FILE'",
    "xend.domain.migrate": "'xl migrate DOMAIN HOST' (over ssh)",
    "xend.domain.dumpCore": "'xl dump-core DOMAIN FILE'",
    "xend.domain.sysrq": "'xl sysrq DOMAIN KEY'",
    "xend.domain.send_sysrq": "'xl sysrq DOMAIN KEY'",
    "xend.domain.setMaxmem": "'xl mem-max DOMAIN SIZE'",
    "xend.domain.maxmem_set": "'xl mem-max DOMAIN SIZE'",
    "xend.domain.setVCpuCount": "'xl vcpu-set DOMAIN N'",
    "xend.domain.pincpu": "'xl vcpu-pin DOMAIN VCPU CPUS'",
    "xend.domain.getVCPUInfo": "'xl vcpu-list DOMAIN'",
    "xend.domain.setName": "'xl rename DOMAIN NEWNAME'",
    "xend.domain.device_create": "'xl block-attach' / 'xl network-attach' / 'xl pci-attach'",
    "xend.domain.destroyDevice": "'xl block-detach' / 'xl network-detach' / 'xl pci-detach'",
    "xend.domain.getDeviceSxprs": "'xl block-list' / 'xl network-list'",
    "xend.domain.resumeDomain": "xen.remus.save.Saver._resume() (never registered in xend either)",
    "xend.domains_with_state": "'xl list' (xl lists live domains only)",
    "xend.node.info": "'xl info'",
    "xend.node.dmesg.info": "'xl dmesg'",
    "xend.node.log": "the logs in /var/log/xen/",
    "xend.node.shutdown": "the host's own shutdown",
}
DEFAULT_REPLACEMENT = "the xl command or libxl"


class UnsupportedCall(Fault, NotImplementedError):
    """A xend XML-RPC call with no counterpart here; names the xl replacement."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.replacement = REPLACEMENTS.get(method, DEFAULT_REPLACEMENT)
        message = ("xend XML-RPC call %s() is not available on an xl host "
                   "(xen-remus-compat answers only xend.domain, xend.domains "
                   "and xend.domain.setMemoryTarget); use %s instead"
                   % (method, self.replacement))
        Fault.__init__(self, ERROR_INTERNAL, message)

    def __str__(self) -> str:
        return self.faultString


def _run_xl_memset(domid: int, mib: int) -> None:
    from ...sources.xlcli import _run_xl, find_xl
    _run_xl([find_xl(), "mem-set", "--", str(domid), "%dm" % int(mib)])


class _Method(object):
    """``server.a.b.c(...)``: attribute chains build the method name."""

    def __init__(self, send: Callable[[str, Tuple], Any], name: str) -> None:
        self._send = send
        self._name = name

    def __getattr__(self, name: str) -> "_Method":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Method(self._send, "%s.%s" % (self._name, name))

    def __call__(self, *args):
        return self._send(self._name, args)

    def __repr__(self) -> str:
        return "<XendClient method %s>" % self._name


class Server(object):
    """Stand-in for xend's ``ServerProxy``.

    ``source``/``source_options``: the domain source (None: whatever
    ``xen.remus.vm`` uses at call time).  ``memset(domid, mib)`` sets a
    memory target (default ``xl mem-set``).  ``xend_proxy``: a real xend
    proxy factory (default: :func:`sources.xend.server_proxy`).
    """

    _HANDLERS = {
        "xend.domain": "_domain",
        "xend.domains": "_domains",
        "xend.domain.setMemoryTarget": "_set_memory_target",
    }

    def __init__(self, source: Optional[str] = None,
                 source_options: Optional[dict] = None,
                 memset: Optional[Callable[[int, int], None]] = None,
                 xend_proxy: Optional[Callable[[], Any]] = None) -> None:
        self._source = source
        self._source_options = source_options
        self.memset = memset or _run_xl_memset
        self._xend_proxy = xend_proxy
        self._real = None

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._call, name)

    def __repr__(self) -> str:
        return "<XendClient server (source %s)>" % self._source_name()

    # -- where answers come from ---------------------------------------------------
    def _source_name(self) -> str:
        if self._source is not None:
            return self._source
        from .. import vm
        return vm.SOURCE

    def _options(self) -> dict:
        if self._source_options is not None:
            return dict(self._source_options)
        from .. import vm
        return dict(vm.SOURCE_OPTIONS)

    def _uses_xend(self) -> bool:
        name = self._source_name()
        if name == "xend":
            return True
        if name != "auto":
            return False
        from ...sources.xend import DEFAULT_URL
        url = self._options().get("url") or os.environ.get("XM_SERVER") or DEFAULT_URL
        return url.startswith("httpu://") and os.path.exists(url[len("httpu://"):])

    def _real_proxy(self):
        if self._real is None:
            if self._xend_proxy is not None:
                self._real = self._xend_proxy()
            else:
                from ...sources.xend import server_proxy
                self._real = server_proxy(self._options().get("url"))
        return self._real

    def _call(self, method: str, args: Tuple) -> Any:
        if self._uses_xend():
            fn = self._real_proxy()
            for part in method.split("."):
                fn = getattr(fn, part)
            return fn(*args)
        handler = self._HANDLERS.get(method)
        if handler is None:
            raise UnsupportedCall(method)
        try:
            return getattr(self, handler)(*args)
        except TypeError as e:
            raise XendError("%s(): %s" % (method, e)) from e

    def _source_obj(self):
        from ... import sources
        return sources.get_source(self._source_name(), **self._options())

    def _record(self, dom):
        from ... import sources
        try:
            return sources.open_domain(dom, self._source_name(), **self._options())
        except errors.DomainLookupError as e:
            raise XendInvalidDomain(str(e)) from e
        except errors.CompatError as e:
            raise XendError(str(e)) from e

    # -- the three calls remus-era code makes -------------------------------------
    def _domain(self, dom, full=0):
        from .. import vm
        return vm.record_to_dominfo(self._record(dom))

    def _domains(self, detail=True, full=False):
        from .. import vm
        try:
            records = self._source_obj().records()
        except errors.CompatError as e:
            raise XendError(str(e)) from e
        records = sorted(records, key=lambda r: (r.domain.name or "", r.domid or 0))
        if not detail:
            return [r.domain.name for r in records]
        return [vm.record_to_dominfo(r) for r in records]

    def _set_memory_target(self, dom, target):
        record = self._record(dom)
        target = int(target)
        domid = record.domid
        if domid == 0:
            from . import XendOptions
            current = record.domain.memory
            floor = XendOptions.instance().get_dom0_min_mem()
            if current is not None and target < current and floor > target:
                raise XendError("memory_dynamic_max too small")
        logger.debug("XendClient: memory target of domain %s -> %d MiB", domid, target)
        try:
            self.memset(domid, target)
        except errors.CompatError as e:
            raise XendError(str(e)) from e
        return None


#: the module global legacy code uses: ``XendClient.server.xend.domain(...)``
server = Server()
