"""Every stream the ENGINE writes passes Xen's own verifier classes (Debian's
xen-utils-4.17, driven checkpoint-aware as xl-side.md §5.5 describes), whole
and cut anywhere, with the same count of complete checkpoints as our verifier.

Streams (a simulated PV guest on lowlevel/simxen, real trampoline):

* ``remus``: ``remus --sim -s "" simguest "<stand-in>"``: the stand-in answers
  the 54-byte banner (§3.1) and stores what follows, i.e. the xl form;
* ``saver``: ``xen.remus.save.Saver`` on a plain file (xl form);
* ``blackhole``: ``engine.Loop(blackhole=True)`` into a file instead of
  /dev/null (``xl remus -b``: no xl header, §2.1/§3.5).

Cuts: at every header and record boundary, and inside headers, record
headers, bodies and padding.  A prefix of a good stream is a truncation
(never a malformed record); it is acceptable (a receiver fails over) iff at
least one checkpoint is complete in it (§3.6).
"""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tier_unavailable
from xen_remus_compat.sim import simxen
from xen_remus_compat.stream.reader import Header, Mark
from xen_remus_compat.stream.records import Record
from xen_remus_compat.stream.verify import XEN_PYTHON, verify, verify_with_xen

PY = sys.executable
GUEST = simxen.SimDomain(name="simguest", pages=256, dirty_rate=2.0, seed=11)
CHECKPOINTS = 4
LIBXL_IDENT = bytes.fromhex("4c6962786c466d74")          # "LibxlFmt", §3.3
XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"         # §3.2

# Runs under simxen: "saver FILE N DOMAIN" or "blackhole FILE N".
_DRIVER = r'''
import os, sys, time
mode, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = [0]
def commit():
    count[0] += 1
    time.sleep(0.02)            # let the guest dirty pages between epochs
    return count[0] < n
if mode == "blackhole":
    from xen_remus_compat.remus import engine
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stats = engine.Loop(1, fd, config=None, blackhole=True, commit=commit).run()
    os.close(fd)
else:
    from xen_remus_compat.legacy import save, vm
    vm.SOURCE = "sim"
    with open(out, "wb") as f:
        saver = save.Saver(sys.argv[4], f, None, None, commit, 0, 0)
        saver.start()
    stats = saver.stats
print(stats.checkpoints)
'''


def _driver(tmp, mode):
    script, out = tmp / "driver.py", tmp / f"{mode}.bin"
    script.write_text(_DRIVER)
    proc = simxen.run([PY, str(script), mode, str(out), str(CHECKPOINTS), GUEST.name],
                      tmp / f"sim-{mode}", GUEST, capture_output=True, text=True,
                      timeout=120, cwd=str(tmp))
    assert proc.returncode == 0 and proc.stdout.split() == [str(CHECKPOINTS)], \
        proc.stdout + proc.stderr
    recorded = len(simxen.read_state(tmp / f"sim-{mode}").checkpoints)
    return out.read_bytes(), recorded


def _remus(tmp):
    out, state = tmp / "remus.bin", tmp / "sim-remus"
    stand_in = "sh -c " + shlex.quote(
        "printf 'xl migration receiver ready, send binary domain data.\\n'; "
        f"exec cat > {shlex.quote(str(out))}")
    env = simxen.environment(state, GUEST)
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus", "--sim", "-i", "20",
                          "-s", "", GUEST.name, stand_in], env=env, cwd=str(tmp),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60

    def taken():
        try:
            return len(simxen.read_state(state).checkpoints)
        except Exception:
            return 0
    while taken() < CHECKPOINTS:
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0 and "*** signalled ***" in stdout, stdout + stderr
    return out.read_bytes(), len(simxen.read_state(state).checkpoints)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """name -> (bytes, Xen verifier format, checkpoints simxen recorded)."""
    if not os.path.isfile(os.path.join(XEN_PYTHON, "xen", "migration", "libxl.py")):
        tier_unavailable("conformance", f"Xen's python migration tools missing "
                         f"under {XEN_PYTHON} (install xen-utils-4.17)")
    ok, why = simxen.available()
    if not ok:
        tier_unavailable("conformance", f"simxen not built: {why}")
    tmp = tmp_path_factory.mktemp("engine-streams")
    out = {"remus": (*_remus(tmp), "xl")}
    for mode, fmt in (("saver", "xl"), ("blackhole", "libxl")):
        data, recorded = _driver(tmp, mode)
        out[mode] = (data, recorded, fmt)
    return out


NAMES = ["remus", "saver", "blackhole"]


def _layout(data):
    """Headers, records and checkpoint marks of the whole stream (ours)."""
    events = []
    rep = verify(data, on_event=events.append)
    assert rep.ok, rep.error
    heads = [e for e in events if isinstance(e, Header)]
    recs = [e for e in events if isinstance(e, Record)]
    marks = [e.offset for e in events if isinstance(e, Mark) and e.kind == "checkpoint"]
    return rep, heads, recs, marks


def _check_cut(data, cut, fmt, marks):
    k = sum(1 for end in marks if end <= cut)
    xen = verify_with_xen(data[:cut], fmt=fmt)
    ours = verify(data[:cut])
    assert xen.checkpoints == ours.checkpoints == k, (cut, xen.error, ours.error)
    assert xen.ok == ours.ok == (k > 0), (cut, xen.error, ours.error)
    if cut < len(data):
        # a prefix is a truncation, never a malformed stream
        assert xen.ended == "eof", (cut, xen.error)
        assert ours.ended in ("eof", "truncated"), (cut, ours.error)


@pytest.mark.parametrize("name", NAMES)
def test_whole_stream_passes_xen_verifier(streams, name):
    data, recorded, fmt = streams[name]
    xen = verify_with_xen(data, fmt=fmt)
    ours = verify(data)
    assert xen.ok and ours.ok, (xen.error, ours.error)
    assert xen.checkpoints == ours.checkpoints
    assert not ours.warnings, ours.warnings          # §3.5 record order
    # Remus streams are never terminated (§3.5): they stop after checkpoints
    assert xen.ended == "eof" and not xen.complete
    assert xen.log.count("Libxl Record: Checkpoint end, length 0") == xen.checkpoints
    if name == "remus":
        # killed with SIGTERM: the last epoch may be cut off
        assert recorded >= CHECKPOINTS and xen.checkpoints in (recorded - 1, recorded)
    else:
        assert xen.checkpoints == recorded == CHECKPOINTS
    if fmt == "xl":
        assert data.startswith(XL_MAGIC)
        assert xen.config["c_info"]["name"] == GUEST.name
        assert "domid" not in xen.config["c_info"]
        assert xen.log[0] == "Processed xl header"
    else:
        assert data.startswith(LIBXL_IDENT) and xen.config is None


@pytest.mark.parametrize("name", NAMES)
def test_cut_at_every_record_boundary(streams, name):
    data, _, fmt = streams[name]
    _, heads, recs, marks = _layout(data)
    cuts = sorted({0, len(data)} | {h.offset for h in heads} | {r.offset for r in recs}
                  | {r.end for r in recs if r.end <= len(data)})
    assert len(cuts) > 8 * len(marks)         # every epoch has several records
    for cut in cuts:
        _check_cut(data, cut, fmt, marks)


@pytest.mark.parametrize("name", NAMES)
def test_cut_inside_headers_and_records(streams, name):
    data, _, fmt = streams[name]
    _, heads, recs, marks = _layout(data)
    inside = {h.offset + h.size // 2 for h in heads}
    for r in recs:
        inside |= {r.offset + 1, r.offset + 4, r.offset + 7}      # record header
        if r.length:
            inside |= {r.offset + 8 + r.length // 2, r.end - 1}   # body / padding
    # right before and after each checkpoint completes
    inside |= {m - 1 for m in marks} | {m + 1 for m in marks}
    for cut in sorted(c for c in inside if 0 < c < len(data)):
        _check_cut(data, cut, fmt, marks)
