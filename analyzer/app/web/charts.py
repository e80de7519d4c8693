"""Inline SVG charts for pages that must fetch nothing: the rollout report now, the dashboard later.

Every text that reaches the SVG (titles, series names, labels) is HTML-escaped here, so callers may
pass values from specs and labels as they are. Non-finite and missing values leave a gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
CANARY, BASELINE, THRESHOLD = "#d62728", "#1f77b4", "#555555"
LOG_CEILING = 1e12  # e-values can be infinite; the chart clips them here


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None or non-finite = gap
    color: str = PALETTE[0]
    band: Sequence[tuple[float, float | None, float | None]] = ()  # (x, low, high): an interval around y
    step: bool = False  # hold each value until the next x (weights)
    dashed: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal reference line, e.g. a threshold."""

    y: float
    label: str
    color: str = THRESHOLD


@dataclass(frozen=True)
class Frame:
    width: int = 640
    height: int = 220
    left: int = 58
    right: int = 12
    top: int = 26
    bottom: int = 34
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _nice(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.0e}"
    return f"{v:g}"


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool) -> None:
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0
        self.a, self.b = a, b

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(min(max(v, 10 ** self.lo), 10 ** self.hi))
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _y_domain(values: list[float], rules: Sequence[Rule], log: bool, y_min: float | None) -> tuple[float, float]:
    vals = [v for v in values if _finite(v)] + [r.y for r in rules]
    if log:
        vals = [min(max(v, 1e-6), LOG_CEILING) for v in vals if v > 0] or [1.0]
        lo, hi = min(vals), max(vals)
        return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi) + 1e-9)
    vals = vals or [0.0, 1.0]
    lo = min(vals) if y_min is None else min(y_min, *vals)
    hi = max(vals)
    if hi == lo:
        hi = lo + (abs(lo) or 1.0)
    pad = (hi - lo) * 0.05
    return (lo if y_min is not None else lo - pad), hi + pad


def _path(points: Sequence[tuple[float, float]], step: bool) -> str:
    parts = []
    for i, (x, y) in enumerate(points):
        if i == 0:
            parts.append(f"M{x:.1f},{y:.1f}")
        elif step:
            parts.append(f"H{x:.1f}V{y:.1f}")
        else:
            parts.append(f"L{x:.1f},{y:.1f}")
    return "".join(parts)


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split at gaps (None or non-finite y)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if _finite(y):
            runs[-1].append((x, float(y)))  # type: ignore[arg-type]
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str = "minute",
    y_label: str = "",
    log_y: bool = False,
    rules: Sequence[Rule] = (),
    y_min: float | None = None,
    frame: Frame | None = None,
) -> str:
    """An <svg> with one line per series (with its interval band), reference rules, axes and a legend."""
    f = frame or Frame()
    xs = [x for s in series for x, _ in s.points] + [x for s in series for x, _, _ in s.band]
    ys = [y for s in series for _, y in s.points if y is not None]
    ys += [v for s in series for _, lo, hi in s.band for v in (lo, hi) if v is not None]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi == x_lo:
        x_hi = x_lo + 1.0
    y_lo, y_hi = _y_domain(ys, rules, log_y, y_min)
    sx = _Scale(x_lo, x_hi, f.left, f.left + f.plot_w, False)
    sy = _Scale(y_lo, y_hi, f.top + f.plot_h, f.top, log_y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{f.width}" height="{f.height}" '
           f'viewBox="0 0 {f.width} {f.height}"><title>{escape(title)}</title>',
           f'<text x="{f.left}" y="16" class="chart-title">{escape(title)}</text>',
           f'<rect x="{f.left}" y="{f.top}" width="{f.plot_w:.1f}" height="{f.plot_h:.1f}" class="plot"/>']
    y_ticks = ([10.0 ** e for e in range(round(math.log10(y_lo)), round(math.log10(y_hi)) + 1)] if log_y
               else [t for t in _nice(y_lo, y_hi) if y_lo <= t <= y_hi])
    if log_y and len(y_ticks) > 7:
        y_ticks = y_ticks[:: math.ceil(len(y_ticks) / 6)]
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{f.left}" x2="{f.left + f.plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{f.left - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>')
    for t in [t for t in _nice(x_lo, x_hi, 8) if x_lo <= t <= x_hi]:
        x = sx(t)
        out.append(f'<text x="{x:.1f}" y="{f.top + f.plot_h + 13:.1f}" class="tick" text-anchor="middle">'
                   f'{_fmt(t)}</text>')
    out.append(f'<text x="{f.left + f.plot_w / 2:.1f}" y="{f.height - 4}" class="axis" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{f.top + f.plot_h / 2:.1f}" class="axis" text-anchor="middle" '
                   f'transform="rotate(-90 12 {f.top + f.plot_h / 2:.1f})">{escape(y_label)}</text>')
    for s in series:
        for run in _runs([(x, lo) for x, lo, _ in s.band]):
            highs = {x: hi for x, _, hi in s.band}
            top = [(sx(x), sy(highs[x])) for x, _ in run if _finite(highs[x])]
            bottom = [(sx(x), sy(lo)) for x, lo in reversed(run)]
            if top and bottom:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (*top, *bottom))
                out.append(f'<polygon points="{pts}" fill="{escape(s.color)}" fill-opacity="0.15" stroke="none"/>')
    for r in rules:
        y = sy(r.y)
        out.append(f'<line x1="{f.left}" x2="{f.left + f.plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{escape(r.color)}" stroke-dasharray="5 3"/>'
                   f'<text x="{f.left + f.plot_w - 2:.1f}" y="{y - 3:.1f}" class="tick" text-anchor="end">'
                   f'{escape(r.label)}</text>')
    for s in series:
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        for run in _runs(s.points):
            pts = [(sx(x), sy(y)) for x, y in run]
            out.append(f'<path d="{_path(pts, s.step)}" fill="none" stroke="{escape(s.color)}" stroke-width="1.8"'
                       f'{dash}/>')
            if len(pts) == 1:
                out.append(f'<circle cx="{pts[0][0]:.1f}" cy="{pts[0][1]:.1f}" r="2.5" fill="{escape(s.color)}"/>')
    x = f.left + 6.0
    for s in series:  # legend, left to right along the top
        out.append(f'<rect x="{x:.1f}" y="{f.top + 5}" width="10" height="3" fill="{escape(s.color)}"/>'
                   f'<text x="{x + 13:.1f}" y="{f.top + 10}" class="legend">{escape(s.name)}</text>')
        x += 24 + 6.2 * len(s.name)
    out.append("</svg>")
    return "".join(out)


CHART_CSS = """
svg.chart { font: 11px system-ui, sans-serif; background: #fff; }
svg.chart .plot { fill: #fafafa; stroke: #ccc; }
svg.chart .grid { stroke: #e6e6e6; }
svg.chart .tick { fill: #555; }
svg.chart .axis { fill: #333; }
svg.chart .legend { fill: #222; }
svg.chart .chart-title { font-weight: 600; fill: #111; font-size: 12px; }
"""
