"""Per-checkpoint network buffering cost: our BUFFER / RELEASE_ONE path
against one raw rtnetlink round trip of the same message, in the same run.

Budget (design.md, "Performance budget"): within 2x of the raw round trip,
tens of microseconds.  Runs as root in a network namespace of its own
(a veth pair and an IFB), which it deletes afterwards.

On a kernel without sch_plug (CONFIG_NET_SCH_PLUG unset) the IFB's root
qdisc is a pfifo and each "action" is a pfifo change of the same size and
path (the PfifoStandIn); the output says which one ran.  pyroute2's own
``IPRoute.tc('change', ...)`` is timed too, for information.

    sudo .venv/bin/python bench/netbuf.py [iterations]
"""
from __future__ import annotations

import os
import statistics
import struct
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xen_remus_compat import errors  # noqa: E402
from xen_remus_compat.devices import netbuf  # noqa: E402


def sh(*argv):
    subprocess.run(list(argv), check=True, capture_output=True)


def raw_roundtrip(sock, buf, n):
    """The baseline: patch seq, send, read the ack, check it -- nothing else."""
    seq = 1
    rbuf = bytearray(65536)
    t0 = time.perf_counter()
    for _ in range(n):
        seq += 1
        struct.pack_into("=I", buf, 8, seq)
        sock.send(buf)
        sock.recv_into(rbuf)
        if struct.unpack_from("=i", rbuf, 16)[0]:
            raise OSError(-struct.unpack_from("=i", rbuf, 16)[0], "raw request failed")
    return (time.perf_counter() - t0) / n


def ours(nic, n):
    t0 = time.perf_counter()
    for _ in range(n // 2):
        nic.postsuspend()
        nic.commit()
    return (time.perf_counter() - t0) / (2 * (n // 2))


def pyroute2_tc(ns, ifindex, n):
    from pyroute2 import IPRoute
    with IPRoute(netns=netbuf.netns_path(ns), flags=0) as ipr:
        ipr.tc("change", "pfifo", ifindex, parent=netbuf.TC_H_ROOT, limit=1000)
        t0 = time.perf_counter()
        for _ in range(n):
            ipr.tc("change", "pfifo", ifindex, parent=netbuf.TC_H_ROOT, limit=1000)
        return (time.perf_counter() - t0) / n


def main(argv) -> int:
    if os.geteuid() != 0:
        print("bench/netbuf.py: needs root (network namespaces)", file=sys.stderr)
        return 1
    n = int(argv[1]) if len(argv) > 1 else 20000
    ns = "xrcbench-" + uuid.uuid4().hex[:8]
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "vh0", "type", "veth", "peer", "name", "vg0")
        sh("ip", "-n", ns, "link", "set", "vh0", "up")
        pooldir = f"/tmp/{ns}-pool"
        registry = netbuf.CleanupRegistry()
        try:
            nic = netbuf.BufferedNIC("vh0", netns=ns, pool_dir=pooldir, registry=registry)
            what = "plug (TCQ_PLUG_BUFFER / TCQ_PLUG_RELEASE_ONE)"
        except errors.EnvironmentProblem as e:
            print(f"note: {e}")
            nic = netbuf.BufferedNIC("vh0", netns=ns, pool_dir=pooldir, registry=registry,
                                     buffer_class=netbuf.PfifoStandIn)
            what = "pfifo limit change (stand-in: this kernel has no sch_plug)"
        try:
            msg = bytearray(nic.buffer._msgs[netbuf.TCQ_PLUG_BUFFER])
            raw = netbuf._netlink_socket(ns)
            raw.bind((0, 0))
            rounds, mine, base = 7, [], []
            ours(nic, 2000)                        # warm up both paths
            raw_roundtrip(raw, msg, 2000)
            for _ in range(rounds):                # interleaved, medians
                mine.append(ours(nic, n // rounds))
                base.append(raw_roundtrip(raw, msg, n // rounds))
            m, b = statistics.median(mine), statistics.median(base)
            pr = pyroute2_tc(ns, nic.ifb.index, 500)
            raw.close()
        finally:
            nic.uninstall()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", f"/tmp/{ns}-pool"])
    print(f"message: {what}, {len(msg)} bytes, {n} requests per path, median of {rounds}")
    print(f"ours (BufferedNIC.postsuspend/commit): {m * 1e6:8.2f} us/request")
    print(f"raw netlink round trip, same bytes:    {b * 1e6:8.2f} us/request")
    print(f"pyroute2 IPRoute.tc('change'):         {pr * 1e6:8.2f} us/request (not used)")
    ratio = m / b
    print(f"ratio ours/raw: {ratio:.2f} (budget 2.00) -> {'OK' if ratio <= 2 else 'OVER'}")
    return 0 if ratio <= 2 else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
