"""``xen.remus.vm`` on every recorded sxpr fixture (legacy-api.md sections 3, 4, 11.5).

Expected values are computed here from the *raw* fixture sxpr with the
spec's rules (device classes vbd -> tap -> tap2; ``str(disk)`` is
``uname,dev,mode`` with a literal ``:disk`` removed; MACs canonicalised;
vif names ``vif<domid>.<devid>`` in sxpr order, or the configured
``vifname``), independently of our converters; the VM under test is built
through the sources (files, xl, xend XML-RPC) and the model.
"""
import json
import os

import pytest

from tests.support.xendserver import serve_xend, wire_ints
from xen_remus_compat import sxp
from xen_remus_compat.config.formats import libxl_json, sxpr as sxprmod
from xen_remus_compat.legacy import vm as legacy_vm
from xen_remus_compat.sources import xlcli, xend as xendsrc

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures")
FIX = os.environ.get("XRC_FIXTURES", os.path.abspath(FIX))
SEXPR_DIR = os.path.join(FIX, "libvirt", "sexpr2xml")
UNBALANCED = {"sexpr2xml-bridge-ipaddr.sexpr", "sexpr2xml-net-routed.sexpr",
              "sexpr2xml-pv-vfb-new.sexpr", "sexpr2xml-pv-vfb-new-vncdisplay.sexpr"}


def fixtures():
    out = []
    for f in sorted(os.listdir(SEXPR_DIR)):
        if f.endswith(".sexpr"):
            out.append((f, os.path.join(SEXPR_DIR, f)))
    out.append(("ganeti", os.path.join(FIX, "ganeti", "xen-xl-list-long-4.0.1.txt")))
    return out


def raw_domains(name, path):
    # lenient only for the four fixtures libvirt's parser tolerated
    vals = sxp.load_file(path, continuations=True, lenient=name in UNBALANCED)
    doms = [v for v in vals if isinstance(v, list) and v and v[0] == "domain"]
    # Domain-0 has no domain config to protect
    return [d for d in doms if sxp.child_value(d, "domid") not in ("0", 0)]


def canon_mac(mac):
    return ":".join("%02x" % int(x, 16) for x in mac.split(":"))


def expected(dom_sx):
    domid = int(sxp.child_value(dom_sx, "domid"))
    name = sxp.child_value(dom_sx, "name")
    disks, vifs = [], []
    devices = [d for d in sxp.children(dom_sx, "device")]
    for cls in ("vbd", "tap", "tap2"):
        for d in devices:
            for e in sxp.children(d, cls):
                uname = sxp.child_value(e, "uname") or ""
                dev = sxp.child_value(e, "dev")
                if dev.endswith(":disk"):
                    dev = dev[:-5]
                disks.append(f"{uname},{dev},{sxp.child_value(e, 'mode')}")
    index = 0
    for d in devices:
        for e in sxp.children(d, "vif"):
            mac = sxp.child_value(e, "mac")
            vifname = sxp.child_value(e, "vifname")
            vifs.append((canon_mac(mac) if mac else None,
                         vifname or f"vif{domid}.{index}"))
            index += 1
    return domid, name, disks, vifs


def legacy_str(domid, name, disks, vifs):
    return "VM %d (%s), vifs: [%s], disks: [%s]" % (
        domid, name, ", ".join(m for m, _ in vifs), ", ".join(disks))


CASES = [(n, p, i) for n, p in fixtures() for i, _ in enumerate(raw_domains(n, p))]


def _files_vm(monkeypatch, path, name, ref):
    monkeypatch.setattr(legacy_vm, "SOURCE", "files")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS",
                        {"paths": [path]})
    return legacy_vm.VM(ref)


@pytest.mark.parametrize("fname,path,idx", CASES, ids=[f"{c[0]}#{c[2]}" for c in CASES])
def test_vm_from_files_source(monkeypatch, fname, path, idx):
    raw = raw_domains(fname, path)[idx]
    domid, name, disks, vifs = expected(raw)
    from xen_remus_compat.sources import files as filesrc
    monkeypatch.setattr(filesrc.FilesSource, "__init__",
                        lambda self, paths, lenient=False: (
                            setattr(self, "paths", list(paths)),
                            setattr(self, "lenient", fname in UNBALANCED))[0])
    v = _files_vm(monkeypatch, path, name, domid)
    assert v.domid == domid and v.name == name
    # parsedominfo shape: device entries are dicts, or lists of dicts when repeated
    for cls, val in v.dom["device"].items():
        assert isinstance(val, (dict, list)), cls
    assert [str(d) for d in v.disks] == disks
    assert [(x.mac if hasattr(x, "mac") else None, x.dev) for x in v.vifs] == vifs
    if all(m for m, _ in vifs):
        assert str(v) == legacy_str(domid, name, disks, vifs)
    # every device class the legacy code reads is there
    assert "vbd" in v.dom["device"] or "tap" in v.dom["device"] or \
        "tap2" in v.dom["device"] or not disks


# -- xend XML-RPC over a unix socket, and xl list -l, for the same domains -----

@pytest.fixture(scope="module")
def xend_server(tmp_path_factory):
    doms = {}
    path = str(tmp_path_factory.mktemp("xend") / "xmlrpc.sock")
    with serve_xend(path, doms) as url:
        yield doms, url


XEND_CASES = [c for c in CASES if c[0] != "ganeti"][:52]


@pytest.mark.parametrize("fname,path,idx", XEND_CASES, ids=[c[0] for c in XEND_CASES])
def test_vm_xend_and_xl_sources_agree(monkeypatch, xend_server, fname, path, idx):
    doms, url = xend_server
    raw = raw_domains(fname, path)[idx]
    domid, name, disks, vifs = expected(raw)
    wire = wire_ints(raw)
    doms[str(domid)] = wire
    doms[name] = wire
    monkeypatch.setattr(legacy_vm, "SOURCE", "xend")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS", {"url": url})
    via_xend = legacy_vm.VM(domid)
    assert via_xend.dominfo == wire           # the recorded sxpr, as xend sent it
    assert [str(d) for d in via_xend.disks] == disks
    assert [x.dev for x in via_xend.vifs] == [n for _, n in vifs]

    # the same domain as `xl list -l` would print it
    dom = sxprmod.domain_from_sxpr(raw, source=fname)
    listing = json.dumps([{"domid": domid, "config": libxl_json.domain_to_libxl(dom)}])
    monkeypatch.setattr(legacy_vm, "SOURCE", "xl")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS", {"xl": "/nonexistent/xl"})
    monkeypatch.setattr(xlcli, "_run_xl", lambda argv, timeout=30.0: listing)
    monkeypatch.setattr(xlcli.XlSource, "__init__",
                        lambda self, xl=None, run=None: (setattr(self, "xl", "/x/xl"),
                                                         setattr(self, "run", lambda a: listing))[0])
    via_xl = legacy_vm.VM(domid)
    assert via_xl.domid == via_xend.domid and via_xl.name == via_xend.name
    assert [x.dev for x in via_xl.vifs] == [x.dev for x in via_xend.vifs]
    assert [getattr(x, "mac", None) for x in via_xl.vifs] == \
        [getattr(x, "mac", None) for x in via_xend.vifs]
    # the JSON keeps the path, vdev and mode; the uname prefix of a plain
    # disk is not recorded by libxl (docs/decisions.md), remus unames are;
    # xl names vdevs without xend's "ioemu:" marker
    xl_disks = via_xl.disks
    image = sxp.child_value(raw, "image")
    cdrom = sxp.child_value(image, "cdrom") if isinstance(image, list) else None
    if cdrom and not any(d.dev == "hdc:cdrom" for d in via_xend.disks):
        # xend kept an HVM image-level cdrom inside (image); xl makes it a disk
        xl_disks = [d for d in xl_disks if not (d.dev == "hdc:cdrom"
                                                and d.uname.endswith(cdrom))]
    assert [(d.dev.replace("ioemu:", ""), d.mode.rstrip("!")) for d in xl_disks] == \
        [(d.dev.replace("ioemu:", ""), d.mode.rstrip("!")) for d in via_xend.disks]
    assert [d.uname.rsplit(":", 1)[-1] for d in xl_disks] == \
        [d.uname.rsplit(":", 1)[-1] for d in via_xend.disks]


def test_unknown_domain_is_vmexception(xend_server, monkeypatch):
    doms, url = xend_server
    monkeypatch.setattr(legacy_vm, "SOURCE", "xend")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS", {"url": url})
    with pytest.raises(legacy_vm.VMException, match="error looking up domain nosuch"):
        legacy_vm.VM("nosuch")


def test_xend_socket_refusing_is_vmexception(tmp_path, monkeypatch):
    monkeypatch.setattr(legacy_vm, "SOURCE", "xend")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS",
                        {"url": "httpu://" + str(tmp_path / "no.sock")})
    with pytest.raises(legacy_vm.VMException, match="cannot reach xend"):
        legacy_vm.VM(7)
