"""config/specs/pci.py and config/common.py: the xend sxpr reader and the
libxl JSON reader put the same device into the same model fields.

Expected values come from xend (server/pciif.py, XendConstants.py: 4.x
``vdevfn`` = ``slot << 3 | func`` with AUTO_PHP_SLOT 0x100; 3.4 ``vslot``
with AUTO_PHP_SLOT = NR_PCI_DEV = 0x20) and libxl (``libxl_device_pci``
``vdevfn``, xl-pci-configuration(5) ``vslot``).
"""
import pytest

from xen_remus_compat import errors, sxp
from xen_remus_compat.config.formats import libxl_json, sxpr
from xen_remus_compat.config.specs import pci as pcispec


def _sxpr_pci(dev_keys: str):
    text = ("(domain (name p) (memory 64) (image (linux (kernel /k)))"
            f" (device (pci (backend 0) (dev (domain 0x0000) (bus 0x01) (slot 0x13)"
            f" (func 0x0) {dev_keys}))))")
    (dom,) = sxpr.domains_from_text(text, source="pci.sxp")
    return dom


def _json_pci(**fields):
    cfg = {"c_info": {"type": "pv", "name": "p"}, "b_info": {},
           "pcidevs": [dict({"bus": 1, "dev": 0x13}, **fields)]}
    return libxl_json.domain_from_libxl(cfg, source="pci.json")


def test_xend_vdevfn_is_the_vslot_libxl_vdevfn_gives():
    """xend 4.x ``(vdevfn 0x28)``: virtual slot 5, function 0."""
    from_sxpr = _sxpr_pci("(vdevfn 0x28) (opts (msitranslate 1))")
    from_json = _json_pci(vdevfn=0x28, msitranslate=True)
    (a,), (b,) = from_sxpr.pci, from_json.pci
    assert ("vslot", "0x05") in a.options and ("vslot", "0x05") in b.options
    assert (a.bdf, sorted(a.options), a.extra) == (b.bdf, sorted(b.options), [])


@pytest.mark.parametrize("keys", ["(vdevfn 0x100)", "(vslot 0x20)"])
def test_auto_php_slot_requests_no_slot(keys):
    (pci,) = _sxpr_pci(keys).pci
    assert pci.options == [] and pci.extra == []
    (pci,) = _json_pci(vdevfn=0x100).pci
    assert pci.options == []


def test_xend_34_vslot():
    (pci,) = _sxpr_pci("(vslot 0x07)").pci
    assert pci.options == [("vslot", "0x07")]


def test_vdevfn_round_trips_through_sxpr_and_json():
    dom = _sxpr_pci("(vdevfn 0x28)")
    out = sxpr.domain_to_sxpr(dom, form="config")
    (device,) = [d for d in out if d[0] == "device" and d[1][0] == "pci"]
    dev = sxp.child(device[1], "dev")
    assert sxp.child_value(dev, "vdevfn") == "0x28" and sxp.child(dev, "opts") is None
    assert sxpr.domain_from_sxpr(out).pci == dom.pci
    assert libxl_json.domain_to_libxl(dom)["pcidevs"][0]["vdevfn"] == 0x28


def test_bdf_out_of_range_is_refused_by_both_readers():
    with pytest.raises(errors.ConfigError, match="slot: out of range"):
        sxpr.domain_from_sxpr(["domain", ["name", "p"], ["device", [
            "pci", ["dev", ["bus", "0x01"], ["slot", "0x20"], ["func", "0"]]]]])
    with pytest.raises(errors.ConfigError, match=r"pcidevs\[0\]\.dev: out of range"):
        _json_pci(dev=0x20)


def test_options_from_libxl_table():
    assert pcispec.options_from_libxl("permissive", True) == [("permissive", "1")]
    assert pcispec.options_from_libxl("seize", False) == []
    assert pcispec.options_from_libxl("rdm_policy", "invalid") == []
    assert pcispec.options_from_libxl("rdm_policy", "strict") == [("rdm_policy", "strict")]
    assert pcispec.options_from_libxl("vfunc_mask", 1) == []
    assert pcispec.options_from_libxl("vfunc_mask", 3) is None
    assert pcispec.options_from_libxl("vdevfn", "0x28") is None
    assert pcispec.options_from_libxl("frobnicate", 1) is None


# -- other keys the two readers now read alike (config/common.py) ----------

def _json_dom(b_info, **cfg):
    return libxl_json.domain_from_libxl(
        dict({"c_info": {"type": "pv", "name": "p"}, "b_info": b_info}, **cfg),
        source="t.json")


def test_hard_affinity_compared_as_sets_and_empty_means_unpinned():
    (dom,) = sxpr.domains_from_text("(vm (name p) (vcpus 2) (cpus ((1 0) (0 1))))",
                                    source="t.sxp")
    assert (dom.cpus, dom.vcpu_affinity) == ("0-1", [])
    dom = _json_dom({"max_vcpus": 2, "vcpu_hard_affinity": [[1, 0], [0, 1]]})
    assert (dom.cpus, dom.vcpu_affinity) == ("0-1", [])
    (dom,) = sxpr.domains_from_text("(vm (name p) (vcpus 2) (cpus (() ())))",
                                    source="t.sxp")
    assert (dom.cpus, dom.vcpu_affinity) == (None, [])
    dom = _json_dom({"max_vcpus": 2, "vcpu_hard_affinity": [[], []]})
    assert (dom.cpus, dom.vcpu_affinity) == (None, [])


def test_online_vcpus_count_only_bits_below_vcpus():
    (dom,) = sxpr.domains_from_text("(vm (name p) (vcpus 2) (vcpu_avail 15))",
                                    source="t.sxp")
    assert dom.vcpus_online == 2
    dom = _json_dom({"max_vcpus": 2, "avail_vcpus": [0, 1, 2, 3]})
    assert dom.vcpus_online == 2


def test_vfb_kind_does_not_depend_on_key_order():
    (dom,) = sxpr.domains_from_text(
        "(vm (name p) (device (vfb (sdl 1) (vnc 1))))", source="t.sxp")
    assert [v.type for v in dom.vfbs] == ["vnc"]
    dom = _json_dom({}, vfbs=[{"sdl": {"enable": "True"}, "vnc": {"enable": "True"}}])
    assert [v.type for v in dom.vfbs] == ["vnc"]
    dom = _json_dom({}, vfbs=[{"sdl": {"enable": "True"}}])
    assert [v.type for v in dom.vfbs] == ["sdl"]
