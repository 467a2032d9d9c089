"""Every input bounded (issue 12, items 10 and 11), measured on the real
command in a child process: size bombs are refused at once with exit 1 and a
small peak RSS, deep nesting stops at the reader's limit, a 10 MB input with
one error costs about what parsing it costs, and OUTDIR is untouched by any
failure, with non-regular targets refused rather than written through or
hung on."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "xend-domains"

#: runs the CLI in-process and prints its own peak RSS (KiB) on fd 3
PEAK = textwrap.dedent("""
    import os, resource, sys
    from xen_remus_compat.cli.main import main
    rc = main(sys.argv[1:])
    os.write(int(os.environ["PEAK_FD"]),
             b"%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    sys.exit(rc)
""")
#: the same interpreter with the package imported and nothing read
BASE = textwrap.dedent("""
    import os, resource
    import xen_remus_compat.cli.main
    os.write(int(os.environ["PEAK_FD"]),
             b"%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def run_peak(args, timeout=60, code=PEAK):
    r, w = os.pipe()
    proc = subprocess.run([sys.executable, "-c", code, *args], pass_fds=(w,),
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PEAK_FD=str(w)))
    os.close(w)
    with os.fdopen(r) as f:
        peak = int(f.read() or 0)
    return proc.returncode, proc.stderr, peak


@pytest.fixture(scope="module")
def base_kib():
    return run_peak([], code=BASE)[2]


@pytest.mark.parametrize("text,what", [
    ("(domain (name b) (memory 64) (vcpus 100000000) (image (linux (kernel /k))))", "vcpus"),
    ("(domain (name b) (memory 64) (vcpus 30000000) (image (linux (kernel /k))))", "vcpus"),
    ("(domain (name b) (memory 99999999999999999) (image (linux (kernel /k))))", "memory"),
    ('{"c_info": {"name": "j", "type": "pv"}, "b_info": {"max_vcpus": 1, '
     '"avail_vcpus": [1000000000000], "max_memkb": 65536}}', "vcpu numbers"),
    ('{"c_info": {"name": "j", "type": "hvm"}, "b_info": {"max_vcpus": 129, '
     '"max_memkb": 65536, "type.hvm": {}}}', "more than Xen supports for a HVM"),
])
def test_size_bombs_are_refused_quickly_and_small(tmp_path, base_kib, text, what):
    src = tmp_path / ("in.json" if text.startswith("{") else "in.sxp")
    src.write_text(text)
    rc, err, peak = run_peak(["convert", str(src), "-o", str(tmp_path / "o"), "--json"],
                             timeout=30)
    assert rc == 1 and what in err and "Traceback" not in err, err
    assert peak - base_kib < 32 * 1024, f"peak {peak} KiB over a base of {base_kib}"
    assert not (tmp_path / "o").exists()


def test_deep_nesting_stops_at_the_reader_limit(tmp_path, base_kib):
    src = tmp_path / "deep.sxp"
    src.write_text("(" * 5_000_000 + ")" * 5_000_000)         # 10 MB
    rc, err, peak = run_peak(["convert", str(src), "-o", str(tmp_path / "o")], timeout=60)
    assert rc == 1 and "nested more than" in err, err
    # the whole text is read (10 MB as str), nothing more
    assert peak - base_kib < 8 * 10 * 1024, peak - base_kib


def test_an_error_costs_about_what_parsing_costs(tmp_path, base_kib):
    unit = "(domain (name d{}) (memory 64) (image (linux (kernel /k))))\n"
    body = "".join(unit.format(i) for i in range(120_000))     # ~7 MB
    good, bad = tmp_path / "good.sxp", tmp_path / "bad.sxp"
    good.write_text(body)
    bad.write_text(body + "(domain (name broken) (memory 64)\n")
    rc_bad, err, peak_bad = run_peak(["show", str(bad)], timeout=120)
    assert rc_bad == 1 and "not closed" in err, err
    rc_good, _, peak_good = run_peak(["show", str(good)], timeout=120)
    size_kib = len(body) // 1024
    # the error path keeps no second copy of the tree (was ~130x the input)
    assert peak_bad - base_kib <= 40 * size_kib, (peak_bad, size_kib)
    assert peak_bad - base_kib <= 1.5 * (peak_good - base_kib) + 16 * 1024


@pytest.mark.parametrize("kind", ["dangling-symlink", "symlink", "fifo", "directory"])
def test_non_regular_targets_are_refused_and_outdir_unchanged(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "db01.cfg"
    if kind == "dangling-symlink":
        target.symlink_to("/nonexistent/db01.cfg")
    elif kind == "symlink":
        (tmp_path / "real.cfg").write_text("x\n")
        target.symlink_to(tmp_path / "real.cfg")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = sorted(os.listdir(out))
    proc = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "convert",
                           str(EXAMPLES), "-o", str(out), "--force"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert str(target) in proc.stderr and ".tmp" not in proc.stderr, proc.stderr
    assert sorted(os.listdir(out)) == before
    if kind == "symlink":
        assert (tmp_path / "real.cfg").read_text() == "x\n"


@pytest.mark.parametrize("cmd", ["show", "convert"])
@pytest.mark.parametrize("text,what", [
    ('{"c_info": {"name": "j", "type": "pv"}, "b_info": {"max_vcpus": ' + "9" * 5000 + "}}",
     "integer of 5000 digits"),
    ('{"c_info": {"name": "a\\ud800b", "type": "pv"}, "b_info": {}}', "lone surrogate"),
])
def test_hostile_json_is_bad_input_not_a_bug(tmp_path, cmd, text, what):
    # issue 12, item 12: these were exit 2 ("internal error") before
    src = tmp_path / "in.json"
    src.write_text(text)
    args = [sys.executable, "-m", "xen_remus_compat.cli.main", cmd, str(src)]
    if cmd == "convert":
        args += ["-o", str(tmp_path / "o")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and what in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr
