"""rtnetlink codecs: ``xen.remus.netlink`` (legacy-api.md §6), the pure-Python
``xen.lowlevel.netlink``, and the messages of devices/netbuf.py (xl-side.md
§2.5, Appendix A), including the pyroute2 0.9.7 traps."""
import errno
import socket
import struct
from collections import deque

import pytest

from xen_remus_compat.devices import netbuf
from xen_remus_compat.legacy import lowlevel_netlink, netlink

HDR = struct.Struct("=IHHII")


# -- a fake NETLINK_ROUTE socket: replies come from a responder -------------------
class FakeSock:
    def __init__(self, responder=None):
        self.sent = []
        self.queue = deque()
        self.responder = responder or (lambda msg: [ack(msg)])
        self.bound = None
        self.closed = False

    def setsockopt(self, *a):
        pass

    def bind(self, addr):
        self.bound = addr

    def getsockname(self):
        return (4321, 0)

    def fileno(self):
        return 99

    def close(self):
        self.closed = True

    def send(self, buf):
        data = bytes(buf)
        self.sent.append(data)
        self.queue.extend(self.responder(data))
        return len(data)

    def recv_into(self, buf):
        return self.recvfrom_into(buf)[0]

    def recvfrom_into(self, buf):
        data = self.queue.popleft()
        buf[:len(data)] = data
        return len(data), (0, 0)


def seq_of(msg):
    return HDR.unpack_from(msg, 0)[3]


def nlmsg_bytes(mtype, seq, payload=b"", flags=0):
    pad = b"\0" * ((-len(payload)) % 4)
    return HDR.pack(16 + len(payload), mtype, flags, seq, 0) + payload + pad


def ack(request, err=0, extack=None):
    """An NLMSG_ERROR answering ``request`` (capped, with an extack TLV)."""
    flags = 0
    body = struct.pack("=i", -err) + request[:16]
    if extack is not None:
        flags = netbuf.NLM_F_CAPPED | netbuf.NLM_F_ACK_TLVS
        text = extack.encode() + b"\0"
        body += struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * ((-len(text)) % 4)
    return nlmsg_bytes(2, seq_of(request), body, flags)


def done(request):
    return nlmsg_bytes(3, seq_of(request), struct.pack("=i", 0), 2)


def rta(kind, body):
    body = body if isinstance(body, bytes) else body.encode()
    return struct.pack("=HH", 4 + len(body), kind) + body + b"\0" * ((-len(body)) % 4)


def parse_attrs(data):
    """{type: payload} -- written here, independently of the code under test."""
    out, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out[kind & 0x3FFF] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


# -- §6.1 constants -----------------------------------------------------------
def test_constants_table():
    assert netlink.NETLINK_ROUTE == 0
    assert (netlink.NLM_F_REQUEST, netlink.NLM_F_MULTI, netlink.NLM_F_ACK,
            netlink.NLM_F_ECHO) == (1, 2, 4, 8)
    assert (netlink.NLM_F_ROOT, netlink.NLM_F_MATCH, netlink.NLM_F_ATOMIC,
            netlink.NLM_F_DUMP) == (0x100, 0x200, 0x400, 0x300)
    assert (netlink.NLM_F_REPLACE, netlink.NLM_F_EXCL, netlink.NLM_F_CREATE,
            netlink.NLM_F_APPEND) == (0x100, 0x200, 0x400, 0x800)
    assert (netlink.RTM_NEWLINK, netlink.RTM_GETLINK, netlink.RTM_NEWQDISC,
            netlink.RTM_DELQDISC, netlink.RTM_GETQDISC) == (16, 18, 36, 37, 38)
    ifla = ["UNSPEC", "ADDRESS", "BROADCAST", "IFNAME", "MTU", "LINK", "QDISC", "STATS",
            "COST", "PRIORITY", "MASTER", "WIRELESS", "PROTINFO", "TXQLEN", "MAP", "WEIGHT"]
    assert [getattr(netlink, "IFLA_" + n) for n in ifla] == list(range(16))
    tca = ["UNSPEC", "KIND", "OPTIONS", "STATS", "XSTATS", "RATE", "FCNT", "STATS2"]
    assert [getattr(netlink, "TCA_" + n) for n in tca] == list(range(8))


# -- §6.2 codec classes ----------------------------------------------------------
@pytest.mark.parametrize("l,a,want", [(0, 4, 0), (1, 4, 4), (4, 4, 4), (5, 4, 8),
                                      (9, 8, 16)])
def test_align(l, a, want):
    assert netlink.align(l, a) == want


def test_rtattr_pack_pads_and_len():
    a = netlink.rtattr()
    a.rta_type = 1
    a.body = b"plug\0"
    packed = a.pack()
    assert packed == b"\x09\x00\x01\x00plug\0\0\0\0"
    assert a.rta_len == 9
    assert len(a) == 12
    b = netlink.rtattr(packed)
    assert (b.rta_len, b.rta_type, b.body) == (9, 1, b"plug\0")


def test_rtattrlist_iterates_while_more_than_4_bytes():
    data = rta(3, "eth0\0") + rta(1, b"\x00\x16\x3e\x00\x00\x01") + b"\0\0\0\0"
    got = [(a.rta_type, a.body) for a in netlink.rtattrlist(data)]
    assert got == [(3, b"eth0\0"), (1, b"\x00\x16\x3e\x00\x00\x01")]


def test_rtattrlist_stops_on_garbage():
    assert list(netlink.rtattrlist(b"\x02\x00\x01\x00\xff\xff\xff\xff")) == []


def test_nlmsg_pack_unpack_str():
    n = netlink.nlmsg()
    n.settype(36)
    n.nlmsg_flags = 5
    n.body = b"\1" * 20
    n.addattr(1, "plug\0")
    assert len(n) == 16 + 20 + 12
    raw = n.pack()
    assert HDR.unpack_from(raw) == (48, 36, 5, 0, 0)
    m = netlink.nlmsg(raw)
    assert (m.nlmsg_len, m.nlmsg_type, m.nlmsg_flags) == (48, 36, 5)
    assert m.body == raw[16:]
    assert str(m) == "<netlink message, len 48, type 36>"


def test_ifinfomsg_decode():
    raw = struct.pack("=BxHiII", 0, 1, 7, 0x1043, 0) + rta(3, "vif3.0\0")
    i = netlink.ifinfomsg(raw)
    assert (i.ifi_family, i.ifi_type, i.ifi_index, i.ifi_flags, i.ifi_change) == \
        (0, 1, 7, 0x1043, 0)
    assert i.body == rta(3, "vif3.0\0")


def test_tcmsg_pack_unpack():
    t = netlink.tcmsg()
    assert t.tcm_family == socket.AF_UNSPEC
    t.tcm_ifindex, t.tcm_handle, t.tcm_parent, t.tcm_info = 5, 0x80010000, 0xFFFFFFFF, 1
    raw = t.pack()
    assert raw == struct.pack("=BxxxiIII", 0, 5, 0x80010000, 0xFFFFFFFF, 1)
    u = netlink.tcmsg(raw + rta(1, "plug\0"))
    assert (u.tcm_ifindex, u.tcm_handle, u.tcm_parent) == (5, 0x80010000, 0xFFFFFFFF)
    assert u.rta == rta(1, "plug\0")


def test_newlinkmsg_and_type_check():
    body = struct.pack("=BxHiII", 0, 1, 3, 0, 0) + rta(3, "eth1\0") + rta(1, b"\xaa" * 6)
    n = netlink.nlmsg(nlmsg_bytes(16, 1, body))
    m = netlink.newlinkmsg(n)
    assert m.ifi.ifi_index == 3
    assert m.rtattrs == {3: b"eth1\0", 1: b"\xaa" * 6}
    with pytest.raises(netlink.RTNLException, match="wrong message type"):
        netlink.newqdiscmsg(n)


def test_newqdiscmsg():
    body = struct.pack("=BxxxiIII", 0, 4, 0, 0xFFFFFFFF, 2) + rta(1, "noqueue\0")
    m = netlink.newqdiscmsg(netlink.nlmsg(nlmsg_bytes(36, 1, body)))
    assert (m.t.tcm_ifindex, m.rtattrs) == (4, {1: b"noqueue\0"})
    with pytest.raises(netlink.RTNLException):
        netlink.newlinkmsg(netlink.nlmsg(nlmsg_bytes(36, 1, body)))


# -- the synchronous channel -----------------------------------------------------
def test_channel_transact_sets_seq_and_ack():
    sock = FakeSock()
    ch = netbuf.Channel(sock=sock)
    assert sock.bound == (0, 0) and ch.pid == 4321
    buf = ch.prepare(HDR.pack(16, 36, 1, 0, 0))
    ch.transact(buf)
    ch.transact(buf)
    s1, s2 = (HDR.unpack_from(m) for m in sock.sent)
    assert s1[2] == s2[2] == 0x5            # REQUEST|ACK
    assert s2[3] == s1[3] + 1               # ++seq per request


def test_channel_skips_replies_to_other_requests():
    def responder(msg):
        stale = nlmsg_bytes(2, seq_of(msg) - 1, struct.pack("=i", -errno.EBUSY) + msg[:16])
        return [stale + ack(msg)]           # stale error then ours, one datagram
    netbuf.Channel(sock=FakeSock(responder)).request(HDR.pack(16, 36, 1, 0, 0))


def test_channel_error_carries_errno_and_extack():
    sock = FakeSock(lambda m: [ack(m, errno.ENOENT, "Specified qdisc kind is unknown.")])
    with pytest.raises(netbuf.NetlinkError) as ei:
        netbuf.Channel(sock=sock).request(HDR.pack(16, 36, 1, 0, 0))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.extack == "Specified qdisc kind is unknown."
    assert "ENOENT" in str(ei.value) and "qdisc kind is unknown" in str(ei.value)


def test_channel_dump_until_done():
    def responder(msg):
        s = seq_of(msg)
        return [nlmsg_bytes(36, s, b"a" * 20, 2) + nlmsg_bytes(1, s, b"", 2),
                nlmsg_bytes(36, s, b"b" * 20, 2) + done(msg)]
    out = netbuf.Channel(sock=FakeSock(responder)).dump(netbuf.build_qdisc_dump(3))
    assert [m[16:] for m in out] == [b"a" * 20, b"b" * 20]


def test_channel_dump_error():
    sock = FakeSock(lambda m: [ack(m, errno.EPERM)])
    with pytest.raises(netbuf.NetlinkError) as ei:
        netbuf.Channel(sock=sock).dump(netbuf.build_qdisc_dump(3))
    assert ei.value.errno == errno.EPERM


# -- xen.lowlevel.netlink.rtnl ---------------------------------------------------------
def test_lowlevel_talk_error(capsys):
    sock = FakeSock(lambda m: [ack(m, errno.ENOENT)])
    r = lowlevel_netlink.rtnl(sock=sock)
    with pytest.raises(IOError) as ei:
        r.talk(HDR.pack(16, 36, 1, 0, 0))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.strerror == "error sending message"
    assert capsys.readouterr().err == "RTNETLINK answers: No such file or directory\n"
    assert HDR.unpack_from(sock.sent[0])[2] == 0x5      # NLM_F_ACK added


def test_lowlevel_talk_ok_overwrites_seq():
    sock = FakeSock()
    r = lowlevel_netlink.rtnl(sock=sock)
    r.talk(HDR.pack(16, 36, 1, 12345, 0))
    assert seq_of(sock.sent[0]) != 12345


def test_lowlevel_wilddump_and_filter():
    def responder(msg):
        return [nlmsg_bytes(16, seq_of(msg), b"x" * 16, 2), done(msg)]
    sock = FakeSock(responder)
    r = lowlevel_netlink.rtnl(sock=sock)
    r.wilddump_request(socket.AF_UNSPEC, 18)
    assert len(sock.sent[0]) == 20
    assert HDR.unpack_from(sock.sent[0])[:3] == (20, 18, 0x301)
    seen = []
    r.dump_filter(lambda addr, msg: seen.append((addr, msg)))
    assert len(seen) == 1
    addr, msg = seen[0]
    assert len(addr) == 12
    assert struct.unpack("=HHII", addr)[0] == socket.AF_NETLINK
    assert msg[16:] == b"x" * 16


def test_lowlevel_dump_request_payload_and_callback_exception():
    def responder(msg):
        return [nlmsg_bytes(36, seq_of(msg), b"y" * 20, 2), done(msg)]
    sock = FakeSock(responder)
    r = lowlevel_netlink.rtnl(sock=sock)
    r.dump_request(38, b"\0" * 20)
    assert HDR.unpack_from(sock.sent[0])[:3] == (36, 38, 0x301)

    def boom(addr, msg):
        raise ValueError("stop")
    with pytest.raises(ValueError):
        r.dump_filter(boom)


# -- xen.remus.netlink.rtnl over a fake kernel ----------------------------------------
def kernel_responder(links, qdiscs):
    """links: [(index, name, mac)], qdiscs: [(index, handle, parent, kind)];
    like old kernels, the qdisc dump ignores tcm_ifindex."""
    def respond(msg):
        mtype, seq = HDR.unpack_from(msg)[1], seq_of(msg)
        out = b""
        if mtype == 18:
            for idx, name, mac in links:
                body = struct.pack("=BxHiII", 0, 1, idx, 0, 0) + rta(3, name + "\0") + rta(1, mac)
                out += nlmsg_bytes(16, seq, body, 2)
        elif mtype == 38:
            for idx, handle, parent, kind in qdiscs:
                body = struct.pack("=BxxxiIII", 0, idx, handle, parent, 1) + rta(1, kind + "\0")
                out += nlmsg_bytes(36, seq, body, 2)
        return [out + done(msg)]
    return respond


@pytest.fixture
def legacy_rtnl(monkeypatch):
    links = [(1, "lo", b"\0" * 6), (3, "vif5.0", b"\xfe" * 6), (4, "ifb0", b"\x02" * 6)]
    qdiscs = [(1, 0, 0xFFFFFFFF, "noqueue"), (3, 0, 0xFFFFFFFF, "noqueue"),
              (3, 0xFFFF0000, 0xFFFFFFF1, "ingress"), (4, 0x80010000, 0xFFFFFFFF, "plug")]
    sock = FakeSock(kernel_responder(links, qdiscs))
    real = lowlevel_netlink.rtnl
    monkeypatch.setattr(lowlevel_netlink, "rtnl", lambda netns=None: real(sock=sock))
    return netlink.rtnl()


def test_getlinks_and_getlink(legacy_rtnl):
    links = legacy_rtnl.getlinks()
    assert sorted(links) == [1, 3, 4]
    assert links[3] == {"index": 3, "type": 1, "name": "vif5.0", "address": b"\xfe" * 6}
    assert legacy_rtnl.getlink("ifb0")["index"] == 4
    assert legacy_rtnl.getlink(3)["name"] == "vif5.0"
    assert legacy_rtnl.getlink("nope") is None
    assert legacy_rtnl.getlink("lo", cached=True)["index"] == 1


def test_getqdisc_filters_by_ifindex(legacy_rtnl):
    # the legacy getqdisc returned the first device's (lo: noqueue) -- fixed
    q = legacy_rtnl.getqdisc(4)
    assert (q["index"], q["kind"], q["handle"]) == (4, "plug", 0x80010000)
    assert legacy_rtnl.getqdisc("vif5.0")["kind"] == "noqueue"   # the root, not ingress


def test_getqdiscs_all_and_by_dev(legacy_rtnl):
    allq = legacy_rtnl.getqdiscs()
    assert sorted(allq) == [1, 3, 4]
    assert allq[3]["kind"] == "ingress"          # last dumped per ifindex wins, as before
    assert list(legacy_rtnl.getqdiscs("ifb0")) == [4]
    with pytest.raises(netlink.RTNLException, match="unknown device eth9"):
        legacy_rtnl.getqdiscs("eth9")


# -- devices/netbuf.py messages ------------------------------------------------------
def test_plug_change_matches_legacy_and_xl_side_bytes():
    # legacy-api.md §7 change bytes on the wire (flags 0x0005), limit 10000
    want = bytes.fromhex("3c000000 24000500 00000000 00000000"
                         "00000000 05000000 00000000 ffffffff 00000000"
                         "09000100 706c7567 00000000 0c000200 01000000 10270000"
                         .replace(" ", ""))
    got = netbuf.build_plug(5, netbuf.TCQ_PLUG_RELEASE_ONE, 10000)
    assert got == want


@pytest.mark.parametrize("action", [0, 1, 2, 3])
def test_plug_action_encoded_as_given(action):
    got = netbuf.build_plug(9, action, 1234)
    opts = parse_attrs(got[36:])[2]
    assert struct.unpack("=iI", opts) == (action, 1234)


def test_plug_add_is_replace_with_limit():
    got = netbuf.build_plug_add(9)
    assert HDR.unpack_from(got)[1:3] == (36, 0x0505)     # REQUEST|ACK|REPLACE|CREATE
    assert struct.unpack_from("=BxxxiIII", got, 16) == (0, 9, 0, 0xFFFFFFFF, 0)
    attrs = parse_attrs(got[36:])
    assert attrs[1] == b"plug\0"
    assert struct.unpack("=iI", attrs[2]) == (3, 10_000_000)   # TCQ_PLUG_LIMIT


def test_trap_pyroute2_int_action_silently_becomes_buffer():
    """pyroute2 0.9.7's sched_plug maps actions by name; an int becomes 0."""
    from pyroute2.netlink.rtnl.tcmsg import sched_plug
    assert sched_plug.get_parameters({"action": 1, "limit": 5})["action"] == 0
    assert sched_plug.get_parameters({"action": "TCQ_PLUG_RELEASE_ONE"})["action"] == 1


def test_trap_pyroute2_limit_defaults_to_zero():
    from pyroute2.netlink.rtnl.tcmsg import sched_plug
    assert sched_plug.get_parameters({"action": "TCQ_PLUG_BUFFER"})["limit"] == 0


def test_builder_self_check_catches_a_mangled_action(monkeypatch):
    monkeypatch.setitem(netbuf.PLUG_ACTION_NAMES, 1, 1)     # an int, as the trap
    with pytest.raises(RuntimeError, match=r"\(0, 100\)"):
        netbuf.build_plug(5, 1, 100)


@pytest.mark.parametrize("limit", [0, -1, 2**32, 1.5, True, None])
def test_limit_validated(limit):
    with pytest.raises(ValueError, match="limit"):
        netbuf.build_plug(5, 0, limit)


def test_trap_pyroute2_sync_nlm_request_keyerror():
    """Why tc messages do not go through IPRoute.nlm_request in 0.9.7."""
    import pyroute2
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl.tcmsg import tcmsg
    with IPRoute() as ipr:
        with pytest.raises(KeyError, match="nlm_generator"):
            ipr.nlm_request(tcmsg(), 38)
    assert pyroute2.__version__ == "0.9.7"


def test_redirect_filter_message():
    got = netbuf.build_redirect_add(3, 4)
    assert HDR.unpack_from(got)[1:3] == (44, 0x0605)
    family, ifindex, handle, parent, info = struct.unpack_from("=BxxxiIII", got, 16)
    assert (ifindex, handle, parent) == (3, 0, 0xFFFF0000)
    assert info == (10 << 16) | socket.htons(0x0003)       # pref 10, protocol all
    top = parse_attrs(got[36:])
    assert top[1] == b"u32\0"
    opts = parse_attrs(top[2])
    assert 1 not in opts            # no TCA_U32_CLASSID (pyroute2's tc() adds one)
    sel = opts[5]
    flags, _, nkeys = struct.unpack_from("=BBB", sel)
    assert (flags, nkeys) == (1, 1)                          # TC_U32_TERMINAL
    assert sel[16:32] == b"\0" * 16                          # match u32 0 0 at 0
    prio1 = parse_attrs(parse_attrs(opts[7])[1])
    assert prio1[1] == b"mirred\0"
    parms = parse_attrs(prio1[2])[2]
    index, capab, action, refcnt, bindcnt, eaction, target = struct.unpack("=IIiiiiI", parms)
    assert (action, eaction, target) == (4, 1, 4)   # TC_ACT_STOLEN, egress redirect, ifb


def test_redirect_filter_proto_ip():
    got = netbuf.build_redirect_add(3, 4, protocol=netbuf.ETH_P_IP)
    assert struct.unpack_from("=I", got, 32)[0] == (10 << 16) | socket.htons(0x0800)


def test_ingress_messages():
    add = netbuf.build_ingress_add(7)
    assert HDR.unpack_from(add)[1:3] == (36, 0x0605)
    assert struct.unpack_from("=BxxxiIII", add, 16) == (0, 7, 0xFFFF0000, 0xFFFFFFF1, 0)
    assert parse_attrs(add[36:]) == {1: b"ingress\0"}
    dele = netbuf.build_ingress_del(7)
    assert HDR.unpack_from(dele)[1:3] == (37, 0x0005)
    assert struct.unpack_from("=BxxxiIII", dele, 16) == (0, 7, 0xFFFF0000, 0xFFFFFFF1, 0)


def test_root_and_filter_delete_messages():
    assert netbuf.build_root_del(4) == HDR.pack(36, 37, 5, 0, 0) + \
        struct.pack("=BxxxiIII", 0, 4, 0, 0xFFFFFFFF, 0)
    fd = netbuf.build_filter_del(3)
    assert HDR.unpack_from(fd)[1:3] == (45, 0x0005)
    assert parse_attrs(fd[36:]) == {1: b"u32\0"}


def test_rtattrs_helper_masks_nested_flag():
    data = b"\0" * 36 + struct.pack("=HH", 8, 0x8002) + b"abcd"
    assert netbuf.rtattrs(data) == {2: b"abcd"}
