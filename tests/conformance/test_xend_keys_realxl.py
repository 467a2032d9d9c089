"""xend keys xl has an equivalent for, and bookworm paths, through Debian's
real ``xl -N create`` (issue 14 items 1, 2): what we write for them is
accepted by xl 4.17 and builds exactly the libxl JSON we claim (the same
field-by-field rule as test_roundtrip.py), and the xend spellings map to
the xl.cfg(5) ones (tsc_mode 0-3, pool_name, ioports/irq devices, cpuid,
vpt_align, nestedhvm, oos, pci_msitranslate, xend 4.x's PCI ``vdevfn``,
pv-grub -> pvgrub2, pygrub)."""
from __future__ import annotations

import pytest

from tests.conftest import tier_unavailable
from tests.conformance.test_roundtrip import differences
from tests.support import realxl
from tests.support.xendfleet import domain as fleet_domain
from xen_remus_compat import sxp
from xen_remus_compat.config.formats import libxl_json, sxpr, xlcfg

CPUID = ("(cpuid ((1 ((ecx xxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx) "
         "(edx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx))) (4,0 ((eax xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1)))))")

CASES = {
    "pv-pool-tsc-ports": (
        "(domain (name pv1) (memory 256) (pool_name web) " + CPUID +
        " (image (linux (kernel /boot/vmlinuz) (tsc_mode 2) (localtime 1) (oos 0)))"
        " (device (ioports (from 0x3f8) (to 0x3ff))) (device (ioports (from 0x2f8) (to 0x2f8)))"
        " (device (irq (irq 5))) (device (irq (irq 7))))",
        {"c_info": {"pool_name": "web", "oos": "False"},
         "b_info": {"tsc_mode": "native", "irqs": [5, 7],
                    "ioports": [{"first": 1016, "number": 8}, {"first": 760, "number": 1}],
                    "localtime": "True",
                    "cpuid": {"cpuid": [
                        {"leaf": 1, "ecx": "xxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx",
                         "edx": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
                        {"leaf": 4, "subleaf": 0, "eax": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1"}]}}}),
    "hvm-flags-pci": (
        "(domain (name hvm1) (memory 512)"
        " (image (hvm (kernel /usr/lib/xen/boot/hvmloader) (device_model /usr/lib/xen/bin/qemu-dm)"
        " (tsc_mode 1) (vpt_align 0) (nestedhvm 1) (pci_msitranslate 1) (pci_power_mgmt 0)))"
        " (device (pci (dev (domain 0) (bus 1) (slot 0) (func 0) (vdevfn 0x28))"
        " (dev (domain 0) (bus 2) (slot 0) (func 0) (opts (msitranslate 0))))))",
        {"b_info": {"tsc_mode": "always_emulate", "nested_hvm": "True",
                    "type.hvm": {"vpt_align": "False"}},
         "pcidevs": [{"bus": 1, "vdevfn": 0x28, "vfunc_mask": 1, "msitranslate": True},
                     {"bus": 2, "vfunc_mask": 1}]}),
    "pv-grub": (
        "(domain (name pg) (memory 256) (image (linux (kernel "
        "/usr/lib/xen/boot/pv-grub-x86_64.gz) (args '(hd0,0)/boot/grub/menu.lst'))))",
        {"b_info": {"kernel": "/usr/lib/grub-xen/grub-x86_64-xen.bin"}}),
    "pygrub-4.1": (
        "(domain (name py) (memory 256) (bootloader /usr/lib/xen-4.1/bin/pygrub)"
        " (image (linux (kernel ))))",
        {"b_info": {"bootloader": "pygrub"}}),
}


@pytest.fixture(scope="module", autouse=True)
def real_xl():
    ok, reason = realxl.available()
    if not ok:
        tier_unavailable("conformance", reason)


def _subset(expected, got, path=""):
    """Every field of *expected* is in *got* with that value (lists: equal)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), (path, got)
        for key, value in expected.items():
            _subset(value, got.get(key, "<absent>"), f"{path}.{key}")
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        assert isinstance(got, list) and len(got) == len(expected), (path, got)
        for i, (a, b) in enumerate(zip(expected, got)):
            assert a == b, (f"{path}[{i}]", a, b)
    else:
        assert expected == got, (path, expected, got)


@pytest.mark.parametrize("name", sorted(CASES))
def test_xl_accepts_our_spelling_of_xend_keys(name):
    text, expected = CASES[name]
    dom = sxpr.domain_from_sxpr(sxp.loads(text)[0], source=name)
    cfg = xlcfg.to_xlcfg(dom)
    assert not cfg.untranslated, cfg.untranslated
    got = realxl.xl_create_json(cfg.text)
    _subset(expected, got)                        # the values xl.cfg(5) documents
    bad = differences(libxl_json.domain_to_libxl(dom), got)
    assert not bad, "\n".join(f"{p}: ours {o!r}, xl {x!r}" for p, o, x in bad) + \
        "\n--- cfg ---\n" + cfg.text


def test_xl_refuses_what_we_do_not_write():
    """tsc_mode native_paravirt (xend 3) is gone from Xen 4.17: xl's parser
    still knows the name, libxl refuses it at creation, so it is reported,
    not written; the report's reason says so."""
    dom = sxpr.domain_from_sxpr(sxp.loads(
        "(domain (name t3) (memory 64) (image (linux (kernel /k) (tsc_mode 3))))")[0])
    cfg = xlcfg.to_xlcfg(dom)
    assert "tsc_mode" not in realxl.xl_create_json(cfg.text)["b_info"]
    assert "removed" in dict(cfg.untranslated)["tsc_mode"]


@pytest.mark.parametrize("i", range(10))
def test_generated_fleet_domains_are_accepted(i):
    """One of each kind of the generated 500-domain fleet (xm list -l of xend
    4.x: PV, pygrub from Xen 4.1, pv-grub, a remus disk, HVM)."""
    (dom,) = sxpr.domains_from_text(fleet_domain(i), source=f"guest{i}")
    cfg = xlcfg.to_xlcfg(dom)
    got = realxl.xl_create_json(cfg.text)
    bad = differences(libxl_json.domain_to_libxl(dom), got)
    assert not bad, "\n".join(f"{p}: ours {o!r}, xl {x!r}" for p, o, x in bad) + \
        "\n--- cfg ---\n" + cfg.text
