"""Inline SVG charts: their shape, escaping, thinning of long series, and empty input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from sigil.report.charts import (
    MAX_POINTS,
    bar_chart_svg,
    downsample,
    line_chart_svg,
    nice_ticks,
    time_ticks,
)

NS = {"s": "http://www.w3.org/2000/svg"}
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def path_points(d: str) -> list[tuple[float, float]]:
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return list(zip(nums[::2], nums[1::2], strict=True))


def test_line_chart_has_one_path_per_series_axes_and_legend() -> None:
    xs = [T0 + k * HOUR for k in range(100)]
    svg = line_chart_svg(
        {"a": (xs, [10_000 + k for k in range(100)]), "b": (xs, [10_000 - k for k in range(100)])},
        title="Equity",
    )
    root = parse(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    paths = root.findall(".//s:path[@class='series']", NS)
    assert [p.get("data-series") for p in paths] == ["a", "b"]
    for p in paths:
        pts = path_points(p.get("d", ""))
        assert len(pts) == 100
        assert all(0 <= x <= 760 and 0 <= y <= 260 for x, y in pts)
    # the rising series ends higher on the page (smaller y) than it starts; the falling one lower
    a, b = (path_points(p.get("d", "")) for p in paths)
    assert a[-1][1] < a[0][1] and b[-1][1] > b[0][1]
    ticks = [t.text for t in root.findall(".//s:text[@class='tick']", NS)]
    assert "10,000" in ticks and "2024-01-01" in ticks and "2024-01-04" in ticks
    legend = [t.text for t in root.findall(".//s:g[@class='legend-item']/s:text", NS)]
    assert legend == ["a", "b"]
    assert root.find("s:title", NS) is not None and root.find("s:title", NS).text == "Equity"  # type: ignore[union-attr]


def test_names_and_titles_are_escaped() -> None:
    name = '<b>"x" & y</b>'
    svg = line_chart_svg({name: ([T0, T0 + HOUR], [1.0, 2.0])}, title="<script>t</script>")
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)  # still well-formed XML
    assert root.find(".//s:path[@class='series']", NS).get("data-series") == name  # type: ignore[union-attr]
    bars = bar_chart_svg([name], [3.0], title="&")
    assert parse(bars).find(".//s:rect[@class='bar']", NS).get("data-label") == name  # type: ignore[union-attr]


def test_downsampling_keeps_the_extremes_and_bounds_the_size() -> None:
    rng = np.random.default_rng(7)
    n = 50_000
    xs = T0 + np.arange(n, dtype=np.int64) * 60_000
    ys = np.cumsum(rng.normal(size=n))
    ys[12_345] = ys.max() + 100.0  # a lone spike
    ys[31_000] = ys.min() - 100.0  # a lone trough
    dx, dy = downsample(xs, ys)
    assert len(dx) <= MAX_POINTS
    assert dy.max() == ys.max() and dy.min() == ys.min()
    assert dx[0] == xs[0] and dx[-1] == xs[-1]
    assert np.all(np.diff(dx) > 0)
    svg = line_chart_svg({"s": (xs, ys)}, title="long")
    pts = path_points(parse(svg).find(".//s:path[@class='series']", NS).get("d", ""))  # type: ignore[union-attr]
    assert len(pts) <= MAX_POINTS
    ys_px = [y for _, y in pts]
    top, bottom = min(ys_px), max(ys_px)
    # the spike is the highest point drawn and the trough the lowest
    assert pts[ys_px.index(top)][0] == pytest.approx(70 + 12_345 / (n - 1) * (760 - 70 - 14), abs=0.2)
    assert pts[ys_px.index(bottom)][0] == pytest.approx(70 + 31_000 / (n - 1) * (760 - 70 - 14), abs=0.2)
    assert len(svg) < 40_000


def test_short_series_are_not_thinned() -> None:
    xs, ys = downsample([1, 2, 3], [3.0, 1.0, 2.0])
    assert xs.tolist() == [1, 2, 3] and ys.tolist() == [3.0, 1.0, 2.0]


def test_empty_input_says_no_data() -> None:
    for svg in (
        line_chart_svg({}, title="Equity"),
        line_chart_svg({"a": ([], [])}, title="Equity"),
        line_chart_svg({"a": ([T0], [float("nan")])}, title="Equity"),
        bar_chart_svg([], [], title="Monthly"),
    ):
        root = parse(svg)
        assert root.find(".//s:text[@class='no-data']", NS).text == "no data"  # type: ignore[union-attr]
        assert root.find(".//s:path", NS) is None and root.find(".//s:rect[@class='bar']", NS) is None


def test_bar_chart_draws_negative_bars_below_the_zero_line() -> None:
    svg = bar_chart_svg(["w", "l", "z"], [120.0, -80.0, 0.0], title="P&L by reason")
    root = parse(svg)
    bars = root.findall(".//s:rect[@class='bar']", NS)
    assert [b.get("data-label") for b in bars] == ["w", "l", "z"]
    zero = float(root.find(".//s:line[@class='zero']", NS).get("y1", ""))  # type: ignore[union-attr]
    win, loss, _ = bars
    assert float(win.get("y", "")) + float(win.get("height", "")) == pytest.approx(zero, abs=0.2)
    assert float(loss.get("y", "")) == pytest.approx(zero, abs=0.2)
    # heights in proportion to the values
    assert float(win.get("height", "")) / float(loss.get("height", "")) == pytest.approx(1.5, rel=0.02)
    assert win.get("fill") != loss.get("fill")
    assert [t.text for t in win.findall("s:title", NS)] == ["w: 120"]


def test_bar_chart_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 labels for 1 values"):
        bar_chart_svg(["a", "b"], [1.0], title="x")


def test_ticks_are_round() -> None:
    assert nice_ticks(9_123, 10_456) == [9_000, 9_500, 10_000, 10_500]
    assert nice_ticks(-0.83, 0.0)[0] == -1.0 and nice_ticks(-0.83, 0.0)[-1] == 0.0
    months = time_ticks(T0, T0 + 200 * 24 * HOUR)
    assert [label for _, label in months][:2] == ["2024-01", "2024-03"]
    hours = time_ticks(T0 + 30 * 60_000, T0 + 5 * HOUR)
    assert hours[0][1] == "01-01 01:00"
