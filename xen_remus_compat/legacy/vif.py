"""``xen.remus.vif`` (legacy-api.md section 4).

Fixed (section 15): ``parse`` names the device as xl does, ``vif<domid>.<devid>``
or the configured ``vifname``, when the props carry them; the legacy list
index naming comes back with ``XEN_REMUS_COMPAT_QUIRKS=vif_index_naming``.

Added (section 15, HVM): an emulated NIC of an HVM domain also has the tap
its device model uses; ``vm.getvifs`` sets ``emudev`` to xl's name for it
(:func:`emu_name`), which ``device.BufferedNIC`` buffers too.
"""
from __future__ import annotations

from .. import quirks
from . import util


class VIF(object):
    def __init__(self, **props):
        self.dev = "unknown"            # before the props: VIF(dev='x') keeps 'x'
        self.__dict__.update(props)
        if "mac" in props:
            self.mac = util.canonifymac(props["mac"])

    def __str__(self):
        return self.mac


def parse(props, domid, index):
    """A VIF from xend-shaped props; ``dev`` is the host-side interface name."""
    vif = VIF(**props)
    if quirks.get().vif_index_naming:
        vif.dev = "vif%d.%d" % (domid, index)
        return vif
    vifname = props.get("vifname")
    if vifname:
        vif.dev = vifname
        return vif
    devid = props.get("devid", index)
    vif.dev = "vif%d.%d" % (int(domid), int(devid))
    return vif


#: libxl's suffix of the tap an HVM guest's emulated NIC uses (TAP_DEVICE_SUFFIX)
EMU_SUFFIX = "-emu"


def emu_name(vif):
    """xl's name of the emulated NIC's tap: ``<vif name>-emu``, so
    ``vif<domid>.<devid>-emu``, or ``<vifname>-emu`` (libxl_dm.c)."""
    return vif.dev + EMU_SUFFIX
