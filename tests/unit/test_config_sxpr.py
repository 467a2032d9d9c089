"""config/sxpr.py: xend domain sxprs <-> the model.

Expected values come from the specs (legacy-api.md 3.3, 11.5; xen_config.html)
and from what libvirt concluded from the same sxprs (the paired
``sexpr2xml/*.xml`` files, fixtures README), never from running our code.
"""
import ast
import pathlib

import pytest
from lxml import etree

from xen_remus_compat import errors, sxp
from xen_remus_compat.config.formats import sxpr
from xen_remus_compat.config.model import Domain

FIXTURES = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SEXPR2XML = FIXTURES / "libvirt" / "sexpr2xml"
SEXPR_FILES = sorted(SEXPR2XML.glob("*.sexpr"))
#: libvirt accepted these with unbalanced parentheses (fixtures README).
UNBALANCED = {"bridge-ipaddr", "net-routed", "pv-vfb-new", "pv-vfb-new-vncdisplay"}


def _name(path: pathlib.Path) -> str:
    return path.stem[len("sexpr2xml-"):]


def load(path: pathlib.Path):
    return sxpr.domains_from_text(path.read_text(), source=str(path),
                                  continuations=True,
                                  lenient=_name(path) in UNBALANCED)


def fixture(name: str) -> Domain:
    (dom,) = load(SEXPR2XML / f"sexpr2xml-{name}.sexpr")
    return dom


def xend_config_test_sxpr() -> list:
    """The Python-list sxpr of xend's own test_XendConfig.py (RELEASE-4.3.0)."""
    tree = ast.parse((FIXTURES / "xen" / "xend-tests" / "test_XendConfig.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "sxp_obj":
            return ast.literal_eval(node.value)
    raise AssertionError("sxp_obj not found in test_XendConfig.py")


# ---------------------------------------------------------------- the oracle

def _kib(el) -> int:
    assert el.get("unit", "KiB") == "KiB"
    return int(el.text)


@pytest.mark.parametrize("path", SEXPR_FILES, ids=_name)
def test_matches_libvirt_conclusions(path):
    """Every sexpr2xml pair: the facts libvirt drew from the sxpr."""
    (dom,) = load(path)
    xml = etree.parse(str(path.with_suffix(".xml"))).getroot()
    assert dom.name == xml.findtext("name")
    assert dom.uuid == xml.findtext("uuid")
    assert dom.maxmem * 1024 == _kib(xml.find("memory"))
    assert dom.memory * 1024 == _kib(xml.find("currentMemory"))
    vcpu = xml.find("vcpu")
    assert dom.vcpus == int(vcpu.text)
    online = dom.vcpus_online if dom.vcpus_online is not None else dom.vcpus
    assert online == int(vcpu.get("current", vcpu.text))
    os_type = xml.findtext("os/type")
    assert dom.type == {"linux": "pv", "hvm": "hvm"}[os_type]
    for tag, attr in (("bootloader", "bootloader"),
                      ("bootloader_args", "bootloader_args")):
        assert getattr(dom, attr) == xml.findtext(tag)
    for tag in ("on_poweroff", "on_reboot", "on_crash"):
        assert getattr(dom, tag) == xml.findtext(tag)
    assert dom.cmdline == xml.findtext("os/cmdline")
    assert dom.ramdisk == xml.findtext("os/initrd")
    if os_type == "hvm":
        assert dom.kernel == xml.findtext("os/kernel")
        assert dom.hvm.loader == xml.findtext("os/loader")
        assert dom.hvm.device_model == xml.findtext("devices/emulator")
        boot = [b.get("dev") for b in xml.findall("os/boot")]
        assert [{"c": "hd", "d": "cdrom"}[c] for c in dom.hvm.boot or ""] == boot
        for feature in ("pae", "acpi", "apic"):
            assert bool(getattr(dom.hvm, feature)) == \
                (xml.find(f"features/{feature}") is not None), feature
        hpet = xml.find("clock/timer[@name='hpet']")
        assert dom.hvm.hpet == (None if hpet is None else hpet.get("present") == "yes")
    else:
        assert dom.kernel == xml.findtext("os/kernel")
    localtime = dom.hvm.localtime if dom.hvm and dom.hvm.localtime is not None \
        else dom.localtime
    assert bool(localtime) == (xml.find("clock").get("offset") == "localtime")

    disks = [d for d in dom.disks]
    xdisks = xml.findall("devices/disk")
    assert [d.vdev for d in disks] == [x.find("target").get("dev") for x in xdisks]
    for d, x in zip(disks, xdisks):
        src = x.find("source")
        want = None if src is None else (src.get("file") or src.get("dev"))
        assert d.target == want, d.vdev
        assert d.is_cdrom == (x.get("device") == "cdrom")
        assert d.readwrite == (x.find("readonly") is None)
        assert d.shareable == (x.find("shareable") is not None)

    xifs = xml.findall("devices/interface")
    assert len(dom.nics) == len(xifs)
    for n, x in zip(dom.nics, xifs):
        assert n.mac == x.find("mac").get("address")
        src = x.find("source")
        assert n.bridge == (None if src is None else src.get("bridge"))
        script = x.find("script")
        assert n.script == (None if script is None else script.get("path"))
        ip = x.find("ip")
        assert n.ip == (None if ip is None else ip.get("address"))

    xpci = [x.find("source/address") for x in xml.findall("devices/hostdev")]
    assert [p.bdf for p in dom.pci] == [
        f"{int(a.get('domain'), 16):04x}:{int(a.get('bus'), 16):02x}:"
        f"{int(a.get('slot'), 16):02x}.{int(a.get('function'), 16):x}" for a in xpci]

    graphics = xml.findall("devices/graphics")
    shown = [v for v in dom.vfbs if v.vnc is not False]
    assert bool(shown) == bool(graphics)
    if graphics:
        keymaps = {v.keymap for v in dom.vfbs} - {None}
        assert keymaps == ({graphics[0].get("keymap")} - {None})
        listens = {v.vnclisten for v in dom.vfbs} - {None}
        assert listens == ({graphics[0].get("listen")} - {None})

    if dom.hvm is not None:
        serials = [s for s in dom.hvm.serial if s != "none"]
        assert len(serials) == len(xml.findall("devices/serial"))
        assert len([p for p in dom.hvm.parallel if p != "none"]) == \
            len(xml.findall("devices/parallel"))
        sounds = [s.get("model") for s in xml.findall("devices/sound")]
        if dom.hvm.soundhw and dom.hvm.soundhw != "all":
            assert dom.hvm.soundhw.split(",") == sounds
        usb_inputs = [i.get("type") for i in xml.findall("devices/input")
                      if i.get("bus") == "usb"]
        assert dom.hvm.usbdevice == usb_inputs


# ---------------------------------------------------------- specific shapes

def test_runtime_dump_fields():
    dom = fixture("fv-autoport")
    assert dom.domid == 21
    assert dom.shadow_memory == 5
    assert (dom.cpu_weight, dom.cpu_cap) == (256, 0)
    assert dom.state == "r-----" and dom.status == 2
    assert dom.start_time == pytest.approx(1233108538.42)
    assert dom.store_mfn == 131070
    assert dom.hvm.usbdevice == ["tablet"] and dom.hvm.usb is True
    # the vfb device keeps its runtime-only keys, verbatim
    (device_vfb,) = [v for v in dom.vfbs if v.origin is None]
    assert device_vfb.vncdisplay == 25 and device_vfb.vncunused is True
    assert ("location", ["localhost:5925"]) in device_vfb.extra
    assert dom.vkb is True
    # runtime keys not modelled are kept, not dropped
    keys = [k for k, _ in dom.extra]
    assert "on_xend_start" in keys and "online_vcpus" in keys
    assert ("notes", [["SUSPEND_CANCEL", "1"]]) in dom.image_extra


def test_vcpu_avail_bitmap():
    dom = fixture("pv-vcpus")
    assert (dom.vcpus, dom.vcpu_avail, dom.vcpus_online) == (4, 3, 2)


def test_uuid_without_dashes_is_canonicalised():
    assert fixture("fv-v2").uuid == "b5d70dd2-75cd-aca5-1776-9660b059d8bc"


def test_hvm_image_cdrom_becomes_hdc_unless_taken():
    dom = fixture("fv")
    cdrom = [d for d in dom.disks if d.vdev == "hdc"]
    assert len(cdrom) == 1 and cdrom[0].is_cdrom and not cdrom[0].readwrite
    assert cdrom[0].target == "/root/boot.iso" and cdrom[0].origin == "image-cdrom"
    # fv-utc has the same ISO as a device already: no second hdc
    utc = fixture("fv-utc")
    assert [d.vdev for d in utc.disks] == ["hda", "hdc"]
    assert utc.disks[1].origin is None


def test_empty_cdrom_without_uname():
    dom = fixture("no-source-cdrom")
    hdc = dom.disks[1]
    assert hdc.vdev == "hdc" and hdc.is_cdrom and hdc.target in (None, "")
    assert ("driver", ["paravirtualised"]) in hdc.extra


def test_serial_list_forms():
    assert fixture("fv-serial-dev-2-ports").hvm.serial == ["/dev/ttyS0", "/dev/ttyS1"]
    assert fixture("fv-serial-dev-2nd-port").hvm.serial == ["none", "/dev/ttyS1"]
    assert fixture("fv-serial-udp").hvm.serial == ["udp:localhost:9998@localhost:9999"]
    assert fixture("fv-parallel-tcp").hvm.parallel == ["tcp:localhost:9999"]


def test_pci_hex_forms():
    dom = fixture("pci-devs")
    assert [(p.domain, p.bus, p.slot, p.func) for p in dom.pci] == \
        [(1, 0x0c, 0x1b, 2), (0, 1, 0x13, 0)]


def test_attribute_lists_are_skipped():
    """xen_config.html: ``(@ (id vif1))`` is an attribute list, not a key."""
    (dom,) = sxpr.domains_from_text(
        "(vm (name a) (memory 64) # comment\n"
        " (device (vif (@ (id vif1)) (mac aa:00:00:11:00:12))) (device (vif)))",
        source="attrs.sxp")
    assert [n.mac for n in dom.nics] == ["aa:00:00:11:00:12", None]


def test_old_pci_form_dev_is_the_slot():
    dom = sxpr.domain_from_sxpr(
        ["vm", ["name", "p"], ["device", ["pci", ["bus", "0x1f"], ["dev", "10"],
                                          ["func", "0"]]]])
    assert (dom.pci[0].bus, dom.pci[0].slot, dom.pci[0].func) == (0x1f, 10, 0)


def test_hvm_hvmloader_kernel_is_the_loader():
    dom = fixture("fv")
    assert dom.kernel is None and dom.hvm.loader == "/usr/lib/xen/boot/hvmloader"
    kernel = fixture("fv-kernel")       # direct kernel boot keeps its kernel
    assert kernel.kernel == "/var/lib/xen/vmlinuz.2Dn2YT"
    assert kernel.hvm.loader == "/usr/lib/xen/boot/hvmloader"


def test_pv_image_level_vnc_is_a_framebuffer():
    dom = fixture("pv-vfb-orig")
    (vfb,) = dom.vfbs
    assert vfb.origin == "image" and vfb.vnc is True and vfb.vncunused is True
    assert (vfb.vnclisten, vfb.vncpasswd, vfb.keymap) == ("0.0.0.0", "123456", "ja")


def test_float_cpu_weight_of_xend_30_is_kept_verbatim():
    dom = fixture("curmem")
    assert dom.cpu_weight is None
    assert ("cpu_weight", ["1.0"]) in dom.extra


def test_ganeti_dump_two_domains():
    path = FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt"
    dom0, guest = sxpr.domains_from_text(path.read_text(), source=str(path))
    assert (dom0.name, dom0.domid, dom0.vcpus) == ("Domain-0", 0, 24)
    assert dom0.cpus == "0-23"          # 24 identical per-vcpu lists
    assert guest.name == "instance1.example.com" and guest.domid == 119
    assert guest.cpus is None           # (cpus (())) = no pinning
    (disk,) = guest.disks
    assert disk.target == "/var/run/ganeti/instance-disks/instance1.example.com:0"
    assert disk.vdev == "sda" and disk.protocol == "x86_64-abi"
    assert guest.cmdline == "root=/dev/xvda1 ro"
    assert ("videoram", ["4"]) in guest.image_extra


def test_xend_own_test_sxpr():
    """test_XendConfig.py: uuid, name, memory 256, vbd unames, 2 vif MACs."""
    dom = sxpr.domain_from_sxpr(xend_config_test_sxpr(), source="test_XendConfig")
    assert dom.uuid == "10927a76-fe27-49b2-8f57-2970b7bbed6c"
    assert dom.name == "VM1" and dom.memory == 256 and dom.vcpus == 1
    assert [d.uname for d in dom.disks] == ["phy:/images/VM1.sda", "phy:/images/VM1.sdb"]
    assert [n.mac for n in dom.nics] == ["00:16:3e:4c:d1:00", "00:16:3e:48:56:26"]
    assert dom.bootloader_args == ('-q --default_args="root=/dev/sda1 ro" '
                                   '--extra_args="quiet" /images/VM1.sda')


def test_vm_form_folds_root_and_ip_into_args():
    """xen_config.html's example; XendConfig puts root= and ip= first."""
    text = (FIXTURES / "xen" / "docs" / "xen_config.html").read_text()
    body = text[text.index("(vm\n"):text.index("</pre>", text.index("(vm\n"))]
    (dom,) = sxpr.domains_from_text(body, source="xen_config.html")
    assert dom.name == "xendom1" and dom.memory == 64
    assert dom.kernel == "/boot/vmlinuz-2.6.12-xen"
    assert dom.cmdline == "root=/dev/xda1 ip=::::xendom1:eth0:dhcp rw fastboot 4"
    assert len(dom.nics) == 1 and dom.nics[0].mac is None
    assert dom.disks[0].vdev == "xda1" and dom.disks[0].uname == "phy:hda1"


def test_vm_form_quoted_numbers_and_cpu():
    text = (FIXTURES / "xen" / "docs" / "vnet-xend.txt").read_text()
    start = text.index("(vm")
    body = text[start:text.index("\n)\n", start) + 3]
    (dom,) = sxpr.domains_from_text(body, source="vnet-xend.txt")
    assert dom.memory == 64 and dom.cpus == "1"
    assert ("console", ["8502"]) in dom.extra


def test_xmlrpc_values_are_accepted():
    """legacy-api.md 11.5: numbers arrive as int/float, None as nil."""
    dom = sxpr.domain_from_sxpr(
        ["domain", ["domid", 7], ["name", "guest1"], ["vcpus", 2], ["maxmem", 1024],
         ["memory", 1024], ["shadow_memory", 9], ["cpu_weight", 256], ["cpu_cap", 0],
         ["start_time", 1396000000.25],
         ["cpus", [[0, 1], [0, 1]]],
         ["image", ["linux", ["kernel", "/boot/vmlinuz"], ["args", "root=/dev/xvda1 ro"],
                    ["superpages", 0], ["videoram", 4]]],
         ["device", ["tap2", ["uname", "tap:remus:backup:9000|aio:/images/g1.img"],
                     ["dev", "xvda1:disk"], ["mode", "w"], ["bootable", 1],
                     ["backend", 0], ["uuid", "cccc"], ["VDI", ""]]]])
    assert (dom.domid, dom.vcpus, dom.maxmem, dom.shadow_memory) == (7, 2, 1024, 9)
    assert dom.cpus == "0-1" and dom.start_time == 1396000000.25
    (disk,) = dom.disks
    assert disk.remus.host == "backup" and disk.remus.port == 9000
    assert disk.remus.inner_path == "/images/g1.img"
    assert disk.vdev == "xvda1" and disk.device_class == "tap2"


@pytest.mark.parametrize("value, expected", [
    ([[]], None),                            # (cpus (())): no pinning
    ([[], []], None),
    ([[1, 2], [3]], ["1-2", "3"]),           # XML-RPC: lists of ints per vcpu
    ("0-3,^1", "0,2-3"),                     # a CPULIST for every vcpu
    ([["0", "1"], ["0", "1"]], "0-1"),       # config.sxp: lists of strings
    (["2", "3-4"], ["2", "3-4"]),            # one CPULIST per vcpu
    ([["2"], []], ["2", "all"]),
])
def test_cpus_forms(value, expected):
    """XendConfig 4.3 _parse_sxp / the ganeti and pv-vfb-type-crash dumps."""
    dom = sxpr.domain_from_sxpr(["domain", ["name", "c"], ["vcpus", 2], ["cpus", value]])
    if isinstance(expected, list):
        assert dom.vcpu_affinity == expected and dom.cpus is None
    else:
        assert dom.cpus == expected and dom.vcpu_affinity == []


@pytest.mark.parametrize("item, key", [
    (["memory", "-5"], "memory"),
    (["memory", "lots"], "memory"),
    (["maxmem", "1.5"], "maxmem"),
    (["uuid", "not-a-uuid"], "uuid"),
    (["vcpus", ["1"]], "vcpus"),
    (["on_crash", "explode"], "on_crash"),
    (["device", ["vbd", ["uname", "phy:/dev/x"], ["mode", "w"]]], "dev"),
    (["cpus", "0-x"], "cpus"),
    (["cpus", [["0"], "1"]], "cpus"),
])
def test_bad_values_name_source_and_key(item, key):
    with pytest.raises(errors.ConfigError) as info:
        sxpr.domain_from_sxpr(["domain", ["name", "bad"], item], source="in.sxp")
    assert info.value.source == "in.sxp"
    assert key in info.value.message


def test_top_level_must_be_a_domain():
    with pytest.raises(errors.ConfigError) as info:
        sxpr.domains_from_text("(domain (name a)) (xend-relocation-port 8002)",
                               source="x.sxp")
    assert "xend-relocation-port" in info.value.message and info.value.source == "x.sxp"
    with pytest.raises(errors.ConfigError):
        sxpr.domains_from_text("", source="empty")


def test_unbalanced_fixture_needs_lenient():
    path = SEXPR2XML / "sexpr2xml-net-routed.sexpr"
    with pytest.raises(errors.SxpParseError):
        sxpr.domains_from_text(path.read_text(), source=str(path), continuations=True)


def test_uuid_canonical():
    assert sxpr.canonical_uuid("B5D70DD275CDACA517769660B059D8BC") == \
        "b5d70dd2-75cd-aca5-1776-9660b059d8bc"
    assert sxpr.canonical_uuid("b5d70dd2-75cd-aca5-1776-9660b059d8bc") == \
        "b5d70dd2-75cd-aca5-1776-9660b059d8bc"
    assert sxpr.canonical_uuid("b5d70dd2") is None


# ----------------------------------------------------------------- writing

def _elem(sx, key):
    return [c for c in sx[1:] if isinstance(c, list) and c and c[0] == key]


def test_runtime_form_shape_for_legacy_code():
    """legacy-api.md 11.5: ints as ints, remus disks as tap2 with tap: uname."""
    dom = sxpr.domain_from_sxpr(
        ["domain", ["domid", 7], ["name", "g1"], ["uuid", "5f0a" * 8], ["vcpus", 2],
         ["memory", 1024], ["maxmem", 1024],
         ["image", ["linux", ["kernel", "/boot/vmlinuz"]]],
         ["device", ["tap2", ["uname", "tap2:remus:backup:9000|aio:/img"],
                     ["dev", "xvda"], ["mode", "w"]]],
         ["device", ["vif", ["mac", "0:16:3E:1:2:3"], ["bridge", "xenbr0"]]]])
    sx = sxpr.domain_to_sxpr(dom)
    assert sx[0] == "domain" and sx[1] == ["domid", 7]
    for key, value in (("cpu_weight", 256), ("cpu_cap", 0), ("vcpus", 2),
                       ("maxmem", 1024), ("memory", 1024), ("shadow_memory", 0),
                       ("name", "g1"), ("uuid", "5f0a5f0a-5f0a-5f0a-5f0a-5f0a5f0a5f0a")):
        assert _elem(sx, key) == [[key, value]], key
    (tap2,) = [d[1] for d in _elem(sx, "device") if d[1][0] == "tap2"]
    assert ["uname", "tap:remus:backup:9000|aio:/img"] in tap2
    assert ["dev", "xvda:disk"] in tap2 and ["mode", "w"] in tap2
    (vif,) = [d[1] for d in _elem(sx, "device") if d[1][0] == "vif"]
    assert ["mac", "00:16:3e:01:02:03"] in vif and ["backend", 0] in vif
    text = sxp.to_string(sx)
    assert "(uname 'tap:remus:backup:9000|aio:/img')" in text


def test_runtime_form_through_legacy_parsedominfo():
    """What remus reads (legacy-api.md 3.3): domid int, disks, vifs."""
    vm = pytest.importorskip("xen_remus_compat.legacy.vm")
    dom = fixture("fv-v2")
    info = vm.parsedominfo(sxpr.domain_to_sxpr(dom))
    assert info["domid"] == 3 and info["name"] == "fvtest"
    assert info["maxmem"] == 400 and info["shadow_memory"] == 0
    vbds = info["device"]["vbd"]
    assert [v["uname"] for v in vbds] == ["file:/root/foo.img", "file:/root/boot.iso"]
    assert [v["dev"] for v in vbds] == ["hda:disk", "hdc:cdrom"]
    assert info["device"]["vif"]["mac"] == "00:16:3e:1b:b1:47"


def test_config_form_has_no_runtime_facts():
    dom = fixture("fv-autoport")
    sx = sxpr.domain_to_sxpr(dom, form="config")
    for key in ("domid", "state", "status", "store_mfn", "start_time",
                "cpu_time", "online_vcpus"):
        assert _elem(sx, key) == [], key
    assert _elem(sxpr.domain_to_sxpr(fixture("pv-vcpus"), form="config"),
                 "vcpu_avail") == [["vcpu_avail", 3]]


def test_form_is_checked():
    with pytest.raises(ValueError):
        sxpr.domain_to_sxpr(Domain(name="x"), form="pretty")


@pytest.mark.parametrize("path", SEXPR_FILES + [FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt"],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("form", ["runtime", "config"])
def test_writer_is_a_fixed_point(path, form):
    """sxpr -> model -> sxpr -> model -> sxpr: the second trip changes nothing
    (everything the model kept is written back, and read back the same)."""
    for dom in (load(path) if path.parent == SEXPR2XML else
                sxpr.domains_from_text(path.read_text(), source=str(path))):
        first = sxpr.domain_to_sxpr(dom, form=form)
        again = sxpr.domain_from_sxpr(first)
        second = sxpr.domain_to_sxpr(again, form=form)
        assert sxp.to_string(second) == sxp.to_string(first)
        # the printed text is one strictly balanced value
        assert len(sxp.loads(sxp.to_string(first), source="printed")) == 1


def test_runtime_form_keeps_unknown_keys_verbatim():
    dom = fixture("curmem")
    text = sxp.to_string(sxpr.domain_to_sxpr(dom))
    for piece in ("(cpu_weight 1.0)", "(shutdown_reason poweroff)",
                  "(display localhost:10.0)", "(features)"):
        assert piece in text
