"""Behaviours found by running the original Xen 4.4 modules side by side
(issue 12, item 14): each test states what Python 2's legacy code did."""
import struct

import pytest

from xen_remus_compat.legacy import image, util, vif, vm


def test_vif_keeps_a_dev_prop():
    assert vif.VIF(dev="x").dev == "x"
    assert vif.VIF(mac="0:16:3E:1:2:3").dev == "unknown"


def test_canonifymac_refuses_underscores_like_python2_int():
    assert util.canonifymac("0:16:3E:1:2:3") == "00:16:3e:01:02:03"
    assert util.canonifymac("+FC:0x2") == "fc:02"      # Python 2's int took these
    with pytest.raises(ValueError):
        util.canonifymac("+FC_2")


def test_parsebatch_negative_count_is_a_struct_error():
    with pytest.raises(struct.error):
        image.parsebatch(struct.pack("i", -1))
    assert image.parsebatch(struct.pack("i", 0)) == []


def test_getshadowmem_without_shadow_memory_is_a_keyerror():
    class V:
        dom = {"vcpus": 1, "maxmem": 128}
    with pytest.raises(KeyError):
        vm.getshadowmem(V())


def test_sxp_predicates_return_what_python2_returned():
    from xen_remus_compat import sxp
    assert sxp.atomp("abc") == 1 and type(sxp.atomp("abc")) is int
    assert sxp.atomp("a b") == 0 and type(sxp.atomp("a b")) is int
    assert sxp.elementp(["a"]) is True and sxp.elementp(["a"], "b") is False
    assert sxp.elementp([]) == 0 and type(sxp.elementp([])) is int
    assert sxp.elementp("a") is False


def test_show_xml_prints_floats_as_python2_str():
    import io
    from xen_remus_compat import sxp
    out = io.StringIO()
    sxp.show_xml(["cpu", ["weight", 0.1 + 0.2], ["n", 2.0], ["big", 1e16]], out)
    assert out.getvalue() == "<cpu><weight>0.3</weight> <n>2.0</n> <big>1e+16</big></cpu>"
    assert sxp.to_string(["w", 0.1 + 0.2]) == "(w 0.3)"
