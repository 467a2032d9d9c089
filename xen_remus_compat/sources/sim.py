"""The ``sim`` domain source: the simulated guest of ``lowlevel/simxen``.

The domain is the one the ``SIMXEN_*`` environment describes (see
:class:`xen_remus_compat.sim.simxen.SimDomain`): a PV, PVH or HVM guest
with that name, domid, memory and vcpus.  Devices to protect are optional, so the same
engine paths as on a real host can be exercised:

* ``XEN_REMUS_COMPAT_SIM_VIFS``: comma-separated host interface names
  (e.g. a veth in a test namespace), one vif each;
* ``XEN_REMUS_COMPAT_SIM_DISKS``: ``;``-separated ``uname,dev,mode``
  triples (e.g. ``tap:remus:backup:9000|aio:/img,xvda,w``).
"""
from __future__ import annotations

import os
import uuid as _uuid
from typing import Mapping, Optional

from .. import errors
from ..config.model import Domain, Nic
from .base import DomainRecord, resolve

VIFS_ENV = "XEN_REMUS_COMPAT_SIM_VIFS"
#: simxen's guest types as libxl's c_info.type
LIBXL_TYPES = {"pv": "pv", "pvh": "pvh", "hvm": "hvm", "pvhvm": "hvm"}
DISKS_ENV = "XEN_REMUS_COMPAT_SIM_DISKS"


def sim_domain(env: Optional[Mapping[str, str]] = None) -> Domain:
    from ..sim.simxen import SimDomain
    from ..config.specs import diskspec
    env = os.environ if env is None else env
    sd = SimDomain.from_env(env)
    mib = max(1, sd.pages * 4096 // (1 << 20))
    dom = Domain(name=sd.name, domid=sd.domid, type=LIBXL_TYPES[sd.type],
                 uuid=str(_uuid.uuid5(_uuid.NAMESPACE_OID, f"simxen:{sd.name}:{sd.seed}")),
                 memory=mib, maxmem=mib, vcpus=sd.vcpus,
                 kernel="/usr/lib/xen-remus-compat/simxen-kernel",
                 cmdline="simulated guest", on_reboot="restart",
                 state="-b----")
    for i, name in enumerate(x for x in env.get(VIFS_ENV, "").split(",") if x):
        dom.nics.append(Nic(mac="00:16:3e:00:00:%02x" % (i + 1), bridge="xenbr0",
                            vifname=name, devid=i, type="vif"))
    for item in (x for x in env.get(DISKS_ENV, "").split(";") if x.strip()):
        try:
            uname, dev, mode = item.rsplit(",", 2)
        except ValueError:
            raise errors.InputError(f"{DISKS_ENV}: expected uname,dev,mode in {item!r}")
        cls = "tap2" if uname.startswith(("tap:remus:", "tap2:", "tap:tapdisk:remus:")) else "vbd"
        dom.disks.append(diskspec.parse_uname(uname, dev, mode, device_class=cls))
    return dom


class SimSource:
    name = "sim"

    def records(self):
        dom = sim_domain()
        return [DomainRecord(dom, dom.domid, state=dom.state, source="sim")]

    def open_domain(self, ref):
        return resolve(ref, self.records(), "the simulated Xen (simxen)")
