"""``xen.remus.vm`` (legacy-api.md section 3): domain lookup and parsing.

The lookup goes through :mod:`xen_remus_compat.sources` (libxl, ``xl list
-l``, xend XML-RPC or recorded files) instead of xend alone; the result is
shown to legacy code in the old shape: ``dom`` is ``parsedominfo`` of the
runtime sxpr, ``dominfo`` that sxpr (ints as ints, as XML-RPC delivered).

Module settings (not in the legacy module, defaults from the environment):

* ``SOURCE`` - ``XEN_REMUS_COMPAT_SOURCE`` or ``"auto"``;
* ``SOURCE_OPTIONS`` - passed to :func:`sources.get_source`.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from .. import errors, quirks, sxp
from .. import sources as _sources
from . import blkdev, vif
from . import vbd  # noqa: F401  (registers the phy: handler, as the legacy import did)

SOURCE = os.environ.get("XEN_REMUS_COMPAT_SOURCE", "auto")
SOURCE_OPTIONS: Dict[str, Any] = {}


class VMException(Exception):
    pass


class VM(object):
    "Representation of a virtual machine"

    def __init__(self, domid=None, dominfo=None):
        self.dominfo = dominfo
        self.domid = -1
        self.name = "unknown"
        self.dom = {}
        self.disks = []
        self.vifs = []
        self.record = None

        if domid:
            try:
                self.record = _sources.open_domain(domid, SOURCE, **SOURCE_OPTIONS)
            except errors.CompatError as e:
                raise VMException("error looking up domain %s: %s" % (domid, e)) from e
            self.dominfo = record_to_dominfo(self.record)

        if self.dominfo:
            self.loaddominfo()

    def loaddominfo(self):
        self.dom = parsedominfo(self.dominfo)
        self.domid = self.dom["domid"]
        self.name = self.dom["name"]
        self.disks = getdisks(self.dom)
        self.vifs = getvifs(self.dom)

    def __str__(self):
        return "VM %d (%s), vifs: [%s], disks: [%s]" % \
            (self.domid, self.name,
             ", ".join([str(v) for v in self.vifs]),
             ", ".join([str(d) for d in self.disks]))


#: keys xend sent as XML-RPC numbers (legacy-api.md section 11.5)
_INT_KEYS = frozenset(("domid", "cpu_weight", "cpu_cap", "vcpus", "maxmem", "memory",
                       "shadow_memory", "online_vcpus", "status", "store_mfn",
                       "console_mfn", "superpages", "backend", "bootable", "devid",
                       "videoram", "vcpu_avail"))
_FLOAT_KEYS = frozenset(("start_time", "cpu_time"))


def _as_xmlrpc(sx):
    """A recorded (text) sxpr with numbers typed as xend's XML-RPC sent them."""
    if not isinstance(sx, list):
        return sx
    out = [_as_xmlrpc(x) for x in sx]
    if len(out) == 2 and isinstance(out[0], str) and isinstance(out[1], str):
        key, val = out
        try:
            if key in _INT_KEYS:
                out[1] = int(val)
            elif key in _FLOAT_KEYS:
                out[1] = float(val)
        except ValueError:
            pass
    return out


def record_to_dominfo(record) -> list:
    """The runtime sxpr legacy code expects, from any source's record.

    xend gives it directly; a recorded dump (files source) is shown as
    recorded, with numbers typed as XML-RPC delivered them; libxl and xl
    sources are rendered from the model (``config.sxpr.domain_to_sxpr``).
    """
    if record.sxpr is not None and record.source == "xend":
        return record.sxpr
    if record.sxpr is not None and record.source == "files":
        return _as_xmlrpc(record.sxpr)
    from ..config.formats import sxpr as sxprmod
    dom = record.domain
    if record.domid is not None:
        dom.domid = record.domid
    sx = sxprmod.domain_to_sxpr(dom, form="runtime")
    _show_hvm_runtime(sx)
    if not any(isinstance(e, list) and e and e[0] == "device" for e in sx):
        # a running xend domain always had devices (at least its console);
        # legacy getdisks/getvifs index dom['device'] unconditionally
        sx.append(["device", ["console", ["protocol", "vt100"]]])
    return sx


def _show_hvm_runtime(sx) -> None:
    """What xend showed of a running HVM domain and libxl leaves implicit.

    xend's image always named the firmware (``kernel``, hvmloader) and the
    device model it started (XendConfig's platform defaults); libxl's
    config leaves both out when they are its defaults.  The legacy view of
    an xl HVM domain names what libxl runs instead: Xen's hvmloader and
    bookworm's upstream QEMU (``config.hostpaths``).  Only the legacy view
    gets them: written back into a config they would pin xl's defaults."""
    from ..config import hostpaths
    image = next((e for e in sx if isinstance(e, list) and e[:1] == ["image"]), None)
    hvm = image[1] if image is not None and len(image) > 1 else None
    if not (isinstance(hvm, list) and hvm[:1] == ["hvm"]):
        return
    keys = {e[0]: e for e in hvm[1:] if isinstance(e, list) and e}
    kernel = keys.get("kernel")
    if kernel is None:
        hvm.insert(1, ["kernel", hostpaths.XEN_FIRMWARE + "/hvmloader"])
    elif len(kernel) < 2 or kernel[1] in ("", None):
        kernel[1:] = [hostpaths.XEN_FIRMWARE + "/hvmloader"]
    if "device_model" not in keys:
        at = hvm.index(keys["kernel"]) + 1 if "kernel" in keys else 2
        hvm.insert(at, ["device_model", hostpaths.QEMU_XEN])


def parsedominfo(dominfo):
    "parses a dominfo sexpression in the form of python lists of lists"
    def s2d(s):
        r = {}
        for elem in s:
            if len(elem) == 0:
                continue
            name = elem[0]
            if len(elem) == 1:
                val = None
            else:
                val = elem[1]
            if isinstance(val, list):
                val = s2d(elem[1:])
            if isinstance(name, list):
                # hack for ['cpus', [[1]]]
                return s2d(elem)
            if name in r:
                if not isinstance(val, dict) or not isinstance(r[name], dict):
                    if quirks.get().parsedominfo_dup_scalar:
                        val.items()           # the legacy AttributeError
                    # real xend output repeats scalars (e.g. a vbd's
                    # 'bootable'): equal values collapse, others list up
                    if r[name] != val:
                        if not isinstance(r[name], list):
                            r[name] = [r[name]]
                        r[name].append(val)
                    continue
                for k, v in val.items():
                    if k in r[name]:
                        if not isinstance(r[name][k], list):
                            r[name][k] = [r[name][k]]
                        r[name][k].append(v)
                    else:
                        r[name][k] = v
            else:
                r[name] = val
        return r

    return s2d(dominfo[1:])


def domtosxpr(dom):
    "convert a dominfo into a python sxpr"
    def d2s(d):
        r = []
        for k, v in d.items():
            elem = [k]
            if isinstance(v, dict):
                elem.extend(d2s(v))
            else:
                if v is None:
                    v = ""
                elem.append(v)
            r.append(elem)
        return r

    sxpr = ["domain"]
    sxpr.extend(d2s(dom))
    return sxpr


def strtosxpr(s):
    "convert a string to a python sxpr"
    # legacy tokenizer semantics (no EOF: a trailing bare atom is lost, empty
    # input raises IndexError); escapes are the fixed ones unless the
    # sxp_escapes quirk is on
    p = sxp.Parser(legacy=True, legacy_escapes=quirks.get().sxp_escapes)
    p.input(s)
    return p.get_val()


def sxprtostr(sxpr):
    "convert an sxpr to string"
    return sxp.to_string(sxpr)


def getvifs(dom):
    "return vif objects for devices in dom"
    vifs = dom["device"].get("vif", [])
    if type(vifs) != list:
        vifs = [vifs]
    # not legacy: an HVM domain's emulated NICs (xend and xl: a vif without
    # a type is ioemu there) also name the tap the device model uses
    image = dom.get("image")
    hvm = isinstance(image, dict) and "hvm" in image
    vifno = 0
    parsed = []
    for props in vifs:
        v = vif.parse(props, dom["domid"], vifno)
        if hvm and isinstance(props, dict) and props.get("type", "ioemu") == "ioemu":
            v.emudev = vif.emu_name(v)
        parsed.append(v)
        vifno += 1
    return parsed


def getdisks(dom):
    "return block device objects for devices in dom"
    disks = dom["device"].get("vbd", [])
    if type(disks) != list:
        disks = [disks]

    # tapdisk1 devices
    tapdisks = dom["device"].get("tap", [])
    if type(tapdisks) != list:
        disks.append(tapdisks)
    else:
        disks.extend(tapdisks)

    # tapdisk2 devices
    tapdisks = dom["device"].get("tap2", [])
    if type(tapdisks) != list:
        disks.append(tapdisks)
    else:
        disks.extend(tapdisks)

    return [blkdev.parse(props) for props in disks]


def fromxend(domid):
    "create a VM object from xend information"
    return VM(domid)


#: host memory access for getshadowmem: an object with ``free_kib()``,
#: ``dom0_current_kib()`` and ``set_dom0_target_mib(mib)``; None means the
#: xl host (:class:`xen_remus_compat.remus.hostmem.XlHostMemory`).
HOSTMEM = None


def getshadowmem(vm):
    """Balloon dom0 down so the domain has room for shadow mode (KiB)."""
    from ..remus import hostmem
    host = HOSTMEM or hostmem.default()
    dom = vm.dom
    vcpus = int(dom["vcpus"])
    maxmem = int(dom["maxmem"])
    shadow = int(dom["shadow_memory"])   # KeyError without it, as the legacy code
    needed_shadow = vcpus * 1024 + maxmem * 4 - shadow * 1024
    free = host.free_kib()
    needed = needed_shadow - free
    if needed > 0:
        print("Freeing %d kB for shadow mode" % needed)
        current = host.dom0_current_kib()
        target = (current - needed) // 1024
        host.set_dom0_target_mib(target)
