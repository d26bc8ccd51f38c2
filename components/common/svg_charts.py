"""Inline SVG charts computed in Python: grouped columns (histograms), grouped bars (top values), lines.

No script and no external resource: each chart is one ``<svg>`` element that any browser draws
offline. Hovering a bar or a point shows its exact figure (an SVG ``<title>``). Every text is
escaped; coordinates are rounded to one decimal so the output is deterministic.
"""

import html
import math
from typing import Dict, List, Optional, Sequence

# Paul Tol's "bright" palette: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB"]
FONT = 'font-family="sans-serif" font-size="11"'
LEGEND_HEIGHT = 22
MAX_X_LABELS = 8
MAX_POINTS = 60  # a line chart marks (and gives a tooltip to) each value up to this many values
LABEL_CHARS = 22
CHAR_WIDTH = 6.5  # of an 11 px sans-serif digit or letter, to keep labels from overlapping


def esc(text) -> str:
    """``text`` escaped for HTML/SVG text and attribute values."""
    return html.escape(str(text), quote=True)


def number(value, digits: int = 4) -> str:
    """A short, stable rendering of a number: integers as is, floats to ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if 1e4 <= abs(value) < 1e15:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def percent(fraction: Optional[float]) -> str:
    """``0.1234`` -> ``12.3%``; ``None`` -> empty."""
    if fraction is None or not math.isfinite(fraction):
        return ""
    return f"{fraction * 100:.1f}%"


def distinct_labels(values: Sequence[float]) -> List[str]:
    """``values`` with the fewest significant digits (3 or more) that tell neighbours apart."""
    labels = [number(v, 3) for v in values]
    for digits in range(4, 10):
        if all(a != b for a, b in zip(labels, labels[1:])):
            break
        labels = [number(v, digits) for v in values]
    return labels


def _c(x: float) -> str:
    return f"{x:.1f}"


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 4) -> List[float]:
    """About ``count`` round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step + 1e-9) * step
    ticks, tick = [], start
    while tick < high - 1e-9 * step:
        ticks.append(round(tick, 12))
        tick += step
    ticks.append(round(tick, 12))
    return ticks


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, name in enumerate(names):
        parts.append(f'<rect x="{_c(x)}" y="{_c(y - 9)}" width="10" height="10" fill="{color(i)}"/>'
                     f'<text x="{_c(x + 14)}" y="{_c(y)}" {FONT}>{esc(name)}</text>')
        x += 24 + 7 * len(str(name))
    return f'<g class="legend">{"".join(parts)}</g>'


def _svg(kind: str, title: str, width: float, height: float, body: str, feature: str = "") -> str:
    data = f' data-feature="{esc(feature)}"' if feature else ""
    return (f'<svg class="chart {kind}"{data} role="img" aria-label="{esc(title)}" '
            f'width="{_c(width)}" height="{_c(height)}" viewBox="0 0 {_c(width)} {_c(height)}">'
            f'<title>{esc(title)}</title>{body}</svg>')


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "\u2026"


def columns(title: str, edges: List[float], series: Dict[str, List[float]], feature: str = "",
            width: float = 520, height: float = 230) -> str:
    """A histogram: one group of columns per bin (``edges``), one column per series (fractions)."""
    left, right, top, bottom = 46, 28, 10 + LEGEND_HEIGHT, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(edges) - 1
    values = [v for vs in series.values() for v in vs]
    ticks = nice_ticks(0.0, max(values + [1e-9]))
    y_max = ticks[-1]
    parts = [_legend(list(series), left, 14)]
    for t in ticks:
        y = top + plot_h - plot_h * t / y_max
        parts.append(f'<line x1="{_c(left)}" x2="{_c(left + plot_w)}" y1="{_c(y)}" y2="{_c(y)}" '
                     f'stroke="#e3e3e3"/><text x="{_c(left - 4)}" y="{_c(y + 4)}" text-anchor="end" '
                     f'{FONT}>{esc(percent(t))}</text>')
    group = plot_w / max(n, 1)
    bar = group * 0.8 / max(len(series), 1)
    for s, (name, fractions) in enumerate(series.items()):
        for i, fraction in enumerate(fractions):
            h = plot_h * fraction / y_max
            x = left + i * group + group * 0.1 + s * bar
            label = f"{name}: {percent(fraction)} in [{number(edges[i])}, {number(edges[i + 1])}]"
            parts.append(f'<rect class="bar" x="{_c(x)}" y="{_c(top + plot_h - h)}" width="{_c(bar)}" '
                         f'height="{_c(h)}" fill="{color(s)}"><title>{esc(label)}</title></rect>')
    labels = distinct_labels(edges)
    fits = plot_w / (CHAR_WIDTH * max(len(t) for t in labels) + 10)  # labels that fit side by side
    every = max(1, math.ceil((n + 1) / min(MAX_X_LABELS, fits)))
    for i in range(0, n + 1, every):
        x = left + i * group
        parts.append(f'<text x="{_c(x)}" y="{_c(top + plot_h + 14)}" text-anchor="middle" {FONT}>'
                     f'{esc(labels[i])}</text>')
    parts.append(f'<line x1="{_c(left)}" x2="{_c(left + plot_w)}" y1="{_c(top + plot_h)}" '
                 f'y2="{_c(top + plot_h)}" stroke="#555"/>')
    parts.append(f'<text x="{_c(left + plot_w / 2)}" y="{_c(height - 4)}" text-anchor="middle" {FONT} '
                 f'fill="#555">{esc(feature or title)} (share of values per bin)</text>')
    return _svg("histogram", title, width, height, "".join(parts), feature)


def bars(title: str, labels: List[str], series: Dict[str, List[float]], feature: str = "",
         width: float = 520) -> str:
    """Top values: one group of horizontal bars per label, one bar per series (fractions)."""
    left, right, top, bottom = 12 + CHAR_WIDTH * LABEL_CHARS, 48, 8 + LEGEND_HEIGHT, 8
    bar_h, gap = 10, 6
    group = bar_h * max(len(series), 1) + gap
    height = top + bottom + group * max(len(labels), 1)
    plot_w = width - left - right
    values = [v for vs in series.values() for v in vs]
    x_max = max(values + [1e-9])
    parts = [_legend(list(series), 8, 14)]
    for i, label in enumerate(labels):
        y0 = top + i * group
        parts.append(f'<text x="{_c(left - 6)}" y="{_c(y0 + group / 2)}" text-anchor="end" {FONT}>'
                     f'<title>{esc(label)}</title>{esc(_short(label))}</text>')
        for s, (name, fractions) in enumerate(series.items()):
            w = plot_w * fractions[i] / x_max
            y = y0 + s * bar_h
            parts.append(f'<rect class="bar" x="{_c(left)}" y="{_c(y)}" width="{_c(w)}" height="{bar_h - 1}" '
                         f'fill="{color(s)}"><title>{esc(f"{name}: {label} {percent(fractions[i])}")}</title>'
                         f'</rect><text x="{_c(left + w + 3)}" y="{_c(y + bar_h - 1)}" {FONT} fill="#333">'
                         f'{esc(percent(fractions[i]))}</text>')
    parts.append(f'<line x1="{_c(left)}" x2="{_c(left)}" y1="{_c(top)}" y2="{_c(height - bottom)}" stroke="#555"/>')
    return _svg("top-values", title, width, height, "".join(parts), feature)


def lines(title: str, x: List[str], series: Dict[str, List[Optional[float]]],
          width: float = 560, height: float = 240) -> str:
    """A line chart over the categories ``x``; a None or NaN value leaves a gap in its line.

    Each value is a dot with a tooltip (up to MAX_POINTS values); a lone value between gaps is a dot only.
    """
    left, right, top, bottom = 56, 16, 10 + LEGEND_HEIGHT, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    ticks = nice_ticks(min(finite), max(finite)) if finite else [0.0, 1.0]
    lo, hi = ticks[0], ticks[-1]
    n = len(x)

    def px(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h - plot_h * (v - lo) / (hi - lo)

    parts = [_legend(list(series), left, 14)]
    for t in ticks:
        parts.append(f'<line x1="{_c(left)}" x2="{_c(left + plot_w)}" y1="{_c(py(t))}" y2="{_c(py(t))}" '
                     f'stroke="#e3e3e3"/><text x="{_c(left - 4)}" y="{_c(py(t) + 4)}" text-anchor="end" '
                     f'{FONT}>{esc(number(t))}</text>')
    fits = plot_w / (CHAR_WIDTH * max([len(_short(str(v))) for v in x] + [1]) + 10)
    every = max(1, math.ceil(n / min(MAX_X_LABELS, fits)))
    for i in range(0, n, every):
        parts.append(f'<text x="{_c(px(i))}" y="{_c(top + plot_h + 16)}" text-anchor="middle" {FONT}>'
                     f'{esc(_short(str(x[i])))}</text>')
    points_drawn = []
    for s, (name, values) in enumerate(series.items()):
        segment: List[str] = []
        segments = [segment]
        for i, v in enumerate(values[:n]):
            if v is None or not math.isfinite(v):
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{_c(px(i))},{_c(py(v))}")
            if n > MAX_POINTS:  # a long series reads as a line; thousands of dots only weigh the page
                continue
            points_drawn.append(f'<circle class="point" cx="{_c(px(i))}" cy="{_c(py(v))}" r="3" '
                                f'fill="{color(s)}"><title>{esc(f"{name} at {x[i]}: {number(v)}")}</title></circle>')
        for points in segments:
            if len(points) > 1:
                parts.append(f'<polyline class="line" points="{" ".join(points)}" fill="none" '
                             f'stroke="{color(s)}" stroke-width="2"/>')
            elif points and n > MAX_POINTS:  # a lone value has no line and no dot yet
                cx, cy = points[0].split(",")
                points_drawn.append(f'<circle class="point" cx="{cx}" cy="{cy}" r="3" fill="{color(s)}"/>')
    parts += points_drawn  # after every line, so that no line hides a point
    parts.append(f'<line x1="{_c(left)}" x2="{_c(left + plot_w)}" y1="{_c(top + plot_h)}" '
                 f'y2="{_c(top + plot_h)}" stroke="#555"/>')
    return _svg("line-chart", title, width, height, "".join(parts))
