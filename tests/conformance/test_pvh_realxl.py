"""``convert --to-pvh`` output read back by Debian's real ``xl -N create``
(issue 10, item 5): it must be a PVH domain with the boot and devices we
claim, for PV and HVM sources."""
import pytest

from tests.conftest import tier_unavailable
from tests.support import realxl
from xen_remus_compat import sxp
from xen_remus_compat.config.formats import sxpr, xlcfg
from xen_remus_compat.migrate import pvh


@pytest.fixture(scope="module", autouse=True)
def real_xl():
    ok, why = realxl.available()
    if not ok:
        tier_unavailable("conformance", why)


SOURCES = {
    "pv-pygrub": "(domain (name pvg) (memory 256) (vcpus 2) (bootloader /usr/lib/xen-4.1/bin/pygrub)"
                 " (image (linux)) (device (vif (mac 00:16:3e:00:00:01) (bridge xenbr0)))"
                 " (device (vbd (uname phy:/dev/vg/pvg) (dev xvda) (mode w))))",
    "pv-kernel": "(domain (name pvk) (memory 256) (image (linux (kernel /boot/vmlinuz-6.1.0-13-amd64)"
                 " (ramdisk /boot/initrd.img-6.1.0-13-amd64) (args 'root=/dev/xvda1 ro console=hvc0')))"
                 " (device (vbd (uname tap:remus:backup:9000|aio:/img/pvk.img) (dev xvda) (mode w))))",
    "hvm-linux": "(domain (name hl) (memory 512) (image (hvm (kernel /usr/lib/xen/boot/hvmloader)"
                 " (device_model /usr/lib/xen/bin/qemu-dm) (acpi 1) (vnc 1)))"
                 " (device (vif (mac 00:16:3e:00:00:02) (type ioemu) (model e1000)))"
                 " (device (vbd (uname phy:/dev/vg/hl) (dev ioemu:hda) (mode w))))",
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_real_xl_reads_the_pvh_config(name):
    dom = sxpr.domain_from_sxpr(sxp.loads(SOURCES[name])[0], source=name)
    new = pvh.to_pvh(dom, source=name).domain
    cfg = xlcfg.to_xlcfg(new)
    out = realxl.xl_create_json(cfg.text)
    assert out["c_info"]["type"] == "pvh", cfg.text
    assert "type.pvh" in out["b_info"], out["b_info"]
    assert out["b_info"].get("kernel") == new.kernel
    assert not out["b_info"].get("bootloader")
    assert "device_model_version" not in out["b_info"]
    assert len(out.get("disks", [])) == len(new.disks)
    for nic in out.get("nics", []):
        assert nic.get("nictype") in (None, "vif"), nic
