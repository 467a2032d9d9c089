"""``stream verify|dump`` and ``receive``: output and exit status."""
import argparse
import io
import json
import struct

import pytest

from xen_remus_compat.cli import receive_cmd, stream_cmd
from xen_remus_compat.stream import simstream, xl


def parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    stream_cmd.add_parser(sub)
    receive_cmd.add_parser(sub)
    return p


def run(argv, stdin=None):
    args = parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    rc = args.run(args, out, err, stdin=stdin)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def remus(tmp_path):
    s = simstream.build_stream(6, [{1, 2}, {3}], batch=4)
    path = tmp_path / "remus.xl"
    path.write_bytes(s.data[:-50])          # cut inside the last epoch
    return s, path


@pytest.fixture
def bad_magic(tmp_path):
    s = simstream.build_stream(2, plain=True)
    path = tmp_path / "bad.xl"
    path.write_bytes(b"Y" + s.data[1:])
    return path


def test_verify_ok(remus):
    s, path = remus
    rc, out, err = run(["stream", "verify", str(path)])
    assert rc == 0
    assert out.startswith(f"{path}: OK: xl stream, PV guest 'simguest'")
    assert f"2 complete checkpoints, the last ends at offset {s.checkpoint_ends[1]}" in out


def test_verify_json(remus):
    s, path = remus
    rc, out, _ = run(["stream", "verify", "--json", str(path)])
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] and doc["checkpoints"] == 2
    assert doc["checkpoint_offsets"] == s.checkpoint_ends[:2]
    assert doc["ended"] == "truncated" and doc["domain_name"] == "simguest"


def test_verify_bad_magic_exit_1_with_offset(bad_magic):
    rc, out, err = run(["stream", "verify", "-f", "xl", str(bad_magic)])
    assert rc == 1 and "INVALID" in out
    assert f"{bad_magic}: offset 0 (0x0): File has wrong magic number" in err


def test_verify_unknown_start_exit_1(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"hello world, not a stream")
    rc, out, err = run(["stream", "verify", str(path)])
    assert rc == 1 and "not a migration stream" in err


def test_verify_huge_length_field(tmp_path):
    s = simstream.build_stream(2, plain=True)
    at = s.boundaries[[n for _, n in s.boundaries].index("PAGE_DATA")][0]
    data = s.data[:at + 4] + struct.pack("<I", 0xFFFFFFF8) + s.data[at + 8:]
    path = tmp_path / "huge"
    path.write_bytes(data)
    rc, out, err = run(["stream", "verify", str(path)])
    assert rc == 1 and f"offset {at + 4} " in err and "exceeds max" in err


def test_verify_missing_file(tmp_path):
    rc, out, err = run(["stream", "verify", str(tmp_path / "none")])
    assert rc == 1 and "ENOENT" in err


def test_dump_lists_every_record_with_its_offset(remus):
    s, path = remus
    rc, out, err = run(["stream", "dump", str(path)])
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["offset", "(dec)", "layer"]
    rows = [l for l in lines[1:] if l.startswith("0x")]
    # every header/record of the uncut part, in order, with hex and decimal
    expect = [(o, n) for o, n in s.boundaries if o + 8 <= len(s.data) - 50]
    recs = [r for r in rows if "complete" not in r]
    for (off, name), row in zip(expect, recs):
        assert row.startswith(f"0x{off:08x} {off:>10}  "), (row, off)
        assert name.replace("libxc ", "").split()[0] in row or name in row
    marks = [r for r in rows if "checkpoint" in r and "complete" in r]
    assert [int(r.split()[1]) for r in marks] == s.checkpoint_ends[:2]
    assert "stream ends inside libxc" in out


def test_dump_json_lines(remus):
    s, path = remus
    rc, out, _ = run(["stream", "dump", "--json", str(path)])
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert rows[0] == {"offset": 0, "layer": "xl", "record": "xl header",
                       "length": s.boundaries[1][0],
                       "detail": rows[0]["detail"]}
    pages = [r for r in rows if r["record"] == "PAGE_DATA"]
    assert [r["epoch"] for r in pages][-2:] == [1, 2]


def test_dump_malformed_exit_1(bad_magic):
    rc, out, err = run(["stream", "dump", "-f", "xl", str(bad_magic)])
    assert rc == 1 and "error:" in err and "offset 0" in err


def test_receive_from_file(remus):
    s, path = remus
    rc, out, err = run(["receive", "-i", str(path), "--sim"])
    assert rc == 0
    assert "Remus Failover for domain simguest to checkpoint 2" in out
    assert "memory: 6 pages, 0 not matching" in out
    assert "Ready to receive domain" in err


def test_receive_json(remus):
    s, path = remus
    rc, out, err = run(["receive", "-i", str(path), "--json", "--sim"])
    doc = json.loads(out)
    assert rc == 0 and doc["checkpoints"] == 2 and doc["failover_ok"]
    assert doc["pages_per_checkpoint"] == s.pages_per_checkpoint[:2]


def test_receive_stdin_writes_banner_to_stdout(remus):
    s, path = remus
    args = parser().parse_args(["receive"])
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    err = io.StringIO()
    rc = args.run(args, out, err, stdin=io.BytesIO(path.read_bytes()))
    out.flush()
    assert rc == 0 and raw.getvalue() == xl.BANNER     # nothing else on stdout
    assert "Remus Failover" in err.getvalue()


def test_receive_failure_before_first_checkpoint(remus, tmp_path):
    s, _ = remus
    path = tmp_path / "early"
    path.write_bytes(s.data[:s.checkpoint_ends[0] - 1])
    rc, out, err = run(["receive", "-i", str(path)])
    assert rc == 1 and "Domain creation failed" in err
    assert "before the first checkpoint" in err


def test_receive_bad_magic(bad_magic):
    rc, out, err = run(["receive", "-i", str(bad_magic)])
    assert rc == 1 and "wrong magic number" in err and "offset 0" in err
