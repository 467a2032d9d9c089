"""The real ``xl migrate-receive -d -e -r`` (Debian 4.17, under the stub of
xl-side.md §7) accepts our xl header + config, and rejects the same broken
headers our reader rejects, with the same words."""
import struct

import pytest

from tests.conftest import tier_unavailable
from xen_remus_compat.stream import simstream, writer, xl
from xen_remus_compat.stream.receiver import ReceiveFailed, receive

realxl = pytest.importorskip("tests.support.realxl")

#: A PV config in the shape of xl-side.md §4.4 (xl list -l), domid forced 0.
CONFIG = {
    "c_info": {"type": "pv", "name": "web01", "domid": 0,
               "uuid": "6a9b2f3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
    "b_info": {"max_vcpus": 2, "max_memkb": 524288, "target_memkb": 524288,
               "type.pv": {"bootloader": "pygrub"}},
    "disks": [{"pdev_path": "/dev/vg0/web01-root", "vdev": "xvda",
               "format": "raw", "readwrite": 1}],
    "nics": [{"devid": 0, "mac": "00:16:3e:12:34:56", "bridge": "xenbr0"}],
    "on_reboot": "restart",
}


@pytest.fixture(autouse=True)
def _real_xl():
    ok, why = realxl.available()
    if not ok:
        tier_unavailable("conformance", f"real xl unavailable: {why}")


def xl_receive(data):
    rc, out, err = realxl.xl_migrate_receive(data, ("-d", "-e", "-r"))
    return rc, out, err


def test_real_xl_accepts_our_preamble_and_config():
    s = simstream.build_stream(4, [{1}], config=CONFIG)
    rc, out, err = xl_receive(s.data)
    optlen = len(xl.config_bytes(CONFIG)) + 4
    assert out == xl.BANNER                    # our constant is xl's banner
    assert ("Loading new save file <incoming migration stream> "
            f"(new xl fmt info 0x3/0x0/{optlen})") in err
    assert " Savefile contains xl domain config in JSON format" in err
    assert "Parsing config from <saved>" in err
    assert '"name": "web01--incoming"' in err
    assert '"pdev_path": "/dev/vg0/web01-root"' in err
    # it gets past the header and config, to domain creation (no Xen here)
    assert "Domain creation failed" in err and rc == 1
    # and our receiver reads the same header to the same config
    res = receive(s.data)
    assert res.config == CONFIG and res.domain_name == "web01"


def test_real_xl_accepts_a_text_config():
    cfg = 'name = "txt01"\nmemory = 256\nkernel = "/boot/vmlinuz"\n'
    data = xl.pack_header(cfg, json_config=False) + writer.LIBXL_HEADER
    rc, out, err = xl_receive(data)
    assert out == xl.BANNER
    assert "(new xl fmt info 0x2/0x0/" in err
    assert " Savefile contains xl domain config\n" in err
    assert "txt01--incoming" in err


def _header(magic=xl.MAGIC, byteorder=0x01020304, flags=3, optlen=None,
            cfglen=None, cfg=b'{"c_info": {"name": "x"}}\0'):
    optlen = 4 + len(cfg) if optlen is None else optlen
    cfglen = len(cfg) if cfglen is None else cfglen
    return (magic + struct.pack("<IIII", byteorder, flags, 0, optlen)
            + struct.pack("<I", cfglen) + cfg + writer.LIBXL_HEADER
            + writer.LIBXC_CONTEXT_RECORD)


@pytest.mark.parametrize("data,xl_says", [
    (_header(magic=b"Xen saved domain, xl format\n \0 X"),
     "File has wrong magic number"),
    (_header(byteorder=0x04030201), "File has wrong byte order"),
    (_header(flags=3 | 4), "Savefile has mandatory flag(s) 0x4 which are not "
                           "supported; need newer xl"),
    (_header(cfglen=500), "Savefile truncated."),
])
def test_same_rejections_as_real_xl(data, xl_says):
    rc, out, err = xl_receive(data)
    assert rc == 1 and out == xl.BANNER and xl_says in err
    with pytest.raises(ReceiveFailed) as ei:
        receive(data)
    assert xl_says in str(ei.value)
