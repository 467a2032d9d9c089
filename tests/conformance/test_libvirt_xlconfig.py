"""libvirt XML -> our model -> our xl.cfg, judged by Debian's real xl.

libvirt's ``tests/xlconfigdata`` pairs (fixtures README, "libvirt/xlconfig")
say which xl.cfg libvirt considers equivalent to each domain XML.  For every
pair, the ``.xml`` is read by ``config/libvirt_xml.py``, written by
``config/xlcfg.py``, and both that text and the fixture's own ``.cfg`` go
through the real ``xl -N create`` (``tests/support/realxl.py``).  The two
``libxl_domain_config`` JSONs must be equal after the normalisations in
:data:`NORMALISATIONS`, apart from the per-fixture differences in
:data:`EXPECTED_DIFFERENCES` (each with its reason; also in
``docs/decisions.d/libvirt.md``).  An expected difference that goes away
fails the test, so the table stays true.

MAC addresses: every vif in these fixtures names its MAC, so xl draws no
random ones (checked below) and MACs are compared as they are.

The same is done for the ``xmconfig`` pairs xl can read (xm syntax is close
to xl's; ``test-escape-paths`` uses Python triple quotes, which xl rejects,
so it is checked at the model level against the values in its ``.cfg``),
and the ``xml2sexpr`` pairs are checked at the model level against
``config/sxpr.py``'s reading of the sxpr libvirt wrote for them.
"""
from __future__ import annotations

import copy
import pathlib
from typing import Any, Callable, Dict, List, Tuple

import pytest

from tests.conftest import FIXTURES, tier_unavailable
from tests.support import realxl
from xen_remus_compat.config import hostpaths
from xen_remus_compat.config.formats import sxpr
from xen_remus_compat.config.formats.libvirt_xml import domain_from_xml
from xen_remus_compat.config.formats.xlcfg import to_xlcfg

XLCONFIG = FIXTURES / "libvirt" / "xlconfig"
XMCONFIG = FIXTURES / "libvirt" / "xmconfig"
XML2SEXPR = FIXTURES / "libvirt" / "xml2sexpr"


def _pairs(folder: pathlib.Path) -> List[str]:
    return sorted(p.stem for p in folder.glob("*.xml")
                  if p.with_suffix(".cfg").is_file())


XL_PAIRS = _pairs(XLCONFIG)
#: cfg-only fixtures and the XML they are checked against.  The README:
#: upstream's .xml "is probably a symlink ... to test-paravirt-cmdline.xml
#: (unverified)"; the cfg shows extra/root are ignored when cmdline is set.
XL_CFG_ONLY = {"test-paravirt-cmdline-bogus-extra-root": "test-paravirt-cmdline"}
#: xm pairs xl cannot parse at all, and why.
XM_UNPARSEABLE = {"test-escape-paths": "Python triple-quoted string in disk = [...]"}
XM_PAIRS = [n for n in _pairs(XMCONFIG) if n not in XM_UNPARSEABLE]

# --------------------------------------------------------------------------
# Normalisation of xl's JSON (applied to both sides, documented one by one)
# --------------------------------------------------------------------------


def _drop_default_dm_version(cfg: dict) -> None:
    """``device_model_version: qemu_xen`` is libxl 4.17's default for HVM
    (qemu-traditional is gone); xlcfg writes it explicitly next to a
    ``device_model_override``, libvirt's cfg leaves it implied."""
    b = cfg.get("b_info", {})
    if b.get("device_model_version") == "qemu_xen":
        del b["device_model_version"]


def _drop_serial_none(cfg: dict) -> None:
    """libvirt's xl formatter writes ``serial = "none"`` for an HVM domain
    without ``<serial>``; its own libxl driver leaves ``serial`` unset for the
    same XML, and so does our model ("no serial port" = unset)."""
    hvm = cfg.get("b_info", {}).get("type.hvm", {})
    if hvm.get("serial") == "none":
        del hvm["serial"]


def _empty_cdrom_path(cfg: dict) -> None:
    """An empty CD-ROM is ``pdev_path ""`` or no pdev_path depending on the
    spelling (check-xl-disk-parse cases 14-18 vs 19-20): the same disk."""
    for disk in cfg.get("disks", []):
        if disk.get("format") == "empty" and disk.get("pdev_path") == "":
            del disk["pdev_path"]


NORMALISATIONS: List[Callable[[dict], None]] = [
    _drop_default_dm_version, _drop_serial_none, _empty_cdrom_path]


def normalise(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    for step in NORMALISATIONS:
        step(cfg)
    return cfg


def flatten(value: Any, path: str = "") -> Dict[str, Any]:
    """``{"a": {"b": [1]}}`` -> ``{"a.b[0]": 1}``; empty containers kept."""
    out: Dict[str, Any] = {}
    if isinstance(value, dict):
        if not value:
            out[path] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{path}.{k}" if path else k))
    elif isinstance(value, list):
        if not value:
            out[path] = []
        for i, v in enumerate(value):
            out.update(flatten(v, f"{path}[{i}]"))
    else:
        out[path] = value
    return out


def json_diff(theirs: dict, ours: dict) -> Dict[str, Tuple[Any, Any]]:
    a, b = flatten(normalise(theirs)), flatten(normalise(ours))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)}


# --------------------------------------------------------------------------
# Expected differences: fixture -> {flattened JSON path prefix: reason}
# --------------------------------------------------------------------------

_NO_BACKEND = ("the cfg leaves the backend to libxl; libvirt's parser records "
               "<driver name='qemu'>, which libvirt's own libxl driver runs "
               "as qdisk, and so do we")
_PHY_PREFIX = ("xm's phy: prefix is ignored by xl (backend chosen by libxl); "
               "libvirt's <driver name='phy'> is an explicit phy backend in "
               "libvirt's libxl driver, and in our model")
_IOEMU = ("libvirt drops xm's type=ioemu (README); without it libxl picks "
          "the nictype itself (vif_ioemu for HVM boot-time NICs, xl-side 4.3)")
_VIRIDIAN = ("the xm cfg predates viridian; libvirt reads a missing "
             "<features><viridian/> as off (its xl formatter writes viridian = 0)")
_NOT_MODELLED = ("not in the domain model: kept in extra and reported by "
                 "xlcfg as untranslated")

EXPECTED_DIFFERENCES: Dict[str, Dict[str, str]] = {
    # ---- xlconfig
    "test-channel-pty": {"channels[0]": "<channel>: " + _NOT_MODELLED},
    "test-channel-unix": {"channels[0]": "<channel>: " + _NOT_MODELLED},
    "test-usb": {"usbdevs[0]": "<hostdev type='usb'>: " + _NOT_MODELLED},
    "test-usbctrl": {"usbctrls[0]": "<controller type='usb'>: " + _NOT_MODELLED},
    "test-disk-positional-parms-full": {
        "disks[1].backend": _NO_BACKEND, "disks[2].backend": _NO_BACKEND},
    "test-disk-positional-parms-partial": {
        "disks[1].backend": _NO_BACKEND, "disks[2].backend": _NO_BACKEND,
        "disks[3].backend": _NO_BACKEND},
    "test-paravirt-cmdline-bogus-extra-root": {
        "disks[0].backend": "this cfg (no backendtype) is not the one the "
                            "substitute XML came from: " + _NO_BACKEND,
        "on_crash": "this cfg relies on xl's default (destroy); the "
                    "substitute XML says restart",
    },
    # ---- xmconfig
    "test-fullvirt-net-ioemu": {
        "disks[0].backend": _PHY_PREFIX, "nics[0].nictype": _IOEMU,
        "b_info.type.hvm.viridian": _VIRIDIAN},
    "test-pci-devs": {
        "disks[0].backend": _PHY_PREFIX, "nics[0].nictype": _IOEMU,
        "b_info.type.hvm.viridian": _VIRIDIAN},
    "test-no-source-cdrom": {"disks[0].backend": _PHY_PREFIX},
    # (its device_model differs too, by the _bookworm_dm rule below: this
    # cfg names qemu-system-i386, its XML qemu-dm; we leave it to libxl)
    "test-paravirt-net-vifname": {
        "disks[0].backend": _PHY_PREFIX,
        "vfbs[0].vnc.enable": "xm's type=vnc is no xl vfb key (xl ignores it "
                              "and libxl defaults VNC on); we write vnc=1",
        "vfbs[0].sdl": "likewise libxl defaults SDL off; we write sdl=0",
    },
}

#: xlcfg.untranslated keys expected besides the default hvmloader path
#: (which xl replaces with its own) and qemu-dm (qemu-traditional).
ALWAYS_UNTRANSLATED = {"loader", "device_model"}
EXPECTED_UNTRANSLATED = {
    "test-channel-pty": {"/domain/devices/channel"},
    "test-channel-unix": {"/domain/devices/channel"},
    "test-usb": {"/domain/devices/hostdev"},
    "test-usbctrl": {"/domain/devices/controller"},
}


def _bookworm_dm(key: str, theirs_ours: Tuple[Any, Any]) -> bool:
    """A device model at an upstream Xen install's path (the fixtures'
    /usr/lib/xen/bin/qemu-system-i386), which a Debian bookworm host does
    not have: we leave the device model to libxl (bookworm's qemu-system-xen)
    and report the rewrite (issue 14 item 1), where libvirt names the path."""
    theirs, ours = theirs_ours
    return key == "b_info.device_model" and ours is None and hostpaths.xend_era(theirs)


def _check(name: str, diffs: Dict[str, Tuple[Any, Any]]) -> None:
    diffs = {k: v for k, v in diffs.items() if not _bookworm_dm(k, v)}
    listed = EXPECTED_DIFFERENCES.get(name, {})
    unexplained = {k: v for k, v in diffs.items()
                   if not any(k == p or k.startswith(p + ".") or
                              k.startswith(p + "[") for p in listed)}
    vanished = [p for p in listed
                if not any(k == p or k.startswith(p + ".") or
                           k.startswith(p + "[") for k in diffs)]
    assert not unexplained, f"{name}: unexplained differences " \
                            f"(fixture cfg, ours): {unexplained}"
    assert not vanished, f"{name}: listed differences no longer differ: {vanished}"


@pytest.fixture(scope="module")
def xl():
    ok, reason = realxl.available()
    if not ok:
        tier_unavailable("conformance", f"real xl unavailable: {reason}")
    return realxl


def _our_json(xl, xml_path: pathlib.Path):
    dom = domain_from_xml(xml_path.read_bytes(), source=str(xml_path))
    cfg = to_xlcfg(dom)
    return dom, cfg, xl.xl_create_json(cfg.text)


def _check_untranslated(name: str, cfg) -> None:
    keys = {key for key, _ in cfg.untranslated}
    allowed = ALWAYS_UNTRANSLATED | EXPECTED_UNTRANSLATED.get(name, set())
    assert keys <= allowed, f"{name}: unexpected untranslated {cfg.untranslated}"
    assert EXPECTED_UNTRANSLATED.get(name, set()) <= keys


def _macs_are_fixed(cfg_json: dict) -> None:
    for nic in cfg_json.get("nics", []):
        assert nic.get("mac"), "a vif without a fixed MAC would be random"


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_corpus_counts():
    assert len(XL_PAIRS) == 29
    assert set(XL_CFG_ONLY) == {p.stem for p in XLCONFIG.glob("*.cfg")} - set(XL_PAIRS)
    assert len(XM_PAIRS) + len(XM_UNPARSEABLE) == 7
    assert len(list(XML2SEXPR.glob("*.xml"))) == len(list(XML2SEXPR.glob("*.sexpr"))) == 4


@pytest.mark.parametrize("name", XL_PAIRS)
def test_xlconfig_pair_matches_real_xl(xl, name):
    _, cfg, ours = _our_json(xl, XLCONFIG / f"{name}.xml")
    theirs = xl.xl_create_json((XLCONFIG / f"{name}.cfg").read_text())
    _macs_are_fixed(theirs)
    _check(name, json_diff(theirs, ours))
    _check_untranslated(name, cfg)


@pytest.mark.parametrize("name", sorted(XL_CFG_ONLY))
def test_xlconfig_cfg_only_against_substitute_xml(xl, name):
    xml = XLCONFIG / f"{XL_CFG_ONLY[name]}.xml"
    _, _, ours = _our_json(xl, xml)
    theirs = xl.xl_create_json((XLCONFIG / f"{name}.cfg").read_text())
    # extra/root next to cmdline: xl ignores them too (README)
    assert theirs["b_info"]["cmdline"] == "root=/dev/xvda1 console=hvc0"
    _check(name, json_diff(theirs, ours))


@pytest.mark.parametrize("name", XM_PAIRS)
def test_xmconfig_pair_matches_real_xl(xl, name):
    _, _, ours = _our_json(xl, XMCONFIG / f"{name}.xml")
    theirs = xl.xl_create_json((XMCONFIG / f"{name}.cfg").read_text())
    _macs_are_fixed(theirs)
    _check(name, json_diff(theirs, ours))


def test_xm_unparseable_really_is(xl):
    for name, why in XM_UNPARSEABLE.items():
        rc, _, err = xl.xl_create_raw((XMCONFIG / f"{name}.cfg").read_text())
        assert rc != 0 and "config parsing error" in err, why


def test_xm_escape_paths_at_model_level():
    """Values copied from test-escape-paths.cfg (xm syntax, see above)."""
    path = XMCONFIG / "test-escape-paths.xml"
    dom = domain_from_xml(path.read_bytes(), source=str(path))
    assert dom.name == "XenGuest2&test"
    assert (dom.maxmem, dom.memory, dom.vcpus) == (579, 394, 1)
    assert dom.hvm.loader == "/usr/lib/xen/boot/hvmloader&test"
    assert dom.hvm.device_model == "/usr/lib/xen/bin/qemu-dm&test"
    assert dom.hvm.boot == "d"
    assert [(d.uname, d.vdev, d.mode) for d in dom.disks] == [
        ("phy:/dev/HostVG/XenGuest2", "hda", "w"),
        ("phy:/dev/HostVG/XenGuest'\"", "hdb", "w"),
        ("file:/root/boot.iso&test", "hdc", "r")]
    assert dom.disks[2].is_cdrom
    (nic,) = dom.nics
    assert (nic.mac, nic.bridge, nic.script, nic.model) == \
        ("00:16:3e:66:92:9c", "xenbr1", "vif-bridge", "e1000")
    assert dom.hvm.soundhw == "sb16,es1370"
    (vfb,) = dom.vfbs
    assert (vfb.vncunused, vfb.vnclisten, vfb.vncpasswd) == \
        (True, "127.0.0.1", "123poi")


# ---- xml2sexpr: the sxpr libvirt sent to xend for each XML -----------------

#: fixture -> {field: reason} where the sxpr libvirt wrote says something
#: else than the XML it came from.
XML2SEXPR_DIFFERENCES = {
    "xml2sexpr-disk-block-shareable": {
        "kernel": "libvirt omits kernel/initrd from the sxpr when a "
                  "bootloader is set (pygrub supplies them)",
        "ramdisk": "as kernel",
    },
}


def _legacy_view(dom) -> Dict[str, Any]:
    return {
        "name": dom.name, "uuid": dom.uuid, "memory": dom.memory,
        "maxmem": dom.maxmem, "vcpus": dom.vcpus, "type": dom.type,
        "kernel": dom.kernel, "ramdisk": dom.ramdisk, "cmdline": dom.cmdline,
        "bootloader": dom.bootloader,
        "on": (dom.on_poweroff, dom.on_reboot, dom.on_crash),
        "disks": [(d.vdev, d.uname, d.mode, d.device_class, d.target)
                  for d in dom.disks],
        "nics": [(n.mac, n.bridge, n.ip, n.script) for n in dom.nics],
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in XML2SEXPR.glob("*.xml")))
def test_xml2sexpr_model_agrees_with_libvirts_sxpr(name):
    xml = XML2SEXPR / f"{name}.xml"
    sx = XML2SEXPR / f"{name}.sexpr"
    ours = _legacy_view(domain_from_xml(xml.read_bytes(), source=str(xml)))
    (dom,) = sxpr.domains_from_text(sx.read_text(), source=str(sx),
                                    continuations=True)
    theirs = _legacy_view(dom)
    diffs = {k for k in ours if ours[k] != theirs[k]}
    assert diffs == set(XML2SEXPR_DIFFERENCES.get(name, {})), \
        {k: (theirs[k], ours[k]) for k in diffs}
