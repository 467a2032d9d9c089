"""The domain model: plain dataclasses, no I/O.

Every format module (sxpr, libxl JSON, xl.cfg, libvirt XML) converts to and
from these classes.  Units are fixed here so converters never guess:

* memory sizes are **MiB** (xend's unit); libxl's KiB is converted at the
  edge (``libxl_json.py``);
* booleans that a format may leave unset are ``None`` ("not given"), so a
  round trip does not invent defaults;
* anything a format carries that the model does not name is kept verbatim in
  ``extra`` (an ordered list of ``(key, value)`` pairs, value in the source
  format's own shape: an sxpr list, a JSON value, a string), so nothing is
  silently dropped and converters can report it as untranslated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

Extra = List[Tuple[str, Any]]

DOMAIN_TYPES = ("pv", "hvm", "pvh")
SHUTDOWN_ACTIONS = ("destroy", "restart", "restart_rename", "preserve",
                    "coredump_destroy", "coredump_restart", "soft_reset",
                    "rename-restart", "coredump-destroy", "coredump-restart")


@dataclass
class RemusPeer:
    """The replication peer of a legacy ``tap:remus:HOST:PORT|...`` disk."""

    host: str
    port: int
    inner_driver: str = "aio"   # driver under the remus layer (aio, vhd, ...)
    inner_path: str = ""        # the underlying image or device


@dataclass
class Disk:
    """One virtual block device.

    The xl-side fields mirror what libxlutil's ``xlu_disk_parse`` fills into
    ``libxl_device_disk`` (xl-side.md section 1); the legacy fields keep what
    xend knew, so the legacy view can be rebuilt.
    """

    vdev: str = ""
    target: Optional[str] = None          # libxl pdev_path
    format: Optional[str] = None          # raw qcow qcow2 vhd qed empty
    readwrite: bool = True
    is_cdrom: bool = False
    removable: bool = False
    backend: Optional[str] = None         # phy qdisk tap standalone
    backend_domname: Optional[str] = None
    backend_domid: Optional[int] = None
    script: Optional[str] = None
    direct_io_safe: Optional[bool] = None
    discard_enable: Optional[bool] = None
    specification: Optional[str] = None
    colo_enable: Optional[bool] = None
    colo_host: Optional[str] = None
    colo_port: Optional[int] = None
    colo_export: Optional[str] = None
    active_disk: Optional[str] = None
    hidden_disk: Optional[str] = None
    trusted: Optional[bool] = None
    # legacy (xend) view
    uname: Optional[str] = None           # e.g. "tap:remus:backup:9000|aio:/img"
    device_class: str = "vbd"             # vbd, tap, tap2 (xend controller)
    mode: Optional[str] = None            # r, w, w! as xend had it
    shareable: bool = False               # xend mode "w!"
    bootable: Optional[int] = None
    uuid: Optional[str] = None
    protocol: Optional[str] = None
    remus: Optional[RemusPeer] = None
    # set when a converter synthesised the disk, e.g. "image-cdrom" for the
    # hdc CD-ROM xend derived from an HVM ``(image (hvm (cdrom PATH)))``
    origin: Optional[str] = None
    extra: Extra = field(default_factory=list)


@dataclass
class Nic:
    """One virtual network interface (xend vif / libxl device_nic)."""

    mac: Optional[str] = None             # canonical 00:16:3e:01:02:03
    bridge: Optional[str] = None
    ip: Optional[str] = None              # space separated when several
    script: Optional[str] = None
    vifname: Optional[str] = None         # libxl ifname
    rate: Optional[str] = None            # e.g. "10240KB/s" or "10MB/s@20ms"
    model: Optional[str] = None           # e1000, rtl8139, ...
    type: Optional[str] = None            # vif / ioemu (libxl nictype), netfront
    backend: Optional[str] = None         # backend domain name
    backend_domid: Optional[int] = None
    devid: Optional[int] = None
    mtu: Optional[int] = None
    gatewaydev: Optional[str] = None
    uuid: Optional[str] = None
    accel: Optional[str] = None
    extra: Extra = field(default_factory=list)


@dataclass
class Vfb:
    """A virtual framebuffer (PV vfb or the HVM VNC/SDL console)."""

    type: str = "vnc"                     # vnc or sdl
    vnc: Optional[bool] = None
    vnclisten: Optional[str] = None
    vncdisplay: Optional[int] = None
    vncunused: Optional[bool] = None
    vncpasswd: Optional[str] = None
    keymap: Optional[str] = None
    display: Optional[str] = None
    xauthority: Optional[str] = None
    opengl: Optional[bool] = None
    sdl: Optional[bool] = None            # SDL enabled (xend sdl=1, libxl sdl.enable)
    # where xend had it: "image" (keys inside ``(image ...)``) or None for a
    # ``(device (vfb ...))`` / libxl vfbs[] entry
    origin: Optional[str] = None
    extra: Extra = field(default_factory=list)


@dataclass
class PciDev:
    """A passed-through PCI function, ``DDDD:BB:SS.F`` plus options."""

    domain: int = 0
    bus: int = 0
    slot: int = 0
    func: int = 0
    options: List[Tuple[str, str]] = field(default_factory=list)
    extra: Extra = field(default_factory=list)

    @property
    def bdf(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.func:x}"


@dataclass
class HvmSettings:
    """HVM-only settings (xend ``image (hvm ...)``, libxl ``type.hvm``)."""

    loader: Optional[str] = None          # firmware / hvmloader
    device_model: Optional[str] = None
    boot: Optional[str] = None            # "c", "d", "cd", ...
    acpi: Optional[bool] = None
    apic: Optional[bool] = None
    pae: Optional[bool] = None
    hap: Optional[bool] = None
    hpet: Optional[bool] = None
    localtime: Optional[bool] = None
    rtc_timeoffset: Optional[int] = None
    timer_mode: Optional[int] = None
    viridian: Optional[bool] = None
    nographic: Optional[bool] = None
    stdvga: Optional[bool] = None
    videoram: Optional[int] = None        # MiB
    usb: Optional[bool] = None
    usbdevice: List[str] = field(default_factory=list)
    soundhw: Optional[str] = None
    cdrom: Optional[str] = None           # xend image-level cdrom path
    serial: List[str] = field(default_factory=list)
    parallel: List[str] = field(default_factory=list)
    monitor: Optional[bool] = None
    xen_platform_pci: Optional[bool] = None
    vpt_align: Optional[bool] = None      # xl vpt_align (default on)
    nestedhvm: Optional[bool] = None      # xl nestedhvm (default off)
    extra: Extra = field(default_factory=list)


@dataclass
class Domain:
    """A domain's configuration plus the runtime facts a source may know."""

    name: str = ""
    uuid: Optional[str] = None            # canonical dashed lower case
    domid: Optional[int] = None
    type: str = "pv"                      # pv, hvm, pvh
    memory: Optional[int] = None          # MiB (target)
    maxmem: Optional[int] = None          # MiB
    shadow_memory: Optional[int] = None   # MiB
    vcpus: Optional[int] = None           # max vcpus
    vcpus_online: Optional[int] = None    # xend vcpu_avail popcount / libxl avail
    vcpu_avail: Optional[int] = None      # bitmap as xend had it
    cpus: Optional[str] = None            # hard affinity, xl syntax ("0-3,5")
    # per-vcpu hard affinity (xl list form ["2", "3-8"]) when vcpus differ;
    # empty when ``cpus`` applies to all vcpus or there is no pinning
    vcpu_affinity: List[str] = field(default_factory=list)
    cpu_weight: Optional[int] = None
    cpu_cap: Optional[int] = None
    kernel: Optional[str] = None
    ramdisk: Optional[str] = None
    cmdline: Optional[str] = None         # full command line (xend image args)
    root: Optional[str] = None
    extra_args: Optional[str] = None      # xl "extra"
    bootloader: Optional[str] = None
    bootloader_args: Optional[str] = None
    on_poweroff: Optional[str] = None
    on_reboot: Optional[str] = None
    on_crash: Optional[str] = None
    localtime: Optional[bool] = None
    description: Optional[str] = None
    pool: Optional[str] = None            # cpupool name (xend pool_name, xl pool)
    # TSC mode by its xl/libxl name: default, always_emulate, native,
    # native_paravirt (xend's integers 0-3, in that order)
    tsc_mode: Optional[str] = None
    # xl.cfg ``cpuid`` in xend syntax, one "LEAF[,SUBLEAF]:REG=BITS,..." each
    cpuid: List[str] = field(default_factory=list)
    ioports: List[str] = field(default_factory=list)   # "3f8-3ff" (hex), xl ioports
    irqs: List[int] = field(default_factory=list)      # xl irqs
    disks: List[Disk] = field(default_factory=list)
    nics: List[Nic] = field(default_factory=list)
    vfbs: List[Vfb] = field(default_factory=list)
    vkb: Optional[bool] = None
    serial: List[str] = field(default_factory=list)
    hvm: Optional[HvmSettings] = None
    pci: List[PciDev] = field(default_factory=list)
    # runtime facts (present when read from a running domain)
    state: Optional[str] = None           # xend "-b----"
    status: Optional[int] = None
    start_time: Optional[float] = None
    cpu_time: Optional[float] = None
    store_mfn: Optional[int] = None
    console_mfn: Optional[int] = None
    # keys not modelled, kept verbatim for reporting and round trips
    extra: Extra = field(default_factory=list)
    image_extra: Extra = field(default_factory=list)

    @property
    def is_hvm(self) -> bool:
        return self.type == "hvm"
