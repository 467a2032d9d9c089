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
