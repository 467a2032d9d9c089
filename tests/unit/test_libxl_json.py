"""config/libxl_json.py: the model <-> libxl_domain_config JSON.

Expected values come from xl-side.md section 4 (its two worked examples are
read straight from the spec) and from libvirt's libxlxml2domconfig pairs.
"""
import json
import pathlib
import re

import pytest

from xen_remus_compat import errors
from xen_remus_compat.config.formats import libxl_json, sxpr
from xen_remus_compat.config.model import Domain, HvmSettings, PciDev, Vfb

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
XL_SIDE = SHARED / "docs" / "xl-side.md"
XL_JSON = SHARED / "fixtures" / "xl-json" / "libvirt-libxlxml2domconfig"


def spec_json(section: str) -> str:
    """The ```json block of an xl-side.md section (4.4, 4.5)."""
    text = XL_SIDE.read_text()
    start = text.index(f"### {section} ")
    block = re.search(r"```json\n(.*?)```", text[start:], re.S)
    return block.group(1)


# ------------------------------------------------------------- reading

def test_pv_example_of_the_spec():
    (dom,) = libxl_json.loads(spec_json("4.4"), source="xl-side 4.4")
    assert dom.domid == 7                 # from the wrapper, not c_info.domid
    assert (dom.name, dom.type) == ("web01", "pv")
    assert dom.uuid == "5f2a1c3e-8d4b-4e6f-9a7b-0c1d2e3f4a5b"
    assert (dom.vcpus, dom.vcpus_online, dom.vcpu_avail) == (4, 2, 0b11)
    assert (dom.maxmem, dom.memory) == (2048, 1024)
    assert (dom.cpu_weight, dom.cpu_cap) == (256, 0)
    assert dom.kernel == "/boot/vmlinuz-guest" and dom.ramdisk == "/boot/initrd-guest"
    assert dom.cmdline == "console=hvc0 root=/dev/xvda1 ro"
    assert [d.target for d in dom.disks] == ["/dev/drbd0", "/dev/drbd1"]
    assert [d.vdev for d in dom.disks] == ["xvda", "xvdb"]
    assert [n.mac for n in dom.nics] == ["00:16:3e:12:34:56", "00:16:3e:12:34:57"]
    assert dom.nics[1].vifname == "web01-eth1"
    assert (dom.on_reboot, dom.on_crash, dom.on_poweroff) == ("restart", "restart", None)
    # xl's own defaults and host facts are not mistaken for configuration
    kept = [k for k, _ in dom.extra]
    for noise in ("libxl:c_info.run_hotplug_scripts", "libxl:b_info.claim_mode",
                  "libxl:b_info.sched_params.sched", "libxl:on_soft_reset",
                  "libxl:b_info.arch_x86.msr_relaxed", "libxl:c_info.domid"):
        assert noise not in kept
    assert ("libxl:b_info.video_memkb", 0) in dom.extra   # PV: kept, not dropped


def test_hvm_example_of_the_spec():
    (dom,) = libxl_json.loads(spec_json("4.5"), source="xl-side 4.5")
    assert dom.domid == 9 and dom.type == "hvm"
    assert dom.hvm.boot == "dc" and dom.hvm.serial == ["pty"]
    assert dom.hvm.videoram == 8
    (vfb,) = dom.vfbs
    assert vfb.vnc is True and vfb.vnclisten == "127.0.0.1"
    cd = dom.disks[1]
    assert cd.is_cdrom and cd.removable and not cd.readwrite
    assert dom.nics[0].model == "e1000"


def test_libvirt_moredevs_hvm():
    (dom,) = libxl_json.loads((XL_JSON / "moredevs-hvm.json").read_text(),
                              source="moredevs-hvm.json")
    h = dom.hvm
    assert (h.hap, h.acpi, h.apic, h.pae, h.hpet) == (True, True, True, True, True)
    assert h.usbdevice == ["mouse", "tablet"] and h.serial == ["pty"]
    assert h.stdvga is False and h.device_model == "/bin/true"
    assert [(p.bus, p.slot) for p in dom.pci] == [(10, 16), (10, 8)]
    assert ("permissive", "1") in dom.pci[1].options
    assert dom.vkb is True and dom.memory == 1024 and dom.vcpus == 4


def test_libvirt_multiple_ip_and_deprecated_pv_bootloader():
    (dom,) = libxl_json.loads((XL_JSON / "multiple-ip.json").read_text(),
                              source="multiple-ip.json")
    assert dom.nics[0].ip == "10.0.0.1 2000:abcd::1"
    assert dom.bootloader == "pygrub"      # type.pv.bootloader (deprecated field)


@pytest.mark.parametrize("text, count", [
    ('[{"domid": 3, "config": {"c_info": {"name": "a"}}},'
     ' {"domid": 4, "config": {"c_info": {"name": "b"}}}]', 2),
    ('{"domid": 3, "config": {"c_info": {"name": "a"}}}', 1),
    ('{"c_info": {"name": "a", "type": "hvm"}, "b_info": {}}', 1),
])
def test_loads_accepts_the_three_shapes(text, count):
    doms = libxl_json.loads(text, source="t.json")
    assert len(doms) == count and doms[0].name == "a"


def test_bad_json_has_line_and_column():
    with pytest.raises(errors.ConfigError) as info:
        libxl_json.loads('{\n  "c_info": {"name": "a",}\n}', source="bad.json")
    e = info.value
    assert (e.source, e.line, e.col) == ("bad.json", 2, 26)   # the "}" after the comma


@pytest.mark.parametrize("text", ['[]', '42', '{"foo": 1}', '[{"domid": "x", "config": {}}]',
                                  '{"c_info": {"type": "arm"}}',
                                  '{"b_info": {"max_memkb": "lots"}}',
                                  '{"on_crash": "explode"}'])
def test_wrong_shapes_are_config_errors(text):
    with pytest.raises(errors.ConfigError) as info:
        libxl_json.loads(text, source="w.json")
    assert info.value.source == "w.json"


# ------------------------------------------------------------- writing

def _pv_domain() -> Domain:
    return Domain(name="g", uuid="5f2a1c3e-8d4b-4e6f-9a7b-0c1d2e3f4a5b", vcpus=4,
                  vcpu_avail=0b101, memory=512, maxmem=1024, kernel="/k",
                  cmdline="ro", on_poweroff="destroy", on_reboot="rename-restart",
                  on_crash="coredump-destroy", cpu_weight=512, shadow_memory=0,
                  cpus="0-3,^1")


def test_encoding_rules():
    """xl-side 4.2: KiB, bitmaps, defaults omitted, lower-case enums."""
    cfg = libxl_json.domain_to_libxl(_pv_domain())
    b = cfg["b_info"]
    assert cfg["c_info"] == {"type": "pv", "name": "g",
                             "uuid": "5f2a1c3e-8d4b-4e6f-9a7b-0c1d2e3f4a5b"}
    assert (b["max_memkb"], b["target_memkb"]) == (1048576, 524288)
    assert b["max_vcpus"] == 4 and b["avail_vcpus"] == [0, 2]
    assert b["vcpu_hard_affinity"] == [[0, 2, 3]] * 4
    assert b["sched_params"] == {"weight": 512}
    assert "shadow_memkb" not in b          # 0 = xend's "let xend decide"
    assert b["type.pv"] == {}
    assert "on_poweroff" not in cfg          # destroy is the IDL default
    assert cfg["on_reboot"] == "restart_rename"
    assert cfg["on_crash"] == "coredump_destroy"


def test_hvm_fields_go_where_libxl_has_them():
    dom = Domain(name="h", type="hvm", memory=256, vcpus=1,
                 hvm=HvmSettings(acpi=True, apic=False, pae=True, hpet=False,
                                 viridian=True, localtime=True, stdvga=True,
                                 videoram=16, boot="dc", usb=True,
                                 usbdevice=["tablet"], soundhw="sb16",
                                 serial=["pty", "null"], timer_mode=1,
                                 rtc_timeoffset=-3600, nographic=False,
                                 xen_platform_pci=True, hap=False,
                                 loader="/usr/lib/xen/boot/hvmloader",
                                 device_model="/usr/lib/xen/bin/qemu-dm"),
                 vfbs=[Vfb(origin="image", vnc=True, vnclisten="0.0.0.0",
                           keymap="ja"),
                       Vfb(vncdisplay=5, vncunused=False)])
    cfg = libxl_json.domain_to_libxl(dom)
    b, h = cfg["b_info"], cfg["b_info"]["type.hvm"]
    assert cfg["c_info"]["hap"] == "False"
    assert (b["acpi"], b["apic"], b["localtime"]) == ("True", "False", "True")
    assert b["timer_mode"] == "no_delay_for_missed_ticks"
    assert b["rtc_timeoffset"] == 2**32 - 3600      # uint32, as xl stores it
    assert b["video_memkb"] == 16384
    assert (h["pae"], h["hpet"], h["viridian"], h["nographic"]) == \
        ("True", "False", "True", "False")
    assert h["vga"] == {"kind": "std"}
    assert h["vnc"] == {"enable": "True", "listen": "0.0.0.0", "display": 5,
                        "findunused": "False"}
    assert h["keymap"] == "ja" and h["boot"] == "dc"
    assert h["usbdevice"] == "tablet" and h["serial_list"] == ["pty", "null"]
    assert h["xen_platform_pci"] == "True"
    # xend's qemu-dm and hvmloader do not exist on a 4.17 host
    assert "device_model" not in b and "firmware" not in h and "kernel" not in b


def test_pv_framebuffer_and_pci():
    dom = Domain(name="p", kernel="/k", memory=128,
                 vfbs=[Vfb(type="vnc", vnclisten="0.0.0.0", vncpasswd="s", keymap="ja",
                           vncdisplay=25, vncunused=False)],
                 pci=[PciDev(domain=1, bus=0x0c, slot=0x1b, func=2,
                             options=[("permissive", "1")])])
    cfg = libxl_json.domain_to_libxl(dom)
    assert cfg["vfbs"] == [{"devid": 0, "vnc": {"enable": "True", "listen": "0.0.0.0",
                                                "passwd": "s", "display": 25,
                                                "findunused": "False"},
                            "keymap": "ja"}]
    assert cfg["vkbs"] == [{"devid": 0}]
    assert cfg["pcidevs"] == [{"func": 2, "dev": 27, "bus": 12, "domain": 1,
                               "vfunc_mask": 1, "permissive": True}]
    assert cfg["b_info"]["type.pv"] == {"e820_host": "True"}


def test_dumps_wrapper_is_an_xl_list_element():
    dom = _pv_domain()
    dom.domid = 12
    data = json.loads(libxl_json.dumps(dom, wrapper=True))
    assert data["domid"] == 12
    assert data["config"]["c_info"]["domid"] == libxl_json.INVALID_DOMID
    text = libxl_json.dumps(dom)
    assert text.endswith("}\n") and '\n    "c_info": {' in text   # 4-space indent
    assert "domid" not in json.loads(text)["c_info"]


def test_bootloader_args_are_shell_split_like_xend():
    dom = Domain(name="b", bootloader="/usr/bin/pygrub",
                 bootloader_args='-q --default_args="root=/dev/sda1 ro" /img')
    assert libxl_json.domain_to_libxl(dom)["b_info"]["bootloader_args"] == \
        ["-q", "--default_args=root=/dev/sda1 ro", "/img"]
    back = libxl_json.domain_from_libxl(libxl_json.domain_to_libxl(dom))
    assert libxl_json.bootloader_argv(back) == \
        ["-q", "--default_args=root=/dev/sda1 ro", "/img"]


def test_remus_disk_survives_json():
    """The JSON has no remus field: block-remus + remus:HOST:PORT|aio:PATH."""
    dom = sxpr.domain_from_sxpr(
        ["domain", ["domid", 7], ["name", "g1"], ["memory", 256], ["vcpus", 1],
         ["image", ["linux", ["kernel", "/boot/vmlinuz"]]],
         ["device", ["tap2", ["uname", "tap:remus:backup:9000|aio:/images/g1.img"],
                     ["dev", "xvda1:disk"], ["mode", "w"]]]])
    cfg = libxl_json.domain_to_libxl(dom)
    (disk,) = cfg["disks"]
    assert disk["script"] == "block-remus"
    assert disk["pdev_path"] == "remus:backup:9000|aio:/images/g1.img"
    (back,) = libxl_json.loads(libxl_json.dumps(dom, wrapper=True), source="rt")
    peer = back.disks[0].remus
    assert (peer.host, peer.port, peer.inner_driver, peer.inner_path) == \
        ("backup", 9000, "aio", "/images/g1.img")
    sx = sxpr.domain_to_sxpr(back)
    (tap2,) = [d[1] for d in sx if isinstance(d, list) and d[0] == "device"
               and d[1][0] == "tap2"]
    assert ["uname", "tap:remus:backup:9000|aio:/images/g1.img"] in tap2
    assert ["dev", "xvda1:disk"] in tap2 and ["mode", "w"] in tap2


def test_model_round_trip_through_json():
    dom = _pv_domain()
    back = libxl_json.domain_from_libxl(libxl_json.domain_to_libxl(dom))
    for attr in ("name", "uuid", "vcpus", "vcpu_avail", "memory", "maxmem",
                 "kernel", "cmdline", "cpu_weight", "on_reboot", "on_crash"):
        assert getattr(back, attr) == getattr(dom, attr), attr
    assert back.cpus == "0,2-3"


@pytest.mark.parametrize("text, bits", [("0-3,^1", [0, 2, 3]), ("5", [5]),
                                        ("all", None), ("nodes:0", None),
                                        ("1,1-2", [1, 2])])
def test_parse_cpulist(text, bits):
    assert libxl_json.parse_cpulist(text) == bits
    if bits:
        assert libxl_json.parse_cpulist(libxl_json.format_cpulist(bits)) == bits
