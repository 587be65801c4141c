"""Charts as inline SVG text: a line chart over UTC time and a bar chart, drawn in pure Python so a
page that embeds them needs no script, no font and no network to show them.

Long series are thinned to at most :data:`MAX_POINTS` points by keeping each bucket's lowest and
highest point, so a drawdown's bottom and an equity peak survive and a page stays small."""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from sigil.times import from_ms, to_ms

#: Times of a series (ms UTC) and its values: lists or numpy arrays.
Times = Sequence[int] | npt.NDArray[np.int64]
Values = Sequence[float] | npt.NDArray[np.float64]

#: A series longer than this is thinned (min and max per bucket) before it is drawn.
MAX_POINTS = 2000

#: Series colours, in order (colour-blind friendly, after Okabe and Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")
POSITIVE = "#2e7d32"
NEGATIVE = "#c62828"

_FONT = 'font-family="sans-serif" font-size="11"'
#: Plot-area margins: left (value labels), right, bottom (time labels).
_LEFT, _RIGHT, _BOTTOM = 70, 14, 24
_TITLE_H = 20
_LEGEND_ROW = 16
#: Rough width of one character at the chart font size, to lay out legend entries.
_CHAR_W = 6.6

_HOUR = 3_600_000
_DAY = 24 * _HOUR
#: Time tick steps below a month (ms), smallest first; from a month up, ticks fall on month starts.
_TIME_STEPS = (_HOUR, 3 * _HOUR, 6 * _HOUR, 12 * _HOUR, _DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY)
_MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60)


def downsample(
    x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = MAX_POINTS
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """At most ``max_points`` points of ``(x, y)`` in order: the series itself when short enough,
    otherwise the first and last points and each bucket's minimum and maximum."""
    xs = np.asarray(x, dtype=np.int64)
    ys = np.asarray(y, dtype=np.float64)
    n = len(xs)
    if n <= max_points:
        return xs, ys
    buckets = max(1, (max_points - 2) // 2)
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]
    bucket = np.repeat(np.arange(buckets), np.diff(np.append(starts, n)))
    keep = [np.asarray([0, n - 1], dtype=np.int64)]
    for extreme in (np.minimum, np.maximum):
        hit = np.flatnonzero(ys == extreme.reduceat(ys, starts)[bucket])
        # the first index per bucket where the bucket's extreme is reached
        keep.append(hit[np.unique(bucket[hit], return_index=True)[1]])
    idx = np.unique(np.concatenate(keep))
    return xs[idx], ys[idx]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) from at or below ``lo`` to at
    or above ``hi``: the value axis runs from the first to the last."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _month_start(year: int, month: int) -> int:
    return to_ms(datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC))


def time_ticks(lo: int, hi: int, count: int = 6) -> list[tuple[int, str]]:
    """At most about ``count`` round UTC times in ``[lo, hi]`` (ms) with their labels."""
    span = hi - lo
    if span <= 0:
        return [(lo, from_ms(lo).strftime("%Y-%m-%d %H:%M"))]
    step = next((s for s in _TIME_STEPS if span / s <= count), None)
    if step is not None:
        fmt = "%m-%d %H:%M" if step < _DAY else "%Y-%m-%d"
        t = -(-lo // step) * step
        out = []
        while t <= hi:
            out.append((t, from_ms(t).strftime(fmt)))
            t += step
        return out
    months = span / (30.44 * _DAY)
    every = next((m for m in _MONTH_STEPS if months / m <= count), _MONTH_STEPS[-1])
    start = from_ms(lo)
    m = start.year * 12 + start.month - 1
    m = -(-m // every) * every
    out = []
    while (t := _month_start(m // 12, m % 12 + 1)) <= hi:
        if t >= lo:
            out.append((t, from_ms(t).strftime("%Y-%m" if every < 12 else "%Y")))
        m += every
    return out


def _fmt(y_format: str, v: float) -> str:
    """A value as text, negative ones with a real minus sign (as the text tables print them)."""
    text = y_format.format(v)
    return html.escape("−" + text[1:] if text.startswith("-") else text)


def _header(width: int, height: int, title: str, cls: str) -> list[str]:
    t = html.escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {cls}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{t}">',
        f"<title>{t}</title>",
        f'<text class="chart-title" x="{_LEFT}" y="14" {_FONT} font-weight="bold">{t}</text>',
    ]


def _no_data(width: int, height: int, title: str, cls: str) -> str:
    parts = _header(width, height, title, cls)
    parts.append(
        f'<text class="no-data" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
        f'{_FONT} fill="#777">no data</text>'
    )
    return "\n".join([*parts, "</svg>"])


def _legend_rows(names: Sequence[str], width: int) -> list[list[tuple[str, float]]]:
    """Legend entries with their x positions, wrapped to rows that fit the width."""
    rows: list[list[tuple[str, float]]] = [[]]
    x = float(_LEFT)
    for name in names:
        w = 18 + _CHAR_W * len(name) + 14
        if rows[-1] and x + w > width - _RIGHT:
            rows.append([])
            x = float(_LEFT)
        rows[-1].append((name, x))
        x += w
    return rows


def _value_axis(
    parts: list[str], ticks: Sequence[float], ymap: Mapping[str, float], y_format: str, width: int
) -> None:
    """Horizontal grid lines and value labels (``ymap`` holds the plot's top, bottom and value range)."""
    top, bottom, vlo, vhi = ymap["top"], ymap["bottom"], ymap["lo"], ymap["hi"]
    for v in ticks:
        y = bottom - (v - vlo) / (vhi - vlo) * (bottom - top)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e3e3e3"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT} '
            f'fill="#444">{_fmt(y_format, v)}</text>'
        )


def line_chart_svg(
    series: Mapping[str, tuple[Times, Values]],
    *,
    title: str,
    y_format: str = "{:,.0f}",
    width: int = 760,
    height: int = 260,
    max_points: int = MAX_POINTS,
    colors: Mapping[str, str] | None = None,
    dashed: Collection[str] = (),
) -> str:
    """An SVG line chart: one ``<path class="series" data-series="NAME">`` per series over x in ms UTC,
    time and value ticks, and a legend; series longer than ``max_points`` are thinned (min and max
    per bucket). Non-finite values are left out. With no point at all, a chart saying "no data".
    ``colors`` sets a series' colour (default: :data:`PALETTE` in order); ``dashed`` series are drawn
    dashed (a reference beside the others)."""
    clean: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
    for name, (raw_x, raw_y) in series.items():
        ax = np.asarray(raw_x, dtype=np.int64)
        ay = np.asarray(raw_y, dtype=np.float64)
        ok = np.isfinite(ay)
        clean[name] = downsample(ax[ok], ay[ok], max_points)
    drawn = {n: xy for n, xy in clean.items() if len(xy[0])}
    if not drawn:
        return _no_data(width, height, title, "line-chart")
    rows = _legend_rows(list(clean), width)
    top = _TITLE_H + _LEGEND_ROW * len(rows) + 6
    bottom = height - _BOTTOM
    xlo = min(int(x[0]) for x, _ in drawn.values())
    xhi = max(int(x[-1]) for x, _ in drawn.values())
    ylo = min(float(y.min()) for _, y in drawn.values())
    yhi = max(float(y.max()) for _, y in drawn.values())
    ticks = nice_ticks(ylo, yhi)
    vlo, vhi = min([ylo, *ticks]), max([yhi, *ticks])
    if vhi <= vlo:
        vlo, vhi = vlo - 1.0, vhi + 1.0
    xspan = max(1, xhi - xlo)
    plot_w = width - _LEFT - _RIGHT

    def px(t: float) -> float:
        return _LEFT + (t - xlo) / xspan * plot_w

    def py(v: float) -> float:
        return bottom - (v - vlo) / (vhi - vlo) * (bottom - top)

    palette = {n: (colors or {}).get(n, PALETTE[k % len(PALETTE)]) for k, n in enumerate(clean)}
    parts = _header(width, height, title, "line-chart")
    _value_axis(parts, ticks, {"top": top, "bottom": bottom, "lo": vlo, "hi": vhi}, y_format, width)
    # About one time label per 110 px: a wide chart gets monthly ticks where a narrow one gets bimonthly.
    for t, label in time_ticks(xlo, xhi, count=max(3, plot_w // 110)):
        tx = px(t)
        parts.append(
            f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{bottom}" stroke="#f0f0f0"/>'
            f'<text class="tick" x="{tx:.1f}" y="{bottom + 15}" text-anchor="middle" {_FONT} '
            f'fill="#444">{html.escape(label)}</text>'
        )
    parts.append(
        f'<rect class="frame" x="{_LEFT}" y="{top}" width="{plot_w}" height="{bottom - top}" '
        f'fill="none" stroke="#bbb"/>'
    )
    for name, (dx, dy) in drawn.items():
        pts = " ".join(f"{px(float(a)):.1f} {py(float(b)):.1f}" for a, b in zip(dx, dy, strict=True))
        d = f"M{pts}" if len(dx) > 1 else f"M{pts} h1"
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        parts.append(
            f'<path class="series" data-series="{html.escape(name)}" d="{d}" fill="none" '
            f'stroke="{palette[name]}" stroke-width="1.4" stroke-linejoin="round"{dash}/>'
        )
    for r, row in enumerate(rows):
        ly = _TITLE_H + _LEGEND_ROW * r + 8
        for name, lx in row:
            # the swatch is drawn as the line is: solid, or dashed for a reference
            swatch = (
                f'<line x1="{lx:.0f}" x2="{lx + 14:.0f}" y1="{ly - 2}" y2="{ly - 2}" '
                f'stroke="{palette[name]}" stroke-width="2" stroke-dasharray="4 2"/>'
                if name in dashed
                else f'<rect x="{lx:.0f}" y="{ly - 4}" width="14" height="4" fill="{palette[name]}"/>'
            )
            parts.append(
                f'<g class="legend-item">{swatch}<text x="{lx + 18:.0f}" y="{ly + 1}" {_FONT} '
                f'fill="#222">{html.escape(name)}</text></g>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart_svg(
    labels: Sequence[str],
    values: Values,
    *,
    title: str,
    y_format: str = "{:,.0f}",
    width: int = 760,
    height: int = 220,
) -> str:
    """An SVG bar chart: one ``<rect class="bar">`` per value (each with its label and value as a
    tooltip), positive bars above and negative ones below a zero line. No values: "no data"."""
    if len(labels) != len(values):
        raise ValueError(f"bar chart {title!r}: {len(labels)} labels for {len(values)} values")
    vals = [float(v) if math.isfinite(float(v)) else 0.0 for v in values]
    if not vals:
        return _no_data(width, height, title, "bar-chart")
    top, bottom = _TITLE_H + 10, height - _BOTTOM
    ticks = nice_ticks(min(0.0, *vals), max(0.0, *vals))
    vlo, vhi = min([0.0, *vals, *ticks]), max([0.0, *vals, *ticks])
    if vhi <= vlo:
        vhi = vlo + 1.0

    def py(v: float) -> float:
        return bottom - (v - vlo) / (vhi - vlo) * (bottom - top)

    plot_w = width - _LEFT - _RIGHT
    slot = plot_w / len(vals)
    bar_w = max(1.0, slot * 0.7)
    # Label only as many bars as fit side by side.
    label_every = max(1, math.ceil(len(vals) * _CHAR_W * max(len(s) for s in labels) / plot_w / 0.9))
    parts = _header(width, height, title, "bar-chart")
    _value_axis(parts, ticks, {"top": top, "bottom": bottom, "lo": vlo, "hi": vhi}, y_format, width)
    zero = py(0.0)
    for k, (label, v) in enumerate(zip(labels, vals, strict=True)):
        x = _LEFT + k * slot + (slot - bar_w) / 2
        y, h = (py(v), zero - py(v)) if v >= 0 else (zero, py(v) - zero)
        name = html.escape(label)
        parts.append(
            f'<rect class="bar" data-label="{name}" data-value="{v!r}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" fill="{POSITIVE if v >= 0 else NEGATIVE}">'
            f"<title>{name}: {_fmt(y_format, v)}</title></rect>"
        )
        if k % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{bottom + 15}" text-anchor="middle" '
                f'{_FONT} fill="#444">{name}</text>'
            )
    parts.append(
        f'<line class="zero" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" '
        f'stroke="#333"/>'
    )
    parts.append("</svg>")
    return "\n".join(parts)
