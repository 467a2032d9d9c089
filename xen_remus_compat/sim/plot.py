"""``demo --plot FILE.svg``: the demo's per-checkpoint series as a small SVG.

Two panels over the checkpoint number: the guest's pause per checkpoint
(ms, bars) and the stream throughput between checkpoints (MB/s, a line).
Written by hand with the standard library (docs/decisions.md, "The demo's
plot"): two fixed panels do not need a plotting library, and the file opens
in any browser.  Missing values (``None``) leave gaps.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

__all__ = ["svg", "nice_max"]

WIDTH, PANEL, MARGIN_L, MARGIN_R, MARGIN_T, GAP = 720, 200, 64, 16, 40, 56


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (> 0)."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _panel(top: float, title: str, unit: str, xs: Sequence[int],
           ys: Sequence[Optional[float]], kind: str, color: str) -> List[str]:
    left, right = MARGIN_L, WIDTH - MARGIN_R
    bottom = top + PANEL
    known = [y for y in ys if y is not None]
    ymax = nice_max(max(known) if known else 1.0)
    n = max(len(xs), 1)
    step = (right - left) / n
    out = [f'<text x="{left}" y="{_fmt(top - 10)}" class="title">{escape(title)}</text>',
           f'<line x1="{left}" y1="{_fmt(bottom)}" x2="{right}" y2="{_fmt(bottom)}" '
           'class="axis"/>',
           f'<line x1="{left}" y1="{_fmt(top)}" x2="{left}" y2="{_fmt(bottom)}" class="axis"/>']
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * PANEL
        out.append(f'<text x="{left - 6}" y="{_fmt(y + 4)}" class="tick" '
                   f'text-anchor="end">{escape(_fmt(frac * ymax))}</text>')
        if frac:
            out.append(f'<line x1="{left}" y1="{_fmt(y)}" x2="{right}" y2="{_fmt(y)}" '
                       'class="grid"/>')
    out.append(f'<text x="14" y="{_fmt(top + PANEL / 2)}" class="tick" '
               f'transform="rotate(-90 14 {_fmt(top + PANEL / 2)})" '
               f'text-anchor="middle">{escape(unit)}</text>')
    points: List[Tuple[float, float]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        cx = left + (i + 0.5) * step
        if y is None:
            if kind == "line" and len(points) > 1:
                out.append(_polyline(points, color))
            points = [] if kind == "line" else points
            continue
        h = y / ymax * PANEL
        if kind == "bar":
            out.append(f'<rect x="{_fmt(cx - step * 0.4)}" y="{_fmt(bottom - h)}" '
                       f'width="{_fmt(max(step * 0.8, 0.5))}" height="{_fmt(h)}" '
                       f'fill="{color}"><title>checkpoint {x}: {escape(_fmt(y))} '
                       f'{escape(unit)}</title></rect>')
        else:
            points.append((cx, bottom - h))
    if kind == "line" and points:
        out.append(_polyline(points, color) if len(points) > 1 else
                   f'<circle cx="{_fmt(points[0][0])}" cy="{_fmt(points[0][1])}" r="2" '
                   f'fill="{color}"/>')
    for i, x in enumerate(xs):
        if n <= 20 or i % max(1, n // 10) == 0:
            out.append(f'<text x="{_fmt(left + (i + 0.5) * step)}" y="{_fmt(bottom + 14)}" '
                       f'class="tick" text-anchor="middle">{x}</text>')
    return out


def _polyline(points: Sequence[Tuple[float, float]], color: str) -> str:
    pts = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
    return f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>'


def svg(series: Sequence[dict], *, title: str = "Remus demo") -> str:
    """The SVG document for a demo series (``DemoResult.series``)."""
    xs = [int(e["checkpoint"]) for e in series]
    height = MARGIN_T + 2 * PANEL + GAP + 40
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
            "<style>.axis{stroke:#333}.grid{stroke:#ddd}.title{font-size:13px;"
            "font-weight:bold}.tick{fill:#333}</style>",
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
            f'<text x="{MARGIN_L}" y="18" class="title">{escape(title)}</text>']
    body += _panel(MARGIN_T + 16, "pause per checkpoint", "ms", xs,
                   [e.get("pause_ms") for e in series], "bar", "#4477aa")
    body += _panel(MARGIN_T + 16 + PANEL + GAP, "throughput since the previous "
                   "checkpoint", "MB/s", xs, [e.get("mb_per_s") for e in series],
                   "line", "#cc6677")
    body.append(f'<text x="{WIDTH / 2:.0f}" y="{height - 4}" class="tick" '
                'text-anchor="middle">checkpoint</text>')
    body.append("</svg>")
    return "\n".join(body) + "\n"
