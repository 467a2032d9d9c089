"""Benchmark: xend sxpr config parsing (design.md "Performance budget").

Run as ``.venv/bin/python bench/config.py`` from the repository root.  It

1. reads the whole fixture corpus and prints the time per config for our
   reader and for ``sexpdata.loads`` on the same inputs, and the ratio
   ours/sexpdata (goal <= 1.0).  Inputs sexpdata cannot parse are left out of
   the comparison and counted;
2. prints how sexpdata agrees with our reader on the 52 libvirt sexpr2xml
   fixtures (the numbers behind docs/decisions.d/sxp.md);
3. shows scaling on synthetic inputs from 1 KB to 10 MB: parse, plus
   conversion through ``config.sxpr.domains_from_text`` when that module
   exists, with time per byte and a linearity ratio.
"""
from __future__ import annotations

import gc
import logging
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xen_remus_compat import sxp  # noqa: E402

FIXTURES = pathlib.Path(os.environ.get("XRC_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SEXPDATA_OPTIONS = dict(nil=None, true=None, false=None, line_comment="#")


def corpus() -> list:
    """(name, text) of every recorded sxpr, continuations deleted."""
    items = []
    for folder in ("sexpr2xml", "xml2sexpr"):
        for f in sorted((FIXTURES / "libvirt" / folder).glob("*.sexpr")):
            items.append((f.stem, f.read_text().replace("\\\n", "")))
    items.append(("ganeti", (FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt").read_text()))
    for f in sorted((FIXTURES / "xen").glob("*/*.sxp")):
        items.append((f.parent.name + "/" + f.name, f.read_text()))
    return items


def _pass(fn, texts) -> float:
    t0 = time.perf_counter()
    for t in texts:
        fn(t)
    return (time.perf_counter() - t0) / len(texts)


def interleaved(fns, texts, budget: float = 2.0) -> list:
    """Best mean seconds per text for each of ``fns``, measured in alternating
    passes so that both see the same machine load (this host is shared)."""
    best = [float("inf")] * len(fns)
    deadline = time.perf_counter() + budget
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        for k, fn in enumerate(fns):
            best[k] = min(best[k], _pass(fn, texts))
        rounds += 1
    return best


def ours(text):
    return sxp.loads(text, lenient=True)


def compare_with_sexpdata(items) -> None:
    import sexpdata
    ok, failed = [], []
    for name, text in items:
        try:
            sexpdata.loads(text, **SEXPDATA_OPTIONS)
            ok.append(text)
        except Exception as e:          # noqa: BLE001 - we count every failure
            failed.append((name, type(e).__name__))
    texts = [t for t in ok]
    ours_t, theirs_t = interleaved(
        [ours, lambda t: sexpdata.loads(t, **SEXPDATA_OPTIONS)], texts)
    size = sum(len(t) for t in texts) / len(texts)
    print(f"corpus: {len(items)} configs; sexpdata {sexpdata.__version__} parses "
          f"{len(ok)}, fails on {len(failed)} "
          f"({', '.join(sorted(set(k for _, k in failed)))}); compared on those {len(ok)}")
    print(f"  mean config size        {size:9.0f} chars")
    print(f"  ours   per config       {ours_t * 1e6:9.1f} us")
    print(f"  sexpdata per config     {theirs_t * 1e6:9.1f} us")
    print(f"  RATIO ours/sexpdata     {ours_t / theirs_t:9.3f}   (goal <= 1.0)")
    (all_t,) = interleaved([ours], [t for _, t in items], budget=0.5)
    print(f"  ours on all {len(items)} configs: {all_t * 1e6:.1f} us per config, "
          f"{all_t * len(items) * 1e3:.2f} ms for the corpus")


def _plain(x):
    """sexpdata's result with only the types mapped (Symbol/String -> str)."""
    if isinstance(x, list):
        return [_plain(i) for i in x]
    if isinstance(x, str):
        return str(x)
    return x


def _generous(x):
    """Lossy post-processing that gives sexpdata every benefit of the doubt:
    numbers back to text, ``Quoted(Symbol("x'"))`` back to ``x``."""
    import sexpdata
    if isinstance(x, list):
        return [_generous(i) for i in x]
    if isinstance(x, sexpdata.Quoted):
        inner = _generous(x.x)
        if isinstance(inner, str) and inner.endswith("'"):
            return inner[:-1]
        return ["quote", inner]
    if isinstance(x, bool):
        return x
    if isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, str):
        return str(x)
    return x


def sexpdata_agreement(items) -> None:
    import sexpdata
    sexpr2xml = [(n, t) for n, t in items if n.startswith("sexpr2xml-")]
    configs = {"defaults": {}, "best options": SEXPDATA_OPTIONS}
    print(f"sexpdata agreement with our reader on the {len(sexpr2xml)} "
          "libvirt sexpr2xml fixtures:")
    for label, options in configs.items():
        counts = {"raises": 0, "agrees as returned": 0, "agrees after lossy fix-up": 0,
                  "differs": 0}
        for _, text in sexpr2xml:
            want = ours(text)
            try:
                got = sexpdata.parse(text, **options)
            except Exception:           # noqa: BLE001
                counts["raises"] += 1
                continue
            if _plain(got) == want:
                counts["agrees as returned"] += 1
            elif _generous(got) == want:
                counts["agrees after lossy fix-up"] += 1
            else:
                counts["differs"] += 1
        print(f"  {label:14s} " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


def synthetic(size: int, unit: str) -> str:
    n = max(1, size // len(unit))
    return unit * n


_SCALING_CHILD = r"""
import gc, sys, time
sys.path.insert(0, sys.argv[3])
from xen_remus_compat import sxp
try:
    from xen_remus_compat.config.formats.sxpr import domains_from_text as convert
except ImportError:
    convert = None
unit = open(sys.argv[2]).read()
text = unit * max(1, int(sys.argv[1]) // len(unit))
def best(fn):
    reps = max(1, 100_000 // len(text))
    b = float("inf")
    for _ in range(3):
        gc.collect()
        res = []
        t0 = time.perf_counter()
        for _ in range(reps):
            res.append(fn())
        b = min(b, (time.perf_counter() - t0) / reps)
        del res
    return b
p = best(lambda: sxp.loads(text))
c = best(lambda: convert(text, source="bench")) if convert else float("nan")
print(len(text), p, c)
"""


def scaling(items) -> None:
    """Each size in a fresh interpreter: in one long-lived process the heap
    left by the bigger runs skews the per-byte cost of the next ones
    (measured: parse+convert 1.03 in fresh processes, 1.40 in one)."""
    import subprocess
    import tempfile
    unit = dict(items)["sexpr2xml-curmem"] + "\n"
    sizes = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
    print("scaling on synthetic input (the curmem domain repeated; each size in a "
          "fresh process, best of 3):")
    print(f"  {'size':>10s} {'parse s':>10s} {'ns/byte':>8s} {'+convert s':>11s} {'ns/byte':>8s}")
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".sexpr") as f:
        f.write(unit)
        f.flush()
        for size in sizes:
            out = subprocess.run([sys.executable, "-c", _SCALING_CHILD, str(size), f.name,
                                  str(ROOT)], capture_output=True, text=True, check=True)
            n, p, c = out.stdout.split()
            rows.append((int(n), float(p), float(c)))
    for n, p, c in rows:
        print(f"  {n:>10d} {p:>10.4f} {p / n * 1e9:>8.1f} {c:>11.4f} {c / n * 1e9:>8.1f}")
    pb = [p / n for n, p, c in rows]
    cb = [c / n for n, p, c in rows]
    print("  linearity, ns/byte at 10 MB divided by ns/byte at 1 MB and at 100 KB"
          " (1.0 = linear):")
    print(f"    parse          {pb[4] / pb[3]:.2f}  {pb[4] / pb[2]:.2f}")
    print(f"    parse+convert  {cb[4] / cb[3]:.2f}  {cb[4] / cb[2]:.2f}")


def _best(fn, size: int) -> float:
    """Seconds per call over a batch lasting ~50 ms (one call for big
    inputs); results are freed outside the timing."""
    reps = max(1, 100_000 // max(size, 1))
    gc.collect()
    results = []
    t0 = time.perf_counter()
    for _ in range(reps):
        results.append(fn())
    elapsed = (time.perf_counter() - t0) / reps
    del results
    return elapsed


def main() -> int:
    if not FIXTURES.is_dir():
        print(f"fixture corpus not found at {FIXTURES} (set XRC_FIXTURES)", file=sys.stderr)
        return 2
    # the four unbalanced libvirt fixtures are read leniently; keep their
    # warnings out of the timings and the output
    logging.getLogger("xen_remus_compat").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    items = corpus()
    try:
        import sexpdata  # noqa: F401
    except ImportError:
        print("sexpdata is not installed: no baseline (pip install sexpdata)")
    else:
        compare_with_sexpdata(items)
        sexpdata_agreement(items)
    scaling(items)
    print(f"total bench time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
