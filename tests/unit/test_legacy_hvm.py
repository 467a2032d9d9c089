"""An HVM domain in the legacy view, and the legacy save/image pieces on
HVM (issue 11, item 4; legacy-api.md sections 2, 3, 8, 10.6, 11.5, 15).

xend showed a running HVM domain as ``(image (hvm (kernel <hvmloader>)
(device_model <qemu>) ...))``; libxl leaves both implicit when they are its
defaults, so the legacy view names what libxl runs.  Emulated NICs also
name the tap their device model uses (``<vif>-emu``)."""
import importlib

import pytest

from xen_remus_compat import errors, sxp
from xen_remus_compat.config import hostpaths
from xen_remus_compat.config.formats import libxl_json, sxpr as sxprmod
from xen_remus_compat.legacy import image, save, vm
from xen_remus_compat.legacy import xend as legacy_xend
from xen_remus_compat.sources import sim
from xen_remus_compat.sources.base import DomainRecord

HVMLOADER = hostpaths.XEN_FIRMWARE + "/hvmloader"


def _sim_vm(gtype, **env):
    env = dict(env, SIMXEN_TYPE=gtype)
    dom = sim.sim_domain(env)
    return vm.VM(dominfo=vm.record_to_dominfo(
        DomainRecord(dom, dom.domid, state=dom.state, source="sim")))


@pytest.mark.parametrize("gtype", ["hvm", "pvhvm"])
def test_simulated_hvm_guest(gtype):
    v = _sim_vm(gtype, XEN_REMUS_COMPAT_SIM_VIFS="veth0",
                XEN_REMUS_COMPAT_SIM_DISKS="phy:/dev/vg/g,hda,w")
    assert v.dom["image"] == {"hvm": {
        "kernel": "/usr/lib/xen-remus-compat/simxen-kernel",
        "device_model": hostpaths.QEMU_XEN, "args": "simulated guest"}}
    assert sxp.to_string(sxp.child(v.dominfo, "image")) == (
        "(image (hvm (kernel /usr/lib/xen-remus-compat/simxen-kernel) "
        "(device_model /usr/libexec/xen-qemu-system-i386) (args 'simulated guest')))")
    assert str(v) == "VM 1 (simguest), vifs: [00:16:3e:00:00:01], disks: [phy:/dev/vg/g,hda,w]"
    # the simulated NICs are PV (type vif): no emulated tap to buffer
    assert [(x.dev, x.type, getattr(x, "emudev", None)) for x in v.vifs] == \
        [("veth0", "vif", None)]


def test_pv_and_pvh_views_are_unchanged():
    for gtype in ("pv", "pvh"):
        v = _sim_vm(gtype)
        assert list(v.dom["image"]) == ["linux"]
        assert "device_model" not in v.dom["image"]["linux"]


HVM_JSON = """{"c_info": {"type": "hvm", "name": "win", "uuid": "2147d599-9cc6-c0dc-92ab-4064b5446e9b"},
 "b_info": {"max_vcpus": 2, "max_memkb": 1048576, "target_memkb": 1048576,
            "device_model_version": "qemu_xen", "type.hvm": {"boot": "c"}},
 "disks": [{"pdev_path": "/dev/vg/win", "vdev": "hda", "backend": "phy", "readwrite": 1}],
 "nics": [{"devid": 0, "mac": "00:16:3e:66:12:b4", "bridge": "br0", "nictype": "vif_ioemu"},
          {"devid": 1, "mac": "00:16:3e:66:12:b5", "bridge": "br0", "nictype": "vif"},
          {"devid": 2, "mac": "00:16:3e:66:12:b6", "bridge": "br0", "ifname": "win2"}]}"""


def _json_vm(text, domid=9):
    dom = libxl_json.loads(text, source="t")[0]
    record = DomainRecord(dom, domid, source="libxl",
                          libxl_config=libxl_json.domain_to_libxl(dom))
    return record, vm.VM(dominfo=vm.record_to_dominfo(record))


def test_libxl_hvm_domain_with_xl_defaults():
    record, v = _json_vm(HVM_JSON)
    hvm = v.dom["image"]["hvm"]
    # what libxl runs: Xen's own hvmloader and bookworm's upstream QEMU
    assert hvm["kernel"] == HVMLOADER and hvm["device_model"] == hostpaths.QEMU_XEN
    assert hvm["boot"] == "c"
    assert [str(d) for d in v.disks] == ["phy:/dev/vg/win,hda,w"]
    # ioemu and untyped NICs of an HVM domain: the vif and the device model's tap
    assert [(x.dev, getattr(x, "type", None), getattr(x, "emudev", None)) for x in v.vifs] == [
        ("vif9.0", "ioemu", "vif9.0-emu"), ("vif9.1", "vif", None),
        ("win2", None, "win2-emu")]
    # only the legacy view is filled in: the model keeps xl's defaults
    assert record.domain.kernel is None
    config = sxprmod.domain_to_sxpr(record.domain, form="config")
    assert sxp.child_value(sxp.child(config, "image"), "hvm") is not None
    assert "device_model" not in sxp.to_string(config)
    assert "device_model" not in record.libxl_config["b_info"]


def test_libxl_hvm_domain_keeps_its_own_firmware_and_device_model():
    text = HVM_JSON.replace('"device_model_version": "qemu_xen",',
                            '"device_model_version": "qemu_xen", '
                            '"device_model": "/opt/qemu/bin/qemu-system-i386",'
                            ' "kernel": "/boot/vmlinuz", "cmdline": "console=hvc0",')
    _, v = _json_vm(text)
    hvm = v.dom["image"]["hvm"]
    assert hvm["kernel"] == "/boot/vmlinuz" and hvm["args"] == "console=hvc0"
    assert hvm["device_model"] == "/opt/qemu/bin/qemu-system-i386"


def test_hvm_header_round_trip():
    """image.makeheader/parseheader carry the HVM image (section 8.1)."""
    _, v = _json_vm(HVM_JSON)
    header = image.makeheader(v.dominfo)
    assert header[:16] == b"LinuxGuestRecord"
    dom = image.parseheader(header[20:])
    assert dom["image"]["hvm"]["device_model"] == hostpaths.QEMU_XEN
    assert dom["image"]["hvm"]["kernel"] == HVMLOADER
    assert dom["device"]["vif"][0]["type"] == "ioemu"


class _FakeVM:
    domid = 7
    record = DomainRecord(sim.sim_domain({"SIMXEN_TYPE": "hvm"}), 7, source="sim")


def test_device_model_failure_is_a_checkpoint_error(monkeypatch):
    """libcheckpoint's qemu failures were CheckpointError; so are QMP ones."""
    from xen_remus_compat.remus import engine
    monkeypatch.setattr(save.vm, "VM", lambda domid: _FakeVM())
    monkeypatch.setattr(engine, "libxl_config_for", lambda record, domain=None: {})
    msg = ("device model of domain 7: QMP xen-save-devices-state on "
           "/var/run/xen/qmp-libxl-7: no answer within 5 s")

    def protect(*a, **kw):
        raise errors.DeviceModelError(msg, socket="/var/run/xen/qmp-libxl-7",
                                      command="xen-save-devices-state")
    monkeypatch.setattr(engine, "protect", protect)
    saver = save.Saver(7, save.NullSocket(("localhost", 8002)))
    with pytest.raises(save.CheckpointError) as ei:
        saver.start()
    assert str(ei.value) == msg
    assert isinstance(ei.value.__cause__, errors.DeviceModelError)


def test_xend_image_module_names_the_xl_way():
    """xend's image.py (HVMImageHandler: saveDeviceModel, signalDeviceModel
    over xenstore device-model/<domid>/command) has no xl equivalent."""
    with pytest.raises(ImportError) as ei:
        importlib.import_module("xen_remus_compat.legacy.xend.image")
    assert isinstance(ei.value, legacy_xend.XendModuleMissing)
    text = str(ei.value)
    assert "QMP" in text and "device-model/<domid>/command" in text
    assert "xen.remus.save.Saver" in text and "xl remus" in text
