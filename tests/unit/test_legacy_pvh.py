"""A PVH domain in the legacy view (issue 10): xend never knew PVH, so
legacy code sees the ``linux`` image it knows how to read (kernel, ramdisk,
args) marked ``(pvh 1)`` as xl 4.4's ``pvh=1`` was; the mark round-trips."""
from xen_remus_compat import sxp
from xen_remus_compat.config.formats import libxl_json, sxpr
from xen_remus_compat.legacy import vm
from xen_remus_compat.sources import sim
from xen_remus_compat.sources.base import DomainRecord


def _record(env):
    dom = sim.sim_domain(env)
    return DomainRecord(dom, dom.domid, state=dom.state, source="sim")


def test_pvh_shows_a_linux_image_marked_pvh():
    dominfo = vm.record_to_dominfo(_record({"SIMXEN_TYPE": "pvh"}))
    dom = vm.parsedominfo(dominfo)
    image = dom["image"]
    assert list(image) == ["linux"]
    assert image["linux"]["pvh"] == 1
    assert image["linux"]["kernel"]            # what legacy code reads to boot it


def test_pv_has_no_pvh_mark():
    dom = vm.parsedominfo(vm.record_to_dominfo(_record({"SIMXEN_TYPE": "pv"})))
    assert "pvh" not in dom["image"]["linux"]


def test_the_mark_round_trips_and_reaches_libxl_as_pvh():
    text = sxp.to_string(vm.record_to_dominfo(_record({"SIMXEN_TYPE": "pvh"})))
    back = sxpr.domain_from_sxpr(sxp.loads(text)[0], source="t")
    assert back.type == "pvh" and back.image_extra == []
    cfg = libxl_json.domain_to_libxl(back)
    assert cfg["c_info"]["type"] == "pvh" and "type.pvh" in cfg["b_info"]


def test_a_pvh_mark_on_an_hvm_image_is_not_taken_for_pvh():
    sx = sxp.loads("(domain (name h) (memory 64) (image (hvm (kernel /usr/lib/xen/boot/hvmloader) (pvh 1))))")[0]
    assert sxpr.domain_from_sxpr(sx, source="t").type == "hvm"
