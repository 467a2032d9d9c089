"""A generated xend-era fleet: N domains as ``xm list -l`` of xend 4.x
printed them, for the report-size tests and benchmarks.

Every domain carries what XendConfig 4.3 ``to_sxp``/``image_sxpr`` wrote
for a running domain whatever the admin configured (its ``_defaults`` and
``_platform_sanity_check``): ``(cpu_weight 256) (cpu_cap 0)``, ``(pool_name
Pool-0)``, ``(on_xend_start ignore)``, ``(image (linux ... (superpages 0)
(pci ()) (nomigrate 0) (tsc_mode 0) (notes ...)))``, per-device ``uuid``,
``backend 0``, ``VDI``, and for HVM ``(timer_mode 1) (hpet 0) (vpt_align 1)
(xen_platform_pci 1) (loader .../hvmloader) (device_model .../qemu-dm)``.
The mix of guests (PV kernel, pygrub from Xen 4.1's directory, pv-grub,
HVM, a Remus disk, an odd setting here and there) is deterministic in N.
"""
from __future__ import annotations

import pathlib
from typing import List

_NOTES = ("(notes (HV_START_LOW 18446603336221196288) (FEATURES "
          "'!writable_page_tables|pae_pgdir_above_4gb') (VIRT_BASE "
          "18446744071562067968) (GUEST_OS linux) (XEN_VERSION xen-3.0) "
          "(LOADER generic) (SUSPEND_CANCEL 1) (PAE_MODE yes))")


def _uuid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def _mac(i: int, n: int = 0) -> str:
    return f"00:16:3e:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}:{n:02x}"


def _vif(i: int) -> str:
    return (f"(device (vif (bridge xenbr0) (mac {_mac(i)}) (script "
            f"/etc/xen/scripts/vif-bridge) (uuid {_uuid(i + 70000)}) (backend 0)))")


def _vbd(i: int, uname: str, dev: str, cls: str = "vbd") -> str:
    return (f"(device ({cls} (protocol x86_64-abi) (uuid {_uuid(i + 90000)}) "
            f"(bootable 1) (dev {dev}) (uname '{uname}') (mode w) (backend 0) (VDI )))")


def _console(i: int) -> str:
    return (f"(device (console (protocol vt100) (location 2) "
            f"(uuid {_uuid(i + 50000)})))")


def domain(i: int) -> str:
    """The ``xm list -l`` text of domain number ``i``."""
    kind = i % 10
    name = f"guest{i:04d}"
    top = [f"(domid {i + 1})", "(cpu_weight 256)", "(cpu_cap 0)",
           f"(uuid {_uuid(i)})", "(vcpus 2)", "(vcpu_avail 3)", f"(name {name})",
           "(on_poweroff destroy)", "(on_reboot restart)", "(on_crash restart)",
           "(maxmem 1024)", "(memory 1024)", "(shadow_memory 0)", "(features )",
           "(on_xend_start ignore)", "(on_xend_stop ignore)", "(description )",
           "(pool_name Pool-0)", "(start_time 1357749308.05)",
           "(cpu_time 24.1)", "(online_vcpus 2)", "(status 2)", "(state -b----)",
           "(store_mfn 8836555)", "(console_mfn 8735251)", "(cpus (() ()))"]
    devices = [_vif(i), _console(i)]
    pv_tail = "(superpages 0) (videoram 4) (pci ()) (nomigrate 0) (tsc_mode 0) " + _NOTES
    if kind in (0, 1, 2, 3):            # PV, direct kernel
        top.append(f"(image (linux (kernel /boot/vmlinuz-2.6.32-5-xen-amd64) "
                   f"(ramdisk /boot/initrd.img-2.6.32-5-xen-amd64) "
                   f"(args 'root=/dev/xvda1 ro') {pv_tail}))")
        devices.append(_vbd(i, f"phy:/dev/vg0/{name}-disk", "xvda1:disk"))
    elif kind in (4, 5):                # PV booted by Xen 4.1's pygrub
        top.append("(bootloader /usr/lib/xen-4.1/bin/pygrub) (bootloader_args )")
        top.append(f"(image (linux (kernel ) {pv_tail}))")
        devices.append(_vbd(i, f"phy:/dev/vg0/{name}-disk", "xvda:disk"))
    elif kind == 6:                     # PV booted by pv-grub
        top.append(f"(image (linux (kernel /usr/lib/xen/boot/pv-grub-x86_64.gz) "
                   f"(args '(hd0,0)/boot/grub/menu.lst') {pv_tail}))")
        devices.append(_vbd(i, f"file:/srv/xen/{name}.img", "xvda:disk"))
    elif kind == 7:                     # PV with a Remus disk
        top.append(f"(image (linux (kernel /boot/vmlinuz-3.2.0-4-amd64) "
                   f"(args 'root=/dev/xvda ro') {pv_tail}))")
        devices.append(_vbd(i, f"tap:remus:backup:{9000 + i % 100}|aio:/dev/vg0/{name}",
                            "xvda:disk", "tap2"))
    else:                               # HVM
        tsc = 1 if kind == 9 else 0
        top.append(
            "(image (hvm (kernel ) (superpages 0) (videoram 4) (hpet 0) (stdvga 0) "
            "(loader /usr/lib/xen/boot/hvmloader) (xen_platform_pci 1) "
            "(rtc_timeoffset 0) (pci ()) (hap 1) (localtime 0) (timer_mode 1) "
            "(pci_msitranslate 1) (oos 1) (apic 1) (vpt_align 1) (serial pty) "
            f"(vncunused 1) (boot c) (pae 1) (viridian 0) (acpi 1) (vnc 1) (nographic 0) "
            f"(nomigrate 0) (usb 0) (tsc_mode {tsc}) (guest_os_type default) "
            "(device_model /usr/lib/xen/bin/qemu-dm) (pci_power_mgmt 0) (xauthority "
            "/root/.Xauthority) (isa 0) (notes (SUSPEND_CANCEL 1))))")
        devices.append(_vbd(i, f"phy:/dev/vg0/{name}-disk", "hda:disk"))
        devices.append(f"(device (vfb (vncunused 1) (uuid {_uuid(i + 60000)}) "
                       "(location 127.0.0.1:5901) (type vnc)))")
    return "(domain\n    " + "\n    ".join(top + devices) + "\n)\n"


def write(directory: pathlib.Path, count: int) -> List[pathlib.Path]:
    """``count`` files, one domain each (``guestNNNN.sxp``)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = directory / f"guest{i:04d}.sxp"
        path.write_text(domain(i))
        out.append(path)
    return out
