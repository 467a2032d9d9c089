"""xend-era configs on a Debian bookworm xl host (issue 14 items 1, 2, 4).

Expected values come from the package contents of bookworm (xen-utils-4.17:
/usr/lib/xen-4.17/bin/pygrub, /usr/lib/xen-4.17/boot/hvmloader;
xen-utils-common: /usr/bin/pygrub; grub-xen-host:
/usr/lib/grub-xen/grub-x86_64-xen.bin, grub-i386-xen.bin; qemu-system-xen:
/usr/libexec/xen-qemu-system-i386), from xl.cfg(5) of Xen 4.17 and from
xend 4.3's XendConfig (what a running domain's sxpr always held)."""
from __future__ import annotations

import re

import pytest

from xen_remus_compat import sxp
from xen_remus_compat.config import hostpaths, xlpolicy
from xen_remus_compat.config.formats import libxl_json, sxpr, xlcfg
from xen_remus_compat.config.formats.xlcfg_leftovers import DEFAULT_REASON


def settings(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" = ")
            out[key] = value
    return out


def domain(body: str, image: str = "(linux (kernel /boot/vmlinuz))"):
    text = f"(domain (name g) (memory 256) {body} (image {image}))"
    return sxpr.domain_from_sxpr(sxp.loads(text)[0], source="test")


def items(cfg, kind):
    return {i.key: i for i in cfg.items if i.kind == kind}


# ---------------------------------------------------------------- item 1

@pytest.mark.parametrize("path,expected", [
    ("/usr/lib/xen-4.1/bin/pygrub", "pygrub"),
    ("/usr/lib/xen/bin/pygrub", "pygrub"),
    ("/usr/lib64/xen/bin/pygrub", "pygrub"),
    ("/usr/local/lib/xen/bin/pygrub", "pygrub"),
    ("/usr/bin/pygrub", "/usr/bin/pygrub"),              # on bookworm: kept
    ("/usr/lib/xen-4.17/bin/pygrub", "/usr/lib/xen-4.17/bin/pygrub"),
    ("pygrub", "pygrub"),
])
def test_pygrub_paths(path, expected):
    new, why = hostpaths.bootloader(path)
    assert new == expected
    assert (why is None) == (path == expected)


def test_xend_era_directories():
    assert hostpaths.xend_era("/usr/lib/xen/boot/hvmloader")
    assert hostpaths.xend_era("/usr/lib/xen-4.1/bin/qemu-dm")
    assert hostpaths.xend_era("/usr/lib64/xen/bin/pypxeboot")
    assert not hostpaths.xend_era("/usr/lib/xen-4.17/boot/hvmloader")
    assert not hostpaths.xend_era("/boot/vmlinuz")
    assert not hostpaths.xend_era(None)


def test_xen41_pygrub_becomes_pygrub_with_a_comment():
    dom = domain("(bootloader /usr/lib/xen-4.1/bin/pygrub)", "(linux (kernel ))")
    cfg = xlcfg.to_xlcfg(dom)
    assert settings(cfg.text)["bootloader"] == '"pygrub"'
    change = items(cfg, "rewritten")["bootloader"]
    assert change.new == "pygrub" and "/usr/lib/xen-4.17/bin/pygrub" in change.reason
    assert '# rewritten: bootloader = "/usr/lib/xen-4.1/bin/pygrub" -> "pygrub"' in cfg.text
    assert libxl_json.domain_to_libxl(dom)["b_info"]["bootloader"] == "pygrub"
    assert ("bootloader", "bootloader", "pygrub") in cfg.paths


@pytest.mark.parametrize("kernel,image", [
    ("/usr/lib/xen/boot/pv-grub-x86_64.gz", "/usr/lib/grub-xen/grub-x86_64-xen.bin"),
    ("/usr/lib/xen-4.1/boot/pv-grub-x86_32.gz", "/usr/lib/grub-xen/grub-i386-xen.bin"),
])
def test_pv_grub_becomes_pvgrub2_with_a_note(kernel, image):
    dom = domain("", f"(linux (kernel {kernel}) (args '(hd0,0)/boot/grub/menu.lst'))")
    cfg = xlcfg.to_xlcfg(dom)
    s = settings(cfg.text)
    assert s["kernel"] == f'"{image}"' and "cmdline" not in s
    rewritten = items(cfg, "rewritten")
    assert rewritten["kernel"].new == image
    assert "grub-xen-host" in rewritten["kernel"].reason
    assert "--to-pvh" in rewritten["kernel"].reason and "pygrub" in rewritten["kernel"].reason
    assert rewritten["cmdline"].new is None
    b = libxl_json.domain_to_libxl(dom)["b_info"]
    assert b["kernel"] == image and "cmdline" not in b
    # the legacy view keeps what xend had
    assert ["kernel", kernel] in sxpr.domain_to_sxpr(dom)[-1][1] or \
        kernel in sxp.to_string(sxpr.domain_to_sxpr(dom))


def test_pv_grub_with_other_arguments_keeps_them():
    dom = domain("", "(linux (kernel /usr/lib/xen/boot/pv-grub-x86_64.gz) (args 'console=hvc0'))")
    assert settings(xlcfg.to_xlcfg(dom).text)["cmdline"] == '"console=hvc0"'


def test_hvmloader_is_xls_default_and_qemu_dm_is_rewritten():
    dom = domain("", "(hvm (kernel /usr/lib/xen/boot/hvmloader) "
                     "(device_model /usr/lib/xen/bin/qemu-dm))")
    cfg = xlcfg.to_xlcfg(dom)
    s = settings(cfg.text)
    assert "firmware" not in s and "device_model_override" not in s and "kernel" not in s
    assert ("loader", "xl's default") in cfg.omitted
    assert not cfg.untranslated
    dm = items(cfg, "rewritten")["device_model"]
    assert dm.new is None and hostpaths.QEMU_XEN in dm.reason


def test_xen_built_qemu_at_an_old_path_is_left_to_libxl():
    dom = domain("", "(hvm (device_model /usr/lib/xen/bin/qemu-system-i386))")
    cfg = xlcfg.to_xlcfg(dom)
    assert "device_model_override" not in settings(cfg.text)
    assert items(cfg, "rewritten")["device_model"].new is None


def test_other_xend_era_paths_are_flagged_not_changed():
    dom = domain("(bootloader /usr/lib/xen/bin/pypxeboot)", "(linux (kernel ))")
    cfg = xlcfg.to_xlcfg(dom)
    assert settings(cfg.text)["bootloader"] == '"/usr/lib/xen/bin/pypxeboot"'
    assert "bootloader" in items(cfg, "flagged")
    assert '# check: bootloader = "/usr/lib/xen/bin/pypxeboot"' in cfg.text
    hvm = domain("", "(hvm (loader /usr/lib/xen/boot/ovmf.bin))")
    cfg = xlcfg.to_xlcfg(hvm)
    assert settings(cfg.text)["firmware"] == '"/usr/lib/xen/boot/ovmf.bin"'
    assert "firmware" in items(cfg, "flagged")


def test_written_paths_are_listed_for_the_host_check():
    dom = sxpr.domain_from_sxpr(sxp.loads(
        "(domain (name p) (memory 64) (image (linux (kernel /boot/k) (ramdisk /boot/r)))"
        " (device (vbd (uname phy:/dev/vg/p) (dev xvda) (mode w)))"
        " (device (vbd (uname file:/srv/p.img) (dev xvdb) (mode w)))"
        " (device (vbd (uname drbd:res0) (dev xvdc) (mode w)))"
        " (device (tap2 (uname 'tap:remus:b:9000|aio:/dev/vg/r') (dev xvdd) (mode w))))")[0])
    paths = xlcfg.to_xlcfg(dom).paths
    assert paths == [("file", "kernel", "/boot/k"), ("file", "ramdisk", "/boot/r"),
                     ("disk", "disk[xvda]", "/dev/vg/p"), ("disk", "disk[xvdb]", "/srv/p.img"),
                     ("disk", "disk[xvdd]", "/dev/vg/r")]
    # with a bootloader, kernel and ramdisk are paths inside the guest
    dom.bootloader = "pygrub"
    assert [k for _, k, _ in xlcfg.to_xlcfg(dom).paths][:1] == ["bootloader"]


def test_bootloader_lookup_follows_xl():
    assert hostpaths.candidates("bootloader", "pygrub") == [
        "/usr/lib/xen-4.17/bin/pygrub", "PATH:pygrub"]
    assert hostpaths.candidates("file", "/boot/k") == ["/boot/k"]


# ---------------------------------------------------------------- item 2

def test_pool_name():
    assert settings(xlcfg.to_xlcfg(domain("(pool_name web)")).text)["pool"] == '"web"'
    cfg = xlcfg.to_xlcfg(domain("(pool_name Pool-0)"))
    assert "pool" not in settings(cfg.text) and not cfg.untranslated
    assert libxl_json.domain_to_libxl(domain("(pool_name web)"))["c_info"]["pool_name"] == "web"


@pytest.mark.parametrize("n,written", [(0, None), (1, '"always_emulate"'), (2, '"native"')])
def test_tsc_mode(n, written):
    cfg = xlcfg.to_xlcfg(domain("", f"(linux (kernel /k) (tsc_mode {n}))"))
    assert settings(cfg.text).get("tsc_mode") == written
    assert not cfg.untranslated


def test_tsc_mode_3_was_removed_from_xen():
    cfg = xlcfg.to_xlcfg(domain("", "(linux (kernel /k) (tsc_mode 3))"))
    assert "tsc_mode" not in settings(cfg.text)
    assert "removed" in dict(cfg.untranslated)["tsc_mode"]


def test_xend_defaults_are_not_reported():
    dom = domain("(on_xend_start ignore) (on_xend_stop ignore) (features ) "
                 "(online_vcpus 1) (pool_name Pool-0)",
                 "(linux (kernel /k) (superpages 0) (videoram 4) (pci ()) (nomigrate 0) "
                 "(tsc_mode 0) (notes (GUEST_OS linux)))")
    cfg = xlcfg.to_xlcfg(dom)
    assert cfg.untranslated == [] and cfg.items == []
    assert {k for k, _ in cfg.omitted} >= {
        "on_xend_start", "on_xend_stop", "online_vcpus", "image.superpages",
        "image.videoram", "image.pci", "image.nomigrate", "tsc_mode", "image.notes",
        "pool_name"}
    assert "untranslated" not in cfg.text


def test_values_that_differ_from_the_default_are_reported():
    dom = domain("(on_xend_start start)", "(linux (kernel /k) (nomigrate 1) (superpages 1))")
    keys = dict(xlcfg.to_xlcfg(dom).untranslated)
    assert "/etc/xen/auto" in keys["on_xend_start"]
    assert "Remus" in keys["image.nomigrate"]
    assert "image.superpages" in keys


def test_unknown_keys_and_device_classes_are_named():
    dom = domain("(frobnicate 1) (device (vtpm (backend 0) (instance 1))) "
                 "(device (vscsi (dev (p-dev 0:0:0:0) (v-dev 0:0:0:0)))) "
                 "(device (weird (x 1)))")
    keys = dict(xlcfg.to_xlcfg(dom).untranslated)
    assert keys["frobnicate"] == DEFAULT_REASON == "not recognised (see xl.cfg(5))"
    assert "vtpm=" in keys["device vtpm"] and "xen-vtpm(7)" in keys["device vtpm"]
    assert "no PV SCSI" in keys["device vscsi"]
    assert "device weird" in keys and "device" not in keys


def test_ioports_irqs_cpuid_and_hvm_flags():
    dom = sxpr.domain_from_sxpr(sxp.loads(
        "(domain (name h) (memory 256)"
        " (cpuid ((1 ((ecx xxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx) (edx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx)))))"
        " (image (hvm (vpt_align 0) (nestedhvm 1) (oos 0) (pci_msitranslate 1)))"
        " (device (ioports (from 0x3f8) (to 0x3ff))) (device (ioports (from 0x2f8) (to 0x2f8)))"
        " (device (irq (irq 5))) (device (pci (dev (domain 0) (bus 1) (slot 0) (func 0)))))")[0])
    cfg = xlcfg.to_xlcfg(dom)
    s = settings(cfg.text)
    assert s["ioports"] == "[ '3f8-3ff', '2f8' ]" and s["irqs"] == "[ 5 ]"
    assert s["cpuid"] == ("[ '1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx,"
                          "edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' ]")
    assert (s["vpt_align"], s["nestedhvm"], s["oos"], s["pci_msitranslate"]) == \
        ("0", "1", "0", "1")
    assert not cfg.untranslated, cfg.untranslated
    j = libxl_json.domain_to_libxl(dom)
    assert j["b_info"]["ioports"] == [{"first": 0x3f8, "number": 8},
                                      {"first": 0x2f8, "number": 1}]
    assert j["pcidevs"][0]["msitranslate"] is True and j["c_info"]["oos"] == "False"
    # and back: sxpr -> model -> sxpr -> model keeps them
    again = sxpr.domain_from_sxpr(sxpr.domain_to_sxpr(dom, form="config"))
    assert (again.ioports, again.irqs, again.cpuid) == (dom.ioports, dom.irqs, dom.cpuid)
    assert again.hvm.vpt_align is False and again.hvm.nestedhvm is True


def test_libxl_json_reads_the_new_fields():
    dom = domain("(pool_name web)", "(hvm (vpt_align 0) (nestedhvm 1) (tsc_mode 2))")
    dom.ioports, dom.irqs = ["3f8-3ff"], [7]
    back = libxl_json.domain_from_libxl(libxl_json.domain_to_libxl(dom))
    assert (back.pool, back.tsc_mode, back.ioports, back.irqs) == ("web", "native",
                                                                   ["3f8-3ff"], [7])
    assert back.hvm.vpt_align is False and back.hvm.nestedhvm is True


def test_pv_image_localtime_is_xls_localtime():
    assert settings(xlcfg.to_xlcfg(domain("", "(linux (kernel /k) (localtime 1))")).text)[
        "localtime"] == "1"


def test_pci_defaults_without_devices_change_nothing():
    cfg = xlcfg.to_xlcfg(domain("", "(hvm (pci_msitranslate 1) (pci_power_mgmt 0))"))
    assert "pci_msitranslate" not in settings(cfg.text) and not cfg.untranslated
    assert xlpolicy.pci_defaults(domain("", "(hvm (pci_msitranslate 1))")) == {}


# ---------------------------------------------------------------- item 4

def test_block_remus_disk_carries_what_the_backup_needs():
    dom = sxpr.domain_from_sxpr(sxp.loads(
        "(domain (name r) (memory 128) (image (linux (kernel /k)))"
        " (device (tap2 (uname 'tap:remus:backup:9000|aio:/dev/vg0/r') (dev xvda) (mode w))))")[0])
    text = xlcfg.to_xlcfg(dom).text
    assert "script=block-remus" in settings(text)["disk"]
    comment = "\n".join(l for l in text.splitlines() if l.startswith("#"))
    assert comment.startswith("# disk xvda: remus disk replicated to backup:9000")
    flat = " ".join(comment.replace("#", " ").split())
    assert "the backup host backup needs block-remus in /etc/xen/scripts" in flat
    assert "/dev/vg0/r" in flat and "TCP port 9000" in flat
    assert not re.search(r"\.md\b|§", flat)
    plain = xlcfg.to_xlcfg(dom, remus="plain").text
    assert "NOT replicated" in " ".join(plain.replace("#", " ").split())


def test_a_hostile_remus_host_stays_in_the_comment():
    dom = sxpr.domain_from_sxpr(sxp.loads(
        "(domain (name r) (memory 128) (image (linux (kernel /k)))"
        " (device (tap2 (uname 'tap:remus:b\u2028bootloader=x:9000|aio:/r') (dev xvda) (mode w))))")[0])
    for line in xlcfg.to_xlcfg(dom).text.split("\n"):
        assert not line.startswith("bootloader"), line
