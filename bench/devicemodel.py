#!/usr/bin/env python3
"""The device-model save of an HVM guest, per checkpoint, as ratios in one run.

What the engine adds to each HVM checkpoint (remus/devicemodel.py): in the
guest's pause ``stop`` + ``xen-save-devices-state`` (suspend) and ``cont``
(resume); after it, reading the state and framing the records.  Measured
against real qemu where Debian's binaries are installed (no hypervisor
needed): the Xen device model ``xen-qemu-system-i386 -machine none`` and a
full PC ``qemu-system-x86_64 -machine pc`` (~13 KB of device state, the
size of an HVM guest's), and against the simulation's stand-in in its own
process.  Baseline, same run, same socket: three bare QMP round trips
(``query-status``), the protocol's floor for three commands; and, when the
``qemu.qmp`` package is importable, the same sequence through its client.

Run: ``.venv/bin/python bench/devicemodel.py [N]``.
"""
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xen_remus_compat.remus import devicemodel as D  # noqa: E402
from xen_remus_compat.remus.qmp import QMPClient  # noqa: E402

QEMUS = [("xen-qemu-system-i386 -machine none", "/usr/libexec/xen-qemu-system-i386",
          "none,accel=qtest"),
         ("qemu-system-x86_64 -machine pc", "/usr/bin/qemu-system-x86_64", "pc,accel=tcg")]


def med_us(values):
    return statistics.median(values) * 1e6


def ours(sock, save, n):
    dm = D.DeviceModel(1, socket_path=sock, save_path=save, xenstore=None).open()
    total = []
    for _ in range(n):
        t = time.perf_counter()
        dm.suspend()
        dm.resume()
        data = dm.records()
        total.append(time.perf_counter() - t)
    st = dm.stats
    dm.close()
    paused = [a + b for a, b in zip(st.suspend, st.resume)]
    return med_us(total), med_us(paused), med_us(st.records), len(data)


def floor(sock, n):
    c = QMPClient(sock)
    c.connect()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        for _ in range(3):
            c.execute("query-status")
        ts.append(time.perf_counter() - t)
    c.close()
    return med_us(ts)


def qemu_qmp(sock, save, n):
    try:
        from qemu.qmp import QMPClient as Theirs
    except ImportError:
        return None
    loop = asyncio.new_event_loop()
    q = Theirs("bench")
    run = lambda c: loop.run_until_complete(asyncio.wait_for(c, 5))  # noqa: E731
    run(q.connect(sock))
    wfd = os.open(save, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    rfd = os.open(save, os.O_RDONLY)
    q.send_fd_scm(wfd)
    fdset = run(q.execute("add-fd"))["fdset-id"]
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run(q.execute("stop"))
        os.lseek(wfd, 0, 0)
        os.ftruncate(wfd, 0)
        run(q.execute("xen-save-devices-state",
                      {"filename": f"/dev/fdset/{fdset}", "live": True}))
        run(q.execute("cont"))
        os.pread(rfd, os.fstat(rfd).st_size, 0)
        ts.append(time.perf_counter() - t)
    run(q.execute("remove-fd", {"fdset-id": fdset}))
    run(q.disconnect())
    loop.close()
    os.close(wfd)
    os.close(rfd)
    return med_us(ts)


def report(name, sock, save, n):
    total, paused, records, size = ours(sock, save, n)
    base = floor(sock, n)
    print(f"{name}: {size} bytes of state; per checkpoint {total:.0f} us "
          f"(guest paused {paused:.0f} us, records after resume {records:.0f} us); "
          f"3 bare round trips {base:.0f} us; ratio {total / base:.2f}")
    theirs = qemu_qmp(sock, save, n)
    if theirs is not None:
        print(f"  qemu.qmp client, same sequence: {theirs:.0f} us; ours/qemu.qmp "
              f"{total / theirs:.2f}")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for name, binary, machine in QEMUS:
        if not os.access(binary, os.X_OK):
            print(f"{name}: not installed, skipped")
            continue
        d = tempfile.mkdtemp()
        sock = os.path.join(d, "qmp-libxl-1")
        p = subprocess.Popen([binary, "-machine", machine, "-nodefaults", "-display",
                              "none", "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
                             stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(sock):
                time.sleep(0.05)
            report(name, sock, os.path.join(d, "qemu-save.1"), n)
        finally:
            p.terminate()
            p.wait()
    d = tempfile.mkdtemp()
    p = subprocess.Popen([sys.executable, "-m", "xen_remus_compat.sim.devicemodel", d],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        sock = p.stdout.readline().strip()
        report("simulated stand-in (own process)", sock, os.path.join(d, "qemu-save.1"), n)
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
