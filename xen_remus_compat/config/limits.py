"""Values beyond what Xen 4.17 can run are input errors, found while reading.

Why here and early: a 74-byte sxpr saying ``(vcpus 100000000)`` made the
converters build per-vcpu bitmaps and lists of that size (gigabytes, tens of
seconds).  Every reader checks a domain's sizes against Xen's own limits
before anything is derived from them.

The limits (x86, Xen 4.17):

* vCPUs: ``HVM_MAX_VCPUS`` = 128 for HVM and PVH guests
  (public/hvm/hvm_info_table.h); 8192 for PV guests (the hypervisor's
  ``MAX_VIRT_CPUS`` on x86);
* memory: 16 TiB, the most RAM a Xen 4.17 x86 host built without
  ``CONFIG_BIGMEM`` (Debian's) can address;
* devices: 4096 of one class per domain, far past what a xenstore-based
  frontend attaches (and what any real configuration has).
"""
from __future__ import annotations

from typing import Callable, Optional

from .. import errors
from .model import Domain

MAX_VCPUS = {"pv": 8192, "hvm": 128, "pvh": 128}
MAX_MEMORY_MIB = 16 * 1024 * 1024
MAX_DEVICES = 4096

Fail = Callable[[str], errors.InputError]


def _default_fail(message: str) -> errors.InputError:
    return errors.ConfigError(message)


def check_vcpus(value: Optional[int], guest_type: str = "pv", *, key: str = "vcpus",
                fail: Fail = _default_fail) -> None:
    if value is None:
        return
    limit = MAX_VCPUS.get(guest_type, MAX_VCPUS["pv"])
    if value > limit:
        raise fail(f"{key} {value} is more than Xen supports for a "
                   f"{guest_type.upper()} guest ({limit})")


def check_memory(value: Optional[int], *, key: str = "memory",
                 fail: Fail = _default_fail) -> None:
    if value is not None and value > MAX_MEMORY_MIB:
        raise fail(f"{key} {value} MiB is more than a Xen 4.17 host can address "
                   f"({MAX_MEMORY_MIB} MiB, 16 TiB)")


def check_domain(dom: Domain, *, fail: Fail = _default_fail) -> None:
    """Every size of ``dom`` within Xen's limits, else ``fail(message)``."""
    check_vcpus(dom.vcpus, dom.type, fail=fail)
    check_vcpus(dom.vcpus_online, dom.type, key="online vcpus", fail=fail)
    check_memory(dom.memory, fail=fail)
    check_memory(dom.maxmem, key="maxmem", fail=fail)
    check_memory(dom.shadow_memory, key="shadow_memory", fail=fail)
    for name, items in (("disks", dom.disks), ("vifs", dom.nics), ("vfbs", dom.vfbs),
                        ("pci devices", dom.pci)):
        if len(items) > MAX_DEVICES:
            raise fail(f"{len(items)} {name}: more than {MAX_DEVICES} of one kind")
