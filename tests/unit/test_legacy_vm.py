"""``xen.remus.vm`` helpers, expected values written from legacy-api.md
sections 3, 4 and 11.5 (not from our implementation)."""
import pytest

from xen_remus_compat import quirks
from xen_remus_compat.legacy import blkdev, image, vm


# the example of legacy-api.md section 11.5, as XML-RPC delivered it
DOMINFO = ["domain", ["domid", 7], ["name", "guest1"], ["uuid", "5f0a"], ["vcpus", 2],
           ["maxmem", 1024], ["memory", 1024], ["shadow_memory", 9],
           ["cpu_weight", 256], ["cpu_cap", 0], ["state", "-b----"],
           ["image", ["linux", ["kernel", "/boot/vmlinuz"],
                      ["args", "root=/dev/xvda1 ro"], ["superpages", 0]]],
           ["device", ["vif", ["backend", 0], ["bridge", "xenbr0"],
                       ["mac", "0:16:3E:1:2:3"], ["uuid", "aaaa"],
                       ["script", "/etc/xen/scripts/vif-bridge"]]],
           ["device", ["vif", ["backend", 0], ["bridge", "xenbr1"],
                       ["mac", "00:16:3e:00:00:04"], ["vifname", "web0"],
                       ["uuid", "bbbb"]]],
           ["device", ["tap2", ["uname", "tap:remus:backup:9000|aio:/images/g1.img"],
                       ["dev", "xvda1:disk"], ["mode", "w"], ["bootable", 1],
                       ["backend", 0], ["uuid", "cccc"], ["VDI", ""]]],
           ["device", ["vbd", ["uname", "phy:/dev/vg/swap"], ["dev", "xvdd:disk"],
                       ["mode", "w"]]],
           ["device", ["vkbd", ["backend", 0]]]]


def test_parsedominfo_shape():
    dom = vm.parsedominfo(DOMINFO)
    assert dom["domid"] == 7 and dom["name"] == "guest1" and dom["vcpus"] == 2
    assert dom["image"] == {"linux": {"kernel": "/boot/vmlinuz",
                                      "args": "root=/dev/xvda1 ro", "superpages": 0}}
    # repeated vif entries become a list of dicts; single entries stay dicts
    assert isinstance(dom["device"]["vif"], list) and len(dom["device"]["vif"]) == 2
    assert isinstance(dom["device"]["tap2"], dict)
    assert dom["device"]["vkbd"] == {"backend": 0}


def test_vm_from_dominfo_legacy_naming_and_disk_order():
    quirks.set_quirks(vif_index_naming=True, blkdev_rstrip=True)
    try:
        v = vm.VM(dominfo=DOMINFO)
        # vifs vif7.0 and vif7.1 (vifname ignored); MACs canonicalised
        assert [(x.dev, str(x)) for x in v.vifs] == [
            ("vif7.0", "00:16:3e:01:02:03"), ("vif7.1", "00:16:3e:00:00:04")]
        # disks in the order vbd, tap, tap2; the legacy rstrip turns xvdd:disk into xv
        assert [str(d) for d in v.disks] == ["phy:/dev/vg/swap,xv,w",
                                             "tap:remus:backup:9000|aio:/images/g1.img,xvda1,w"]
        assert type(v.disks[0]).__name__ == "VBD" and type(v.disks[1]) is blkdev.BlkDev
    finally:
        quirks.reset()


def test_vm_from_dominfo_fixed_naming():
    v = vm.VM(dominfo=DOMINFO)
    assert [x.dev for x in v.vifs] == ["vif7.0", "web0"]        # xl's names
    assert [d.dev for d in v.disks] == ["xvdd", "xvda1"]       # literal ':disk' only
    assert str(v) == ("VM 7 (guest1), vifs: [00:16:3e:01:02:03, 00:16:3e:00:00:04], "
                      "disks: [phy:/dev/vg/swap,xvdd,w, "
                      "tap:remus:backup:9000|aio:/images/g1.img,xvda1,w]")


def test_vm_without_domid_does_no_lookup():
    for ref in (0, "", None):
        v = vm.VM(ref)
        assert (v.domid, v.name, v.dom, v.disks, v.vifs) == (-1, "unknown", {}, [], [])


def test_header_text_roundtrip_gives_strings_and_str_fails():
    # section 11.5: parsed back from text, every value is a string, and
    # building a VM from it fails in vif.parse ('%d' on a str)
    text = vm.sxprtostr(DOMINFO)
    dom = image.parseheader(text)
    assert dom["domid"] == "7" and dom["vcpus"] == "2"
    quirks.set_quirks(vif_index_naming=True)
    try:
        with pytest.raises(TypeError):
            vm.VM(dominfo=vm.strtosxpr(text))
    finally:
        quirks.reset()


def test_strtosxpr_quirks():
    assert vm.strtosxpr("(a (b c))") == ["a", ["b", "c"]]
    with pytest.raises(IndexError):
        vm.strtosxpr("")            # empty input raises IndexError
    with pytest.raises(IndexError):
        vm.strtosxpr("atom")        # a trailing bare atom is lost (no EOF)


def test_domtosxpr_none_and_nesting():
    sx = vm.domtosxpr({"domid": 1, "name": None, "image": {"linux": {"kernel": "/k"}}})
    assert sx == ["domain", ["domid", 1], ["name", ""],
                  ["image", ["linux", ["kernel", "/k"]]]]


def test_getvifs_without_device_key_raises_keyerror():
    with pytest.raises(KeyError):
        vm.getvifs({"domid": 1})


class FakeHost:
    def __init__(self, free_kib, current_kib):
        self.free, self.current = free_kib, current_kib
        self.targets = []

    def free_kib(self):
        return self.free

    def dom0_current_kib(self):
        return self.current

    def set_dom0_target_mib(self, mib):
        self.targets.append(mib)


def test_getshadowmem_balloons_dom0_with_the_legacy_message(monkeypatch, capsys):
    v = vm.VM(dominfo=DOMINFO)
    # needed_shadow = vcpus*1024 + maxmem*4 - shadow_memory*1024 = 2048 + 4096 - 9216 < 0
    host = FakeHost(free_kib=0, current_kib=4 << 20)
    monkeypatch.setattr(vm, "HOSTMEM", host)
    vm.getshadowmem(v)
    assert host.targets == [] and capsys.readouterr().out == ""
    v.dom["shadow_memory"] = 0          # needed = 6144 KiB with nothing free
    vm.getshadowmem(v)
    assert capsys.readouterr().out == "Freeing 6144 kB for shadow mode\n"
    assert host.targets == [((4 << 20) - 6144) // 1024]


def test_getshadowmem_enough_free_does_nothing(monkeypatch, capsys):
    v = vm.VM(dominfo=DOMINFO)
    v.dom["shadow_memory"] = 0
    host = FakeHost(free_kib=1 << 20, current_kib=4 << 20)
    monkeypatch.setattr(vm, "HOSTMEM", host)
    vm.getshadowmem(v)
    assert host.targets == [] and capsys.readouterr().out == ""
