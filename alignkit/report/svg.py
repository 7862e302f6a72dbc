"""Small charts as inline SVG strings: line chart, scatter with error bars, horizontal bars with
interval whiskers, ROC and precision-recall curves.

Every chart has a title, labelled axes (the caller puts units in the label) and a legend (line
charts always, bar charts when bars come from more than one group; scatter points are labelled
in place); points and bars carry a `<title>` so hovering shows the exact numbers. Non-finite
values are skipped (a NaN loss is left out, the line joins its neighbours); a chart with nothing
finite to draw says "no data". Text is escaped, so labels taken
from run files cannot inject markup. No `xmlns` is written: inline SVG in HTML5 does not need
one, and the report must not contain any http(s) address.

    >>> svg = line_chart([Series("sft", [1, 2, 3], [2.0, 1.5, 1.2])],
    ...                  title="Training loss", x_label="step", y_label="loss (nats)")
    >>> svg.count('class="series"'), "Training loss" in svg
    (1, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Iterable, Sequence

# Okabe & Ito (2008) colour-blind-safe palette, yellow left out (unreadable on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, HEIGHT = 440, 270  # outer size of an x/y chart in px, legend rows excluded
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 62, 14, 30, 46
LEGEND_ROW = 16  # px per legend row under the plot
CHAR_W = 6.2  # approximate width of one 11px sans-serif character, for label layout


def color(i: int) -> str:
    """The i-th series colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def finite(x) -> bool:
    """True for an int/float (not bool) that is neither NaN nor infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class Series:
    """One line: `xs[i], ys[i]` pairs (non-finite pairs are dropped when drawn)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    dashed: bool = False  # e.g. validation curves, drawn dashed next to the training curve
    markers: bool = False  # draw a dot at every point (sparse series such as evals)
    color_index: int | None = None  # palette slot; None = the series' position

    def points(self) -> list[tuple[float, float]]:
        return [(float(x), float(y)) for x, y in zip(self.xs, self.ys) if finite(x) and finite(y)]


@dataclass
class Point:
    """One labelled point with optional intervals on either axis."""

    label: str
    x: float
    y: float
    x_lo: float | None = None
    x_hi: float | None = None
    y_lo: float | None = None
    y_hi: float | None = None
    color_index: int | None = None


@dataclass
class Bar:
    """One horizontal bar from 0 (or the domain's start) to `value`, whisker from lo to hi."""

    label: str
    value: float
    lo: float | None = None
    hi: float | None = None
    group: str = ""  # bars of one group share a colour and a legend entry
    note: str = ""  # extra hover text, e.g. "n=40"


def nice_number(x: float, round_: bool) -> float:
    """The "nice" number (1, 2, 5 or 10 times a power of ten) closest to or above `x`.

    Heckbert, "Nice numbers for graph labels", Graphics Gems (1990): with x = f·10^e,
    1 <= f < 10, rounding picks 1 (f < 1.5), 2 (< 3), 5 (< 7) else 10; ceiling picks the
    smallest of 1, 2, 5, 10 that is >= f.
    """
    if x <= 0:
        return 1.0
    exp = math.floor(math.log10(x))
    f = x / 10 ** exp
    if round_:
        nf = 1 if f < 1.5 else 2 if f < 3 else 5 if f < 7 else 10
    else:
        nf = 1 if f <= 1 else 2 if f <= 2 else 5 if f <= 5 else 10
    return nf * 10 ** exp


def nice_ticks(lo: float, hi: float, max_ticks: int = 5, integer: bool = False) -> list[float]:
    """Evenly spaced round tick values covering [lo, hi] (Heckbert 1990 "loose" labelling).

    step = nice(nice(hi - lo, ceil) / (max_ticks - 1), round); the ticks run from
    floor(lo/step)·step to ceil(hi/step)·step. A zero-width range is widened first.
    `integer` keeps the step >= 1 (optimizer steps have no 2.5).

        >>> nice_ticks(0.0, 1.0)
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (finite(lo) and finite(hi)):
        raise ValueError(f"tick range must be finite, got ({lo}, {hi})")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_number(nice_number(hi - lo, False) / max(max_ticks - 1, 1), True)
    if integer:
        step = max(step, 1.0)
    start, stop = math.floor(lo / step), math.ceil(hi / step)
    # Multiply integer counts by the step (no accumulated float error), then round away
    # representation noise such as 0.30000000000000004.
    return [round(k * step, 12) for k in range(start, stop + 1)]


def format_tick(v: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (0.2 -> '0.2', 500 -> '500')."""
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.2g}"
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f"{v:.{decimals}f}"


def format_value(v: float | None) -> str:
    """A number for hover text and tables: 4 significant digits, '–' when missing."""
    return f"{v:.4g}" if finite(v) else "–"


@dataclass
class _Axis:
    """Linear map from a data domain to a pixel range, with its tick values."""

    lo: float
    hi: float
    px_lo: float
    px_hi: float
    ticks: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, values: Iterable[float], px_lo: float, px_hi: float,
            domain: tuple[float, float] | None = None, integer: bool = False) -> "_Axis":
        if domain is not None:
            lo, hi = domain
            ticks = [t for t in nice_ticks(lo, hi, integer=integer) if lo - 1e-12 <= t <= hi + 1e-12]
        else:
            vals = [v for v in values if finite(v)]
            ticks = nice_ticks(min(vals), max(vals), integer=integer) if vals else [0.0, 1.0]
            lo, hi = ticks[0], ticks[-1]
        return cls(lo, hi, px_lo, px_hi, ticks)

    def __call__(self, v: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.px_lo + (v - self.lo) / span * (self.px_hi - self.px_lo)

    @property
    def step(self) -> float:
        return self.ticks[1] - self.ticks[0] if len(self.ticks) > 1 else 1.0


def _f(v: float) -> str:
    """Pixel coordinate with 0.1 px precision (keeps the SVG short)."""
    return f"{v:.1f}"


def _open(width: float, height: float, title: str) -> list[str]:
    t = escape(title)
    return [f'<svg class="chart" viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" '
            f'height="{_f(height)}" role="img" aria-label="{t}">', f"<title>{t}</title>",
            f'<text class="title" x="{_f(width / 2)}" y="18" text-anchor="middle">{t}</text>']


def _no_data(title: str, width: float = WIDTH, height: float = 120) -> str:
    parts = _open(width, height, title)
    parts.append(f'<text class="no-data" x="{_f(width / 2)}" y="{_f(height / 2 + 8)}" '
                 f'text-anchor="middle">no data</text></svg>')
    return "\n".join(parts)


def _axes(parts: list[str], xa: _Axis, ya: _Axis, x_label: str, y_label: str,
          plot_bottom: float) -> None:
    """Grid lines, tick labels, axis lines and the two axis labels."""
    left, right, top = xa.px_lo, xa.px_hi, ya.px_hi
    for t in ya.ticks:
        y = ya(t)
        parts.append(f'<line class="grid" x1="{_f(left)}" y1="{_f(y)}" x2="{_f(right)}" y2="{_f(y)}"/>')
        parts.append(f'<text class="tick" x="{_f(left - 5)}" y="{_f(y + 4)}" '
                     f'text-anchor="end">{format_tick(t, ya.step)}</text>')
    for t in xa.ticks:
        x = xa(t)
        parts.append(f'<line class="grid" x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(plot_bottom)}"/>')
        parts.append(f'<text class="tick" x="{_f(x)}" y="{_f(plot_bottom + 14)}" '
                     f'text-anchor="middle">{format_tick(t, xa.step)}</text>')
    parts.append(f'<line class="axis" x1="{_f(left)}" y1="{_f(plot_bottom)}" x2="{_f(right)}" '
                 f'y2="{_f(plot_bottom)}"/>')
    parts.append(f'<line class="axis" x1="{_f(left)}" y1="{_f(top)}" x2="{_f(left)}" '
                 f'y2="{_f(plot_bottom)}"/>')
    parts.append(f'<text class="axis-label" x="{_f((left + right) / 2)}" y="{_f(plot_bottom + 34)}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    cy = (top + plot_bottom) / 2
    parts.append(f'<text class="axis-label" x="14" y="{_f(cy)}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_f(cy)})">{escape(y_label)}</text>')


def _legend(parts: list[str], entries: list[tuple[str, str, bool]], top: float) -> None:
    """One row per entry under the plot: a short line in the series' colour, then the label."""
    parts.append('<g class="legend">')
    for i, (label, col, dashed) in enumerate(entries):
        y = top + i * LEGEND_ROW
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<g class="legend-item"><line x1="{MARGIN_LEFT}" y1="{_f(y)}" '
                     f'x2="{MARGIN_LEFT + 20}" y2="{_f(y)}" stroke="{col}" stroke-width="2"{dash}/>'
                     f'<text x="{MARGIN_LEFT + 26}" y="{_f(y + 4)}">{escape(label)}</text></g>')
    parts.append("</g>")


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               x_domain: tuple[float, float] | None = None,
               y_domain: tuple[float, float] | None = None, diagonal: bool = False,
               x_integer: bool = False) -> str:
    """Lines (one `<polyline class="series">` each) over shared axes, and a legend naming
    every series (one `<g class="legend-item">` each; even one line says whose it is).

    `diagonal` draws the y = x reference line (a chance-level ROC curve); `x_integer` keeps
    x ticks on whole numbers (steps).
    """
    drawn = [(i, s, s.points()) for i, s in enumerate(series)]
    drawn = [(i, s, pts) for i, s, pts in drawn if pts]
    if not drawn:
        return _no_data(title)
    height = HEIGHT + len(drawn) * LEGEND_ROW
    plot_bottom = HEIGHT - MARGIN_BOTTOM
    xa = _Axis.fit((x for _, _, p in drawn for x, _ in p), MARGIN_LEFT, WIDTH - MARGIN_RIGHT,
                   x_domain, integer=x_integer)
    ya = _Axis.fit((y for _, _, p in drawn for _, y in p), plot_bottom, MARGIN_TOP, y_domain)
    parts = _open(WIDTH, height, title)
    _axes(parts, xa, ya, x_label, y_label, plot_bottom)
    if diagonal:
        parts.append(f'<line class="reference" x1="{_f(xa(xa.lo))}" y1="{_f(ya(ya.lo))}" '
                     f'x2="{_f(xa(xa.hi))}" y2="{_f(ya(ya.hi))}" stroke-dasharray="3 3"/>')
    entries = []
    for i, s, pts in drawn:
        col = color(i if s.color_index is None else s.color_index)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        coords = " ".join(f"{_f(xa(x))},{_f(ya(y))}" for x, y in pts)
        parts.append(f'<polyline class="series" fill="none" stroke="{col}" stroke-width="1.8"'
                     f'{dash} points="{coords}"><title>{escape(s.label)}</title></polyline>')
        if s.markers or len(pts) == 1:  # a lone point would be an invisible zero-length line
            for x, y in pts:
                parts.append(f'<circle class="marker" cx="{_f(xa(x))}" cy="{_f(ya(y))}" r="2.6" '
                             f'fill="{col}"><title>{escape(s.label)}: ({format_value(x)}, '
                             f'{format_value(y)})</title></circle>')
        entries.append((s.label, col, s.dashed))
    _legend(parts, entries, HEIGHT - 4)
    parts.append("</svg>")
    return "\n".join(parts)


def scatter_chart(points: Sequence[Point], *, title: str, x_label: str, y_label: str,
                  x_domain: tuple[float, float] | None = None,
                  y_domain: tuple[float, float] | None = None) -> str:
    """Labelled points (`<circle class="point">`) with error bars (`<line class="errorbar">`)
    on each axis where an interval is given. The label is written next to the point."""
    pts = [p for p in points if finite(p.x) and finite(p.y)]
    if not pts:
        return _no_data(title)
    plot_bottom = HEIGHT - MARGIN_BOTTOM
    xs = [v for p in pts for v in (p.x, p.x_lo, p.x_hi) if finite(v)]
    ys = [v for p in pts for v in (p.y, p.y_lo, p.y_hi) if finite(v)]
    xa = _Axis.fit(xs, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, x_domain)
    ya = _Axis.fit(ys, plot_bottom, MARGIN_TOP, y_domain)
    parts = _open(WIDTH, HEIGHT, title)
    _axes(parts, xa, ya, x_label, y_label, plot_bottom)
    for i, p in enumerate(pts):
        col = color(i if p.color_index is None else p.color_index)
        cx, cy = xa(p.x), ya(p.y)
        if finite(p.x_lo) and finite(p.x_hi):
            parts.append(f'<line class="errorbar" x1="{_f(xa(p.x_lo))}" y1="{_f(cy)}" '
                         f'x2="{_f(xa(p.x_hi))}" y2="{_f(cy)}" stroke="{col}"/>')
        if finite(p.y_lo) and finite(p.y_hi):
            parts.append(f'<line class="errorbar" x1="{_f(cx)}" y1="{_f(ya(p.y_lo))}" '
                         f'x2="{_f(cx)}" y2="{_f(ya(p.y_hi))}" stroke="{col}"/>')
        hover = (f"{p.label}: x={format_value(p.x)} [{format_value(p.x_lo)}, {format_value(p.x_hi)}], "
                 f"y={format_value(p.y)} [{format_value(p.y_lo)}, {format_value(p.y_hi)}]")
        parts.append(f'<circle class="point" cx="{_f(cx)}" cy="{_f(cy)}" r="4" fill="{col}">'
                     f'<title>{escape(hover)}</title></circle>')
        anchor = "end" if cx > WIDTH * 0.7 else "start"  # keep labels inside the plot
        dx = -7 if anchor == "end" else 7
        parts.append(f'<text class="point-label" x="{_f(cx + dx)}" y="{_f(cy - 6)}" '
                     f'text-anchor="{anchor}">{escape(p.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _clip_label(label: str, max_chars: int = 34) -> str:
    return label if len(label) <= max_chars else label[: max_chars - 1] + "…"


def hbar_chart(bars: Sequence[Bar], *, title: str, x_label: str,
               x_domain: tuple[float, float] | None = None) -> str:
    """Horizontal bars (`<rect class="bar">`) with interval whiskers (`<line class="whisker">`).

    One row per bar, labelled on the left (long labels are shortened; the full label is in
    the hover text), the value printed on the right. Bars start at the domain's lower end
    clipped to 0 when 0 is inside it, so a rate reads as a length. Colours follow `group`.
    """
    rows = [b for b in bars if finite(b.value)]
    if not rows:
        return _no_data(title)
    groups = list(dict.fromkeys(b.group for b in rows))
    legend = len(groups) > 1
    label_w = min(max(len(_clip_label(b.label)) for b in rows) * CHAR_W + 12, 230)
    width = WIDTH + 60
    left, right = max(MARGIN_LEFT, label_w), width - 56  # right: room for the value text
    row_h = 18
    plot_top = MARGIN_TOP + 4
    plot_bottom = plot_top + row_h * len(rows)
    height = plot_bottom + 46 + (len(groups) * LEGEND_ROW if legend else 0)
    vals = [v for b in rows for v in (b.value, b.lo, b.hi) if finite(v)]
    xa = _Axis.fit(vals + [0.0], left, right, x_domain)  # 0 always in view: bars start there
    parts = _open(width, height, title)
    for t in xa.ticks:
        x = xa(t)
        parts.append(f'<line class="grid" x1="{_f(x)}" y1="{_f(plot_top)}" x2="{_f(x)}" y2="{_f(plot_bottom)}"/>')
        parts.append(f'<text class="tick" x="{_f(x)}" y="{_f(plot_bottom + 14)}" '
                     f'text-anchor="middle">{format_tick(t, xa.step)}</text>')
    base = min(max(0.0, xa.lo), xa.hi)
    for i, b in enumerate(rows):
        col = color(groups.index(b.group))
        y = plot_top + i * row_h
        x0, x1 = sorted((xa(base), xa(b.value)))
        hover = f"{b.label}: {format_value(b.value)} [{format_value(b.lo)}, {format_value(b.hi)}]"
        hover += f" {b.note}" if b.note else ""
        parts.append(f'<text class="bar-label" x="{_f(left - 6)}" y="{_f(y + 13)}" '
                     f'text-anchor="end">{escape(_clip_label(b.label))}</text>')
        parts.append(f'<rect class="bar" x="{_f(x0)}" y="{_f(y + 3)}" width="{_f(max(x1 - x0, 0.8))}" '
                     f'height="{row_h - 6}" fill="{col}" fill-opacity="0.75"><title>{escape(hover)}'
                     f'</title></rect>')
        if finite(b.lo) and finite(b.hi):
            cy = y + row_h / 2
            parts.append(f'<line class="whisker" x1="{_f(xa(b.lo))}" y1="{_f(cy)}" '
                         f'x2="{_f(xa(b.hi))}" y2="{_f(cy)}" stroke="#222"/>')
            for end in (b.lo, b.hi):
                parts.append(f'<line class="whisker-cap" x1="{_f(xa(end))}" y1="{_f(cy - 4)}" '
                             f'x2="{_f(xa(end))}" y2="{_f(cy + 4)}" stroke="#222"/>')
        parts.append(f'<text class="bar-value" x="{_f(right + 6)}" y="{_f(y + 13)}">'
                     f'{b.value:.3g}</text>')  # 3 digits: "1.06e-21" still fits the 50 px
    parts.append(f'<line class="axis" x1="{_f(left)}" y1="{_f(plot_bottom)}" x2="{_f(right)}" '
                 f'y2="{_f(plot_bottom)}"/>')
    parts.append(f'<line class="axis" x1="{_f(left)}" y1="{_f(plot_top)}" x2="{_f(left)}" '
                 f'y2="{_f(plot_bottom)}"/>')
    parts.append(f'<text class="axis-label" x="{_f((left + right) / 2)}" y="{_f(plot_bottom + 34)}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    if legend:
        _legend(parts, [(g or "(none)", color(i), False) for i, g in enumerate(groups)],
                plot_bottom + 50)
    parts.append("</svg>")
    return "\n".join(parts)


def roc_chart(series: Sequence[Series], *, title: str = "ROC curve") -> str:
    """True-positive rate against false-positive rate on [0, 1]², chance diagonal dashed."""
    return line_chart(series, title=title, x_label="false positive rate (share of safe flagged)",
                      y_label="true positive rate (share of unsafe caught)",
                      x_domain=(0.0, 1.0), y_domain=(0.0, 1.0), diagonal=True)


def pr_chart(series: Sequence[Series], *, title: str = "Precision-recall curve") -> str:
    """Precision (y) against recall (x) on [0, 1]²."""
    return line_chart(series, title=title, x_label="recall (share of unsafe caught)",
                      y_label="precision (share of flags that are unsafe)",
                      x_domain=(0.0, 1.0), y_domain=(0.0, 1.0))
