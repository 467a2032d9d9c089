"""``xen.remus.qdisc`` (legacy-api.md §7, §14.2)."""
import struct

import pytest

from xen_remus_compat.devices.netlink import Channel
from xen_remus_compat.legacy import qdisc


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", "").replace("|", ""))


# legacy-api.md §7, "Wire bytes for ifindex 5 on x86_64, with an 8-byte payload"
HDR_TC = "00 000000 05000000 00000000 ffffffff 00000000"
KIND = "0900 0100 706c756700 000000"          # "plug\0" + 3 pad bytes
SPEC_ADD = _hex("3c000000 2400 0106 00000000 00000000" + HDR_TC + KIND
                + "0c00 0200 00000000 10270000")
SPEC_CHANGE = {
    qdisc.TC_PLUG_BUFFER: _hex("3c000000 2400 0100 00000000 00000000" + HDR_TC + KIND
                               + "0c00 0200 00000000 10270000"),
    qdisc.TC_PLUG_RELEASE_ONE: _hex("3c000000 2400 0100 00000000 00000000" + HDR_TC + KIND
                                    + "0c00 0200 01000000 10270000"),
}
SPEC_DEL = _hex("24000000 2500 0100 00000000 00000000" + HDR_TC)


def test_spec_wire_bytes_add():
    got = qdisc.addrequest(5, qdisc.TC_H_ROOT, qdisc.PlugQdisc()).pack()
    assert len(got) == 60
    assert got == SPEC_ADD


@pytest.mark.parametrize("action", [qdisc.TC_PLUG_BUFFER, qdisc.TC_PLUG_RELEASE_ONE])
def test_spec_wire_bytes_change(action):
    q = qdisc.PlugQdisc()
    q.action = action
    got = qdisc.changerequest(5, qdisc.TC_H_ROOT, q).pack()
    assert got == SPEC_CHANGE[action]


def test_spec_wire_bytes_del():
    got = qdisc.delrequest(5, qdisc.TC_H_ROOT).pack()
    assert len(got) == 36
    assert got == SPEC_DEL


@pytest.mark.parametrize("req,flags", [
    (lambda: qdisc.addrequest(5, 0, qdisc.PlugQdisc()), 0x0605),
    (lambda: qdisc.changerequest(5, 0, qdisc.PlugQdisc()), 0x0005),
    (lambda: qdisc.delrequest(5, 0), 0x0005),
])
def test_on_the_wire_talk_adds_ack(req, flags):
    # §7: "on the wire talk sets seq and adds NLM_F_ACK"
    wire = Channel.prepare(req().pack())
    assert struct.unpack_from("=H", wire, 6)[0] == flags


def test_handle_zero_means_root():
    t = qdisc.request(36, dev=7).t
    assert (t.tcm_parent, t.tcm_handle, t.tcm_ifindex) == (0xFFFFFFFF, 0, 7)


def test_no_dev_leaves_ifindex_zero():
    assert qdisc.request(36).t.tcm_ifindex == 0


def test_plug_payload_is_8_bytes_whatever_the_kernel(monkeypatch):
    # the legacy test failed on 6.1 (major >= 3 and minor >= 4) and sent 4 bytes
    import platform
    monkeypatch.setattr(platform, "platform",
                        lambda terse=False: "Linux-6.1.0-13-amd64-x86_64-with-glibc2.36")
    monkeypatch.delitem(qdisc.__dict__, "kernelversion", raising=False)
    assert qdisc.kernelversion == ["6", "1", "0"]
    q = qdisc.PlugQdisc()
    assert q.pack() == struct.pack("=iI", 0, 10000)
    assert len(q.pack()) == 8


def test_kernelversion_is_lazy_and_cached(monkeypatch):
    import platform
    monkeypatch.delitem(qdisc.__dict__, "kernelversion", raising=False)
    calls = []

    def fake(terse=False):
        calls.append(terse)
        return "Linux-3.4.113-foo-x86_64"
    monkeypatch.setattr(platform, "platform", fake)
    assert calls == []          # nothing computed until asked
    assert qdisc.kernelversion == ["3", "4", "113"]
    assert qdisc.kernelversion == ["3", "4", "113"]
    assert calls == [True]


def test_unknown_module_attribute():
    with pytest.raises(AttributeError):
        qdisc.no_such_name


def test_constants():
    assert (qdisc.TC_H_ROOT, qdisc.TC_PLUG_BUFFER, qdisc.TC_PLUG_RELEASE_ONE,
            qdisc.TC_PRIO_MAX) == (0xFFFFFFFF, 0, 1, 15)
    assert qdisc.qdisc_kinds == {"prio": qdisc.PrioQdisc, "pfifo_fast": qdisc.PrioQdisc,
                                 "cfifo": qdisc.CfifoQdisc, "plug": qdisc.PlugQdisc}


@pytest.mark.parametrize("kind,cls", [("prio", qdisc.PrioQdisc),
                                      ("pfifo_fast", qdisc.PrioQdisc),
                                      ("cfifo", qdisc.CfifoQdisc),
                                      ("plug", qdisc.PlugQdisc),
                                      ("noqueue", qdisc.Qdisc)])
def test_factory_picks_subclass(kind, cls):
    q = qdisc.Qdisc({"kind": kind, "handle": 0x80010000, "options": None})
    assert type(q) is cls
    assert q.kind == kind
    assert q.handle == 0x8001


def test_base_qdisc_parse_and_optstr():
    q = qdisc.Qdisc({"kind": "noqueue", "handle": 0, "options": None})
    q.parse([])
    with pytest.raises(qdisc.QdiscException, match="cannot parse qdisc parameters"):
        q.parse(["x"])
    assert q.optstr() == ""          # the legacy code raised AttributeError here
    q2 = qdisc.Qdisc({"kind": "tbf", "handle": 0, "options": b"\1\2"})
    assert q2.optstr() == "[cannot parse qdisc parameters]"
    assert q2.pack() == b""


def test_prio_default_and_unpack():
    q = qdisc.Qdisc({"kind": "pfifo_fast", "handle": 0, "options": None})
    assert q.bands == 3
    assert q.optstr() == "bands 3 priomap  1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
    assert q.pack() == b""
    opts = struct.pack("=i16B", 2, *range(16))
    q = qdisc.Qdisc({"kind": "prio", "handle": 0x10000, "options": opts})
    assert q.bands == 2
    assert q.optstr() == "bands 2 priomap  " + " ".join(str(i) for i in range(16))


def test_cfifo():
    q = qdisc.Qdisc({"kind": "cfifo", "handle": 0, "options": None})
    assert (q.epoch, q.vmid) == (0, 0)
    q.parse(["epoch", "7", "VMID", "3"])
    assert q.optstr() == "epoch 7 vmID 3"
    assert q.pack() == struct.pack("=II", 7, 3)
    q2 = qdisc.Qdisc({"kind": "cfifo", "handle": 0, "options": struct.pack("=II", 9, 4)})
    assert (q2.epoch, q2.vmid) == (9, 4)
    with pytest.raises(qdisc.QdiscException):
        q.parse(["epoch"])
    with pytest.raises(qdisc.QdiscException):
        q.parse(["epoch", "x"])


def test_plug_defaults_and_parse():
    q = qdisc.PlugQdisc()
    assert (q.kind, q.action, q.limit, q.handle) == ("plug", 0, 10000, 0xFFFF)
    q.parse(["release"])
    assert q.action == qdisc.TC_PLUG_RELEASE_ONE
    q.parse(["checkpoint"])
    assert q.action == qdisc.TC_PLUG_BUFFER
    with pytest.raises(qdisc.QdiscException, match="unknown action"):
        q.parse(["flush"])
    with pytest.raises(qdisc.QdiscException, match="no action given"):
        q.parse([])


def test_change_without_options_has_no_options_attr():
    q = qdisc.Qdisc({"kind": "noqueue", "handle": 0})
    raw = qdisc.changerequest(3, 0, q).pack()
    # header 16 + tcmsg 20 + TCA_KIND "noqueue\0" (12) = 48, no TCA_OPTIONS
    assert len(raw) == 48
    assert raw[36:40] == struct.pack("=HH", 12, 1)
