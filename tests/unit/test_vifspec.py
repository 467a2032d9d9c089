"""vifspec: xend vif props, the xl vif string, libxl device_nic.

Expected values come from legacy-api.md §4/§11.5 (canonifymac, the vif
props of the parsedominfo example), xl-side.md §4.3/§4.4, the xl network
configuration manual (rate examples) and the fixture corpus (libvirt
xlconfig vif strings, sexpr2xml vif variants).  The rate arithmetic is also
run against the real xlu_vif_parse_rate in the conformance tier.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from xen_remus_compat import errors
from xen_remus_compat.config.specs import vifspec
from xen_remus_compat.config.model import Nic


@pytest.mark.parametrize("raw,canon", [
    ("0:16:3E:1:2:3", "00:16:3e:01:02:03"),        # legacy-api.md §4
    ("00:16:3e:00:00:04", "00:16:3e:00:00:04"),
    ("00:16:3E:74:3d:76", "00:16:3e:74:3d:76"),
    (" 5a:36:0e:be:00:09 ", "5a:36:0e:be:00:09"),
])
def test_canonical_mac(raw, canon):
    assert vifspec.canonical_mac(raw) == canon


@pytest.mark.parametrize("bad", ["", "00:16:3e:00:00", "00:16:3e:00:00:04:05",
                                 "00:16:3e:00:00:zz", "001:16:3e:00:00:04",
                                 "00-16-3e-00-00-04"])
def test_bad_mac_names_it(bad):
    with pytest.raises(errors.VifSpecError) as info:
        vifspec.canonical_mac(bad)
    assert repr(bad) in str(info.value)


def test_parse_legacy_parsedominfo_example():
    """The two vifs of the legacy-api.md §11.5 example."""
    first = vifspec.parse_legacy({"backend": 0, "bridge": "xenbr0",
                                  "mac": "0:16:3E:1:2:3", "uuid": "aaaa",
                                  "script": "/etc/xen/scripts/vif-bridge"})
    assert (first.mac, first.bridge, first.uuid, first.backend_domid, first.script) == \
        ("00:16:3e:01:02:03", "xenbr0", "aaaa", 0, "/etc/xen/scripts/vif-bridge")
    second = vifspec.parse_legacy({"backend": 0, "bridge": "xenbr1",
                                   "mac": "00:16:3e:00:00:04", "vifname": "web0",
                                   "uuid": "bbbb"})
    assert second.vifname == "web0"
    assert vifspec.format_xl(second) == \
        "mac=00:16:3e:00:00:04,bridge=xenbr1,vifname=web0"


def test_parse_legacy_variants():
    """Fixture README vif variants: ioemu, netfront, e1000, ip, rate."""
    nic = vifspec.parse_legacy({"mac": "00:16:3e:23:9e:eb", "bridge": "xenbr0",
                                "type": "ioemu", "model": "e1000",
                                "rate": "10240KB/s", "ip": "192.0.2.1",
                                "security_label": "x", "accel": "sfc"})
    assert (nic.type, nic.model, nic.rate, nic.ip, nic.accel) == \
        ("ioemu", "e1000", "10240KB/s", "192.0.2.1", "sfc")
    assert ("security_label", "x") in nic.extra
    assert vifspec.format_xl(nic) == ("mac=00:16:3e:23:9e:eb,bridge=xenbr0,"
                                      "ip=192.0.2.1,model=e1000,type=ioemu,"
                                      "rate=10240KB/s")
    netfront = vifspec.parse_legacy({"type": "netfront", "mac": "00:16:3e:00:00:01"})
    assert vifspec.nic_to_libxl(netfront)["nictype"] == "vif"
    assert "type=vif" in vifspec.format_xl(netfront)
    routed = vifspec.parse_legacy({"script": "vif-routed", "ip": "172.16.1.2"})
    assert routed.bridge is None and vifspec.format_xl(routed) == \
        "ip=172.16.1.2,script=vif-routed"
    assert vifspec.parse_legacy({"backend": "drv"}).backend == "drv"


def test_parse_legacy_rate_meaning():
    """xend's parseRate is decimal; xl reads a leading 0 as octal, so the
    legacy rate is re-expressed; a rate xend ignored is kept untranslated."""
    assert vifspec.parse_legacy({"rate": "010KB/s"}).rate == "10KB/s"
    assert vifspec.parse_legacy({"rate": "5000000000B/s"}).rate == "5GB/s"
    bogus = vifspec.parse_legacy({"rate": "fast"})
    assert bogus.rate is None and ("rate", "fast") in bogus.extra


def test_parse_legacy_bad_values():
    with pytest.raises(errors.VifSpecError, match="'zz'"):
        vifspec.parse_legacy({"mac": "zz"}, source="d.sxp")
    with pytest.raises(errors.VifSpecError, match="type"):
        vifspec.parse_legacy({"type": "vnc"})


# -------------------------------------------------------------- rate

@pytest.mark.parametrize("rate,expected", [
    ("10Mb/s", (62500, 50000)),          # 10 megabits/s, default 50 ms
    ("250KB/s", (12500, 50000)),
    ("1MB/s@20ms", (20000, 20000)),      # manual: 20,000 bytes every 20,000 us
    ("10240KB/s", (512000, 50000)),
    ("1B/s@2", (2, 2000000)),            # a bare interval is seconds
    ("5Kb/s@7u", (0, 7)),
    ("010KB/s", (400, 50000)),           # strtoull base 0: octal
    ("018KB/s", (0, 50000)),             # octal 01, then "8KB/s": 1 byte/s
    ("1GB/s@1s", (1000000000, 1000000)),
])
def test_parse_rate(rate, expected):
    assert vifspec.parse_rate(rate) == expected


@pytest.mark.parametrize("rate,message", [
    ("", "no rate specified in `'"),
    ("@5s", "no rate specified in `@5s'"),
    ("abc", "invalid rate in `abc'"),
    ("09KB/s", "rate overflow in `09KB/s'"),
    ("4294967296B/s", "rate overflow in `4294967296B/s'"),
    ("1MB/s@", "invalid replenishment interval in `'"),
    ("1MB/s@0ms", "replenishment interval overflow in `0ms'"),
    ("1MB/s@5000s", "replenishment interval overflow in `5000s'"),
])
def test_parse_rate_errors(rate, message):
    with pytest.raises(errors.VifSpecError) as info:
        vifspec.parse_rate(rate)
    assert info.value.message == "config parsing error in vif: " + message


@settings(max_examples=300, deadline=None)
@given(per=st.integers(0, 2 ** 32), usecs=st.integers(1, 2 ** 32 - 1))
def test_rate_string_roundtrip(per, usecs):
    text = vifspec.rate_string(per, usecs)
    if text is not None:
        assert vifspec.parse_rate(text) == (per, usecs)


def test_rate_string_prefers_round_units():
    assert vifspec.rate_string(512000, 50000) == "10240KB/s"
    assert vifspec.rate_string(20000, 20000) == "1MB/s@20ms"
    assert vifspec.rate_string(2, 2000000) == "1B/s@2s"


# -------------------------------------------------------------- xl string

def _fixture_vifs(fixtures_dir):
    found = []
    for cfg in sorted((fixtures_dir / "libvirt").glob("*/*.cfg")):
        for line in cfg.read_text(errors="replace").splitlines():
            if line.startswith("vif ="):
                found += re.findall(r'"([^"]*)"', line)
    return found


def test_fixture_vif_strings(fixtures_dir):
    specs = _fixture_vifs(fixtures_dir)
    assert len(specs) >= 20
    for spec in specs:
        nic = vifspec.parse_xl(spec)
        assert nic.mac == vifspec.canonical_mac(re.search(r"mac=([^,]*)", spec).group(1))
        again = vifspec.parse_xl(vifspec.format_xl(nic))
        assert again == nic
        # libvirt's writer uses xl's keyword order for these keys
        assert vifspec.format_xl(nic) == spec


def test_parse_xl_keywords():
    nic = vifspec.parse_xl("mac=00:16:3E:74:3d:76, bridge=xenbr0,ip=10.0.0.1 2000::1,"
                           "script=vif-route,vifname=web0,model=e1000,type=ioemu,"
                           "backend=drv,rate=1MB/s@20ms,gatewaydev=eth0,mtu=9000,"
                           "devid=3,,")
    assert nic == Nic(mac="00:16:3e:74:3d:76", bridge="xenbr0", ip="10.0.0.1 2000::1",
                      script="vif-route", vifname="web0", model="e1000", type="ioemu",
                      backend="drv", rate="1MB/s@20ms", gatewaydev="eth0", mtu=9000,
                      devid=3)
    assert vifspec.nic_to_libxl(nic) == {
        "backend_domname": "drv", "devid": 3, "mtu": 9000, "model": "e1000",
        "mac": "00:16:3e:74:3d:76", "ip": "10.0.0.1 2000::1", "bridge": "xenbr0",
        "ifname": "web0", "script": "vif-route", "nictype": "vif_ioemu",
        "rate_bytes_per_interval": 20000, "rate_interval_usecs": 20000,
        "gatewaydev": "eth0"}


def test_parse_xl_xl_quirks():
    assert vifspec.parse_xl("bridge=a,bridge=b").bridge == "b"     # last wins
    assert vifspec.parse_xl("netdev=eth1").gatewaydev == "eth1"    # old alias
    assert vifspec.parse_xl("mac=0x00-16-3e-1-2-3").mac == "00:16:3e:01:02:03"
    assert vifspec.parse_xl("forwarddev=eth2").extra == [("coloft_forwarddev", "eth2")]
    assert vifspec.parse_xl("untrusted").extra == [("trusted", False)]
    assert vifspec.nic_to_libxl(vifspec.parse_xl("trusted"))["trusted"] == "True"
    assert vifspec.parse_xl("").mac is None


@pytest.mark.parametrize("spec,message", [
    ("type=netfront", "Invalid parameter `type'."),
    ("mac=00:16:zz:00:00:01", "Invalid parameter `mac'."),
    ("mac=00:16:3e:100:00:01", "Invalid parameter `mac'."),
    ("colour=blue", "unrecognized argument `colour=blue'"),
    ("bridged", "unrecognized argument `bridged'"),
    ("devid=x", 'xl: failed to convert "x" to number'),
    ("rate=fast", "invalid rate in `fast'"),
])
def test_parse_xl_errors(spec, message):
    with pytest.raises(errors.VifSpecError) as info:
        vifspec.parse_xl(spec, source="dom.cfg")
    assert message in info.value.message and spec in str(info.value)
    assert str(info.value).startswith("dom.cfg: ")


def test_format_xl_refuses_commas():
    with pytest.raises(errors.UntranslatableError, match="comma"):
        vifspec.format_xl(Nic(bridge="a,b"))


def test_format_xl_backend_domid():
    assert vifspec.format_xl(Nic(backend_domid=4)) == "backend=4"
    assert vifspec.format_xl(Nic(backend_domid=0)) == ""


# -------------------------------------------------------------- libxl

def test_nic_to_libxl_spec_example():
    """xl-side.md §4.4: the two nics of web01 (devid/nictype as xl stores)."""
    a = Nic(mac="00:16:3e:12:34:56", bridge="xenbr0", ip="192.168.1.10", devid=0,
            type="vif")
    b = Nic(mac="00:16:3e:12:34:57", bridge="xenbr1", script="vif-bridge",
            vifname="web01-eth1", devid=1, type="vif")
    assert vifspec.nic_to_libxl(a) == {"devid": 0, "mac": "00:16:3e:12:34:56",
                                       "ip": "192.168.1.10", "bridge": "xenbr0",
                                       "nictype": "vif"}
    assert list(vifspec.nic_to_libxl(b)) == ["devid", "mac", "bridge", "ifname",
                                             "script", "nictype"]
    assert vifspec.nic_from_libxl(vifspec.nic_to_libxl(b)) == b


def test_nic_from_libxl():
    nic = vifspec.nic_from_libxl({"devid": 0, "model": "e1000",
                                  "mac": "00:16:3E:5A:6B:7C", "bridge": "xenbr0",
                                  "nictype": "VIF_IOEMU",
                                  "rate_bytes_per_interval": 512000,
                                  "rate_interval_usecs": 50000,
                                  "colo_sock_mirror_id": "m", "trusted": "False"})
    assert (nic.type, nic.mac, nic.rate) == ("ioemu", "00:16:3e:5a:6b:7c", "10240KB/s")
    assert ("colo_sock_mirror_id", "m") in nic.extra and ("trusted", False) in nic.extra
    again = vifspec.nic_to_libxl(nic)
    assert again["colo_sock_mirror_id"] == "m" and again["trusted"] == "False"
    assert again["rate_bytes_per_interval"] == 512000
    # a rate no xl string reproduces stays as numbers
    odd = vifspec.nic_from_libxl({"rate_bytes_per_interval": 3,
                                  "rate_interval_usecs": 3000000})
    if odd.rate is None:
        assert vifspec.nic_to_libxl(odd) == {"rate_bytes_per_interval": 3,
                                             "rate_interval_usecs": 3000000}
    else:
        assert vifspec.parse_rate(odd.rate) == (3, 3000000)
    with pytest.raises(errors.ConfigError):
        vifspec.nic_from_libxl({"nictype": "tap"})


_values = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                 blacklist_characters=","), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(mac=st.none() | st.lists(st.integers(0, 255), min_size=6, max_size=6).filter(any),
       bridge=st.none() | _values, ip=st.none() | _values, script=st.none() | _values,
       vifname=st.none() | _values, model=st.none() | _values,
       typ=st.sampled_from([None, "vif", "ioemu"]), devid=st.none() | st.integers(0, 99),
       mtu=st.none() | st.integers(1, 9000),
       rate=st.none() | st.sampled_from(["10240KB/s", "1MB/s@20ms", "10Mb/s"]))
def test_xl_string_roundtrip(mac, bridge, ip, script, vifname, model, typ, devid,
                             mtu, rate):
    # (an all-zero MAC is libxl's "unset": excluded)
    nic = Nic(mac=mac and ":".join(f"{b:02x}" for b in mac), bridge=bridge, ip=ip,
              script=script, vifname=vifname, model=model, type=typ, devid=devid,
              mtu=mtu, rate=rate)
    assert vifspec.parse_xl(vifspec.format_xl(nic)) == nic
    again = vifspec.nic_from_libxl(vifspec.nic_to_libxl(nic))
    assert vifspec.nic_to_libxl(again) == vifspec.nic_to_libxl(nic)
    again.rate = nic.rate       # libxl keeps the numbers, not the text
    assert again == nic
