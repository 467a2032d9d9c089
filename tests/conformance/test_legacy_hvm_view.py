"""The legacy view of recorded HVM domains (issue 11, item 4): a xend sxpr
fixture as xend showed it, and libvirt's libxl JSON of HVM domains as the
xl host runs them (fixtures read-only, legacy-api.md sections 3, 4, 11.5)."""
import os
import warnings

import pytest

from xen_remus_compat import sxp
from xen_remus_compat.config import hostpaths
from xen_remus_compat.legacy import vm
from xen_remus_compat.sources import files

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures")
FIX = os.environ.get("XRC_FIXTURES", os.path.abspath(FIX))
SEXPR = os.path.join(FIX, "libvirt", "sexpr2xml")
JSON = os.path.join(FIX, "xl-json", "libvirt-libxlxml2domconfig")


def _files_vm(monkeypatch, path, ref):
    monkeypatch.setattr(vm, "SOURCE", "files")
    monkeypatch.setattr(vm, "SOURCE_OPTIONS", {"paths": [path]})
    return vm.VM(ref)


def test_xend_hvm_sxpr_is_shown_as_recorded(monkeypatch):
    v = _files_vm(monkeypatch, os.path.join(SEXPR, "sexpr2xml-fv-net-ioemu.sexpr"), 3)
    assert sxp.to_string(sxp.child(v.dominfo, "image")) == (
        "(image (hvm (kernel /usr/lib/xen/boot/hvmloader) "
        "(device_model /usr/lib64/xen/bin/qemu-dm) (boot c) (cdrom /root/boot.iso) "
        "(acpi 1) (vnc 1) (keymap ja)))")
    assert v.dom["image"] == {"hvm": {
        "kernel": "/usr/lib/xen/boot/hvmloader", "device_model": "/usr/lib64/xen/bin/qemu-dm",
        "boot": "c", "cdrom": "/root/boot.iso", "acpi": "1", "vnc": "1", "keymap": "ja"}}
    # the ioemu: disk and the ioemu vif, as xend reported them
    assert v.dom["device"]["vbd"] == {"dev": "ioemu:hda", "uname": "file:/root/foo.img",
                                      "mode": "w"}
    assert [str(d) for d in v.disks] == ["file:/root/foo.img,ioemu:hda,w"]
    assert [(x.dev, x.type, x.model, x.emudev) for x in v.vifs] == \
        [("vif3.0", "ioemu", "e1000", "vif3.0-emu")]
    assert str(v) == ("VM 3 (fvtest), vifs: [00:16:3e:1b:b1:47], "
                      "disks: [file:/root/foo.img,ioemu:hda,w]")


def test_untyped_vif_of_an_hvm_domain_is_emulated(monkeypatch):
    # xend and xl both give an HVM vif without a type an emulated NIC
    v = _files_vm(monkeypatch, os.path.join(SEXPR, "sexpr2xml-fv-autoport.sexpr"), 21)
    assert [(x.dev, x.emudev) for x in v.vifs] == [("vif21.0", "vif21.0-emu")]
    assert [str(d) for d in v.disks] == [
        "phy:/iscsi/winxp,hda,w",
        "file:/net/heaped/export/netimage/windows/xp-sp2-vol.iso,hdc:cdrom,r"]


def test_netfront_vif_of_an_hvm_domain_has_no_tap(monkeypatch):
    v = _files_vm(monkeypatch, os.path.join(SEXPR, "sexpr2xml-fv-net-netfront.sexpr"), 3)
    assert [getattr(x, "emudev", None) for x in v.vifs] == [None]


def _json_vm(name, domid=5):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # shadow_memkb 1234: not whole MiB
        record = files.FilesSource([os.path.join(JSON, name)]).records()[0]
    record.domid = domid                      # libvirt's configs are not running
    return vm.VM(dominfo=vm.record_to_dominfo(record))


def test_libxl_json_basic_hvm():
    v = _json_vm("basic-hvm.json")
    image = sxp.to_string(sxp.child(v.dominfo, "image"))
    assert image.startswith(
        f"(image (hvm (kernel {hostpaths.XEN_FIRMWARE}/hvmloader) (device_model /bin/true) "
        "(boot c) (acpi 1) (apic 1) (pae 1)")
    hvm = v.dom["image"]["hvm"]
    assert hvm["device_model"] == "/bin/true"       # the configured one is kept
    assert [str(d) for d in v.disks] == ["file:/var/lib/xen/images/test-hvm.img,hda,w"]
    assert [(x.dev, x.type, x.emudev) for x in v.vifs] == [("vif5.0", "ioemu", "vif5.0-emu")]
    assert str(v) == ("VM 5 (test-hvm), vifs: [00:16:3e:66:12:b4], "
                      "disks: [file:/var/lib/xen/images/test-hvm.img,hda,w]")


def test_libxl_json_moredevs_hvm():
    v = _json_vm("moredevs-hvm.json", domid=6)
    assert v.dom["image"]["hvm"]["kernel"] == hostpaths.XEN_FIRMWARE + "/hvmloader"
    assert [str(d) for d in v.disks] == ["file:/var/lib/xen/images/test-hvm.img,hda,w",
                                         "file:/root/boot.iso,hdb:cdrom,r"]
    # a netfront model is a PV NIC (nictype vif): no device-model tap
    assert [(x.dev, x.type, getattr(x, "emudev", None)) for x in v.vifs] == \
        [("vif6.0", "vif", None)]


@pytest.mark.parametrize("name", ["basic-pv.json", "multiple-ip.json"])
def test_pv_json_views_are_not_touched(name):
    v = _json_vm(name)
    assert "hvm" not in v.dom["image"]
    assert all(getattr(x, "emudev", None) is None for x in v.vifs)
