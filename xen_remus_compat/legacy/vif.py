"""``xen.remus.vif`` (legacy-api.md section 4).

Fixed (section 15): ``parse`` names the device as xl does, ``vif<domid>.<devid>``
or the configured ``vifname``, when the props carry them; the legacy list
index naming comes back with ``XEN_REMUS_COMPAT_QUIRKS=vif_index_naming``.
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
