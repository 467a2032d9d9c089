"""``convert --to-pvh`` (issue 10, item 5): what becomes PVH, what is refused."""
import pytest

from xen_remus_compat import errors, sxp
from xen_remus_compat.config.formats import sxpr
from xen_remus_compat.migrate import pvh


def dom(text):
    return sxpr.domain_from_sxpr(sxp.loads(text)[0], source="t")


def test_pv_with_a_modern_kernel_keeps_direct_boot():
    d = dom("(domain (name a) (memory 256) (image (linux (kernel /boot/vmlinuz-6.1.0-13-amd64)"
            " (ramdisk /boot/initrd.img-6.1.0-13-amd64) (args 'root=/dev/xvda1 ro'))))")
    r = pvh.to_pvh(d)
    assert r.domain.type == "pvh" and r.domain.kernel == "/boot/vmlinuz-6.1.0-13-amd64"
    assert r.domain.ramdisk and r.domain.cmdline == "root=/dev/xvda1 ro"
    assert d.type == "pv"                          # the input is not changed
    assert any("must support PVH" in n for n in r.notes)


@pytest.mark.parametrize("boot", ["/usr/lib/xen-4.1/bin/pygrub", "/usr/bin/pygrub", "pygrub"])
def test_pygrub_becomes_grub_for_pvh(boot):
    r = pvh.to_pvh(dom(f"(domain (name a) (memory 256) (bootloader {boot}) (image (linux)))"))
    assert r.domain.bootloader is None and r.domain.kernel == pvh.PVGRUB2_PVH
    assert any("grub-xen-bin" in n for n in r.notes)


def test_pv_grub_kernel_becomes_grub_for_pvh():
    r = pvh.to_pvh(dom("(domain (name a) (memory 256) (image (linux "
                       "(kernel /usr/lib/xen/boot/pv-grub-x86_64.gz))))"))
    assert r.domain.kernel == pvh.PVGRUB2_PVH


@pytest.mark.parametrize("kernel,version", [("/boot/vmlinuz-2.6.18-xen", "2.6"),
                                            ("/boot/vmlinuz-3.2.0-4-amd64", "3.2"),
                                            ("/boot/vmlinuz-4.9.0-8-amd64", "4.9")])
def test_a_kernel_older_than_pvh_is_refused(kernel, version):
    with pytest.raises(errors.UntranslatableError) as e:
        pvh.to_pvh(dom(f"(domain (name old) (memory 256) (image (linux (kernel {kernel}))))"),
                   source="cfg.sxp")
    assert f"Linux {version}" in str(e.value) and "'old'" in str(e.value)
    assert str(e.value).startswith("cfg.sxp: ")
    assert e.value.exit_status == 1


def test_hvm_linux_boots_through_grub_and_loses_its_device_model():
    d = dom("(domain (name h) (memory 512) (image (hvm (kernel /usr/lib/xen/boot/hvmloader)"
            " (device_model /usr/lib/xen/bin/qemu-dm) (acpi 1) (apic 1) (vnc 1)))"
            " (device (vif (mac 00:16:3e:00:00:01) (type ioemu) (model e1000)))"
            " (device (vbd (uname phy:/dev/vg/h) (dev ioemu:hda) (mode w))))")
    r = pvh.to_pvh(d)
    assert r.domain.type == "pvh" and r.domain.hvm is None
    assert r.domain.kernel == pvh.PVGRUB2_PVH
    assert r.domain.nics[0].type is None and r.domain.nics[0].model is None
    assert r.domain.vfbs == []


@pytest.mark.parametrize("extra,why", [
    ("(viridian 1)", "Windows"), ("(usb 1)", "USB"), ("(soundhw sb16)", "sound"),
])
def test_hvm_features_that_need_a_device_model_are_refused(extra, why):
    d = dom(f"(domain (name w) (memory 512) (image (hvm (kernel /usr/lib/xen/boot/hvmloader) {extra})))")
    with pytest.raises(errors.UntranslatableError, match=why):
        pvh.to_pvh(d)


def test_cdrom_and_pci_passthrough_are_refused():
    with pytest.raises(errors.UntranslatableError, match="CD-ROM"):
        pvh.to_pvh(dom("(domain (name c) (memory 256) (image (linux (kernel /boot/vmlinuz-6.1)))"
                       " (device (vbd (uname phy:/dev/sr0) (dev hdc:cdrom) (mode r))))"))
    with pytest.raises(errors.UntranslatableError, match="PCI passthrough"):
        pvh.to_pvh(dom("(domain (name p) (memory 256) (image (linux (kernel /boot/vmlinuz-6.1)))"
                       " (device (pci (dev (domain 0x0000) (bus 0x00) (slot 0x1b) (func 0x0)))))"))


def test_no_kernel_no_bootloader_is_refused():
    with pytest.raises(errors.UntranslatableError, match="no kernel"):
        pvh.to_pvh(dom("(domain (name n) (memory 256) (image (linux)))"))


def test_pvh_is_left_alone():
    d = dom("(domain (name v) (memory 256) (image (linux (kernel /boot/vmlinuz-6.1) (pvh 1))))")
    r = pvh.to_pvh(d)
    assert r.domain is d and r.notes == []


def test_convert_to_pvh_command_writes_and_reports(tmp_path):
    import io
    from xen_remus_compat.cli import main
    src = tmp_path / "a.sxp"
    src.write_text("(domain (name a) (memory 256) (bootloader /usr/bin/pygrub) (image (linux)))\n")
    old = tmp_path / "old.sxp"
    old.write_text("(domain (name b) (memory 256) (image (linux (kernel /boot/vmlinuz-3.2.0-4-amd64))))\n")
    out, err = io.StringIO(), io.StringIO()
    rc = main.main(["convert", "--to-pvh", str(src), "-o", str(tmp_path / "o")],
                   stdout=out, stderr=err)
    assert rc == 0, err.getvalue()
    text = (tmp_path / "o" / "a.cfg").read_text()
    assert 'type = "pvh"' in text and pvh.PVGRUB2_PVH in text and "bootloader" not in text
    assert "  PVH:" in out.getvalue() and "grub-xen-bin" in out.getvalue()
    # one domain that cannot be PVH: nothing at all is written
    out, err = io.StringIO(), io.StringIO()
    rc = main.main(["convert", "--to-pvh", str(src), str(old), "-o", str(tmp_path / "o2")],
                   stdout=out, stderr=err)
    assert rc == 1 and "Linux 3.2" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").iterdir())
