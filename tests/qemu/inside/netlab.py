"""A two-namespace network for the in-VM tests: "dom0" holds ``vh0``, the host
end of a veth pair whose other end ``vg0`` sits in "guest" (the guest's NIC).

Only the guest sends (UDP to the dom0 address); IPv6 is off and both sides
have static neighbour entries, so no ARP or ND frame ever enters the plug:
every packet the qdisc counts is one of ours, and the counts are exact.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import struct
import subprocess
import time
import uuid
from typing import List, Optional

GUEST_ADDR, DOM0_ADDR = "192.0.2.2", "192.0.2.1"      # RFC 5737 TEST-NET-1
DOM0_MAC, GUEST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"   # locally administered
PORT = 40999
CLONE_NEWNET = 0x40000000
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33    # asm-generic/socket.h
SOCKBUF = 8 << 20
UDP_IP_HEADERS = 8 + 20

_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str):
    """Run this thread in namespace ``name`` for the block (sockets opened
    inside stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def ip_batch(*lines: str, netns: Optional[str] = None) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          input="".join(line + "\n" for line in lines))
    if proc.returncode:
        raise AssertionError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr.strip()}")


class Lab:
    """The namespaces, the veth pair, and traffic between them."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.dom0 = f"xrcq-{tag}-d"
        self.guest = f"xrcq-{tag}-g"
        self._socks: List[socket.socket] = []
        self._listener: Optional[socket.socket] = None
        self._sender: Optional[socket.socket] = None

    def build(self) -> "Lab":
        """Three ``ip -batch`` runs (processes are slow under TCG)."""
        ip_batch(f"netns add {self.dom0}", f"netns add {self.guest}")
        for ns in (self.dom0, self.guest):
            with in_netns(ns):
                for conf in ("all", "default"):
                    with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                        f.write("1")
        ip_batch("link set lo up",
                 f"link add vh0 address {DOM0_MAC} type veth peer name vg0 "
                 f"address {GUEST_MAC} netns {self.guest}",
                 f"addr add {DOM0_ADDR}/24 dev vh0",
                 f"neigh replace {GUEST_ADDR} lladdr {GUEST_MAC} dev vh0 nud permanent",
                 "link set vh0 up", netns=self.dom0)
        ip_batch("link set lo up",
                 f"addr add {GUEST_ADDR}/24 dev vg0",
                 f"neigh replace {DOM0_ADDR} lladdr {DOM0_MAC} dev vg0 nud permanent",
                 "link set vg0 up", netns=self.guest)
        return self

    def destroy(self) -> None:
        for s in self._socks:
            s.close()
        subprocess.run(["ip", "-force", "-batch", "-"], capture_output=True, text=True,
                       input=f"netns del {self.dom0}\nnetns del {self.guest}\n")

    # -- observation -----------------------------------------------------------
    def link(self, ns: str, dev: str) -> dict:
        return json.loads(sh("ip", "-n", ns, "-j", "link", "show", "dev", dev).stdout)[0]

    def tc(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("tc", "-n", self.dom0, *argv, check=check)

    def root_qdisc(self, dev: str) -> Optional[dict]:
        """``tc -s -j qdisc show dev DEV``'s root entry (kind, qlen, drops, ...)."""
        for q in json.loads(self.tc("-s", "-j", "qdisc", "show", "dev", dev).stdout):
            if q.get("root"):
                return q
        return None

    def wait_qdisc(self, dev: str, *, qlen: int, drops: int = 0, wait: float = 10.0) -> dict:
        """Poll until the root qdisc holds ``qlen`` packets and dropped ``drops``
        (every packet sent has then reached the plug)."""
        deadline = time.monotonic() + wait
        while True:
            q = self.root_qdisc(dev) or {}
            if (q.get("qlen"), q.get("drops")) == (qlen, drops):
                return q
            if time.monotonic() > deadline:
                raise AssertionError(f"{dev}: root qdisc never reached qlen {qlen} "
                                     f"drops {drops}: {q}")
            time.sleep(0.05)

    # -- traffic ---------------------------------------------------------------
    def listener(self) -> socket.socket:
        if self._listener is None:
            with in_netns(self.dom0):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKBUF)
            s.bind((DOM0_ADDR, PORT))
            s.setblocking(False)
            self._socks.append(s)
            self._listener = s
        return self._listener

    def send(self, seqs, size: int = 64) -> None:
        """One datagram per sequence number, ``size`` bytes of UDP payload."""
        self.listener()
        if self._sender is None:
            with in_netns(self.guest):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # held packets still count against the sender's buffer (veth
            # keeps skb->sk), so a default-sized one would block the test
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKBUF)
            s.setblocking(False)
            s.connect((DOM0_ADDR, PORT))
            self._socks.append(s)
            self._sender = s
        pad = b"r" * (size - 4)
        for seq in seqs:
            try:
                self._sender.send(struct.pack("!I", seq) + pad)
            except BlockingIOError:
                raise AssertionError(f"send buffer full at datagram {seq}") from None

    def receive(self, count: Optional[int] = None, wait: float = 5.0,
                settle: float = 0.3) -> List[int]:
        """Sequence numbers received, in arrival order: waits up to ``wait``
        for ``count`` of them, then ``settle`` more for any extra; with
        ``count=None`` just listens for ``settle``."""
        s = self.listener()
        got: List[int] = []
        deadline = time.monotonic() + (wait if count else settle)
        extra_until = None
        while True:
            now = time.monotonic()
            if count is not None and len(got) >= count and extra_until is None:
                extra_until = now + settle
            end = extra_until if extra_until is not None else deadline
            if now >= end:
                return got
            r, _, _ = select.select([s], [], [], end - now)
            if r:
                while True:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        break
                    got.append(struct.unpack("!I", data[:4])[0])

