"""The HTML tearsheet (``sigil replay --html``, ``sigil report --html``): rendered in headless Chromium it
shows no error and draws its charts, it fetches nothing, and its figures are the ``--json`` document's."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sigil.cli import main
from sigil.report.table import money
from sigil.report.tearsheet import PRE_FIX_VARIANT, TradingRun, tearsheet_html
from sigil.research.replay import replay
from tests.support.browser import Browser, PageReport, require_chromium
from tests.support.data import BUNDLED, REPO

FIXED3 = REPO / "config" / "legacy" / "fixed3.yaml"
VARIANTS = ["baseline", "moderate", "aggressive", "unhinged", PRE_FIX_VARIANT]

#: A page that does what the tearsheet must not: the browser support has to see each of these.
BAD_PAGE = """<!doctype html><html><head><title>bad</title></head><body>
<img src="http://example.invalid/pixel.png">
<script>console.error("boom from the page"); undefinedFunction();</script>
</body></html>"""


@dataclass
class Table:
    head: list[str] = field(default_factory=list)
    #: Per row: (data-key, label, [(text, data-value)]).
    rows: list[tuple[str, str, list[tuple[str, str | None]]]] = field(default_factory=list)


class Page(HTMLParser):
    """The tables of a page by id, every src/href, and the tags used."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, Table] = {}
        self.refs: list[str] = []
        self.tags: set[str] = set()
        self.styles: list[str] = []
        self._table: Table | None = None
        self._cell: list[str] | None = None
        self._cell_value: str | None = None
        self._in_head = False
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action") and v]
        if tag == "style":
            self._in_style = True
        if tag == "table" and a.get("id"):
            self._table = self.tables.setdefault(str(a["id"]), Table())
        elif self._table is not None:
            if tag == "thead":
                self._in_head = True
            elif tag == "tr" and not self._in_head:
                self._table.rows.append((a.get("data-key") or "", "", []))
            elif tag in ("th", "td"):
                self._cell, self._cell_value = [], a.get("data-value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        if self._table is None:
            return
        if tag == "thead":
            self._in_head = False
        elif tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._in_head:
                self._table.head.append(text)
            else:
                key, label, cells = self._table.rows[-1]
                if tag == "th" and not label and not cells:
                    self._table.rows[-1] = (key, text, cells)
                else:
                    cells.append((text, self._cell_value))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)

    def row(self, table: str, key: str) -> dict[str, tuple[str, str | None]]:
        """The cells of the row ``key`` of ``table``, by column head."""
        t = self.tables[table]
        (cells,) = [c for k, _, c in t.rows if k == key]
        return dict(zip(t.head[1:], cells, strict=True))


def assert_offline(page: Page) -> None:
    """Nothing in the page points outside it: no script or style sheet, no http(s) or protocol-relative
    reference, no url() or @import in its CSS."""
    outside = [r for r in page.refs if re.match(r"^\s*(https?:)?//", r, re.I)]
    assert outside == [], outside
    assert all(r.startswith("#") for r in page.refs), page.refs
    assert not page.tags & {"script", "link", "iframe", "object", "embed", "img"}, page.tags
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css


def assert_figures_equal(page: Page, doc: dict[str, Any]) -> None:
    """Each variant's balances, net P&L and trade count in the page are the JSON's, and the trade list
    holds every trade of the JSON."""
    variants = doc["variants"]
    assert page.tables["metrics"].head[1:] == list(variants)
    for key in ("net_pnl", "equity", "starting_balance", "open_positions"):
        for name, (text, value) in page.row("metrics", key).items():
            assert value is not None and float(value) == variants[name][key], (key, name)
            if key == "net_pnl":
                assert text == money(variants[name][key])
    for name, (text, _) in page.row("metrics", "closed_trades").items():
        assert int(text) == variants[name]["closed_trades"]
    listed = [cells[0][0] for _, _, cells in page.tables["trades"].rows]
    assert len(listed) == len(doc["trades"])
    for name, v in variants.items():
        assert listed.count(name) == v["closed_trades"] == sum(t["variant"] == name for t in doc["trades"])
    pnl = [cells[9][0] for _, _, cells in page.tables["trades"].rows]
    assert pnl == [money(t["pnl"]) for t in doc["trades"]]


@pytest.fixture(scope="module")
def replay_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """``sigil replay --data data --variant fixed3 --json --html``, run once for the module."""
    out = tmp_path_factory.mktemp("tearsheet")
    page, doc = out / "replay.html", out / "replay.json"
    code = main(
        ["replay", "--data", str(BUNDLED), "--variant", str(FIXED3), "--json", str(doc), "--html", str(page)]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["replay.html", "replay.json"], "no temporary file left"
    return page, json.loads(doc.read_text()), page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered(
    replay_page: tuple[Path, dict[str, Any], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, PageReport]:
    """The tearsheet and :data:`BAD_PAGE`, each loaded in one headless Chromium."""
    require_chromium()
    out = tmp_path_factory.mktemp("browser")
    bad = out / "bad.html"
    bad.write_text(BAD_PAGE)
    paths = "Array.from(document.querySelectorAll('svg.line-chart path.series'))"

    async def load() -> dict[str, PageReport]:
        async with Browser() as b:
            return {
                "tearsheet": await b.load(
                    replay_page[0].as_uri(),
                    selectors=[
                        "svg.line-chart path.series",
                        "svg.bar-chart rect.bar",
                        ".no-data",
                        "#no-pre-fix",
                    ],
                    expressions={
                        "series": f"{paths}.map(p => [p.closest('svg').getAttribute('aria-label'),"
                        " p.dataset.series, p.getAttribute('d')])",
                        "drawn": f"{paths}.map(p => p.getTotalLength())",
                        "width": "document.querySelector('svg.line-chart').getBoundingClientRect().width",
                    },
                    screenshot=out / "tearsheet.png",
                ),
                "bad": await b.load(bad.as_uri()),
            }

    return asyncio.run(load())


def test_the_tearsheet_renders_without_errors_and_draws_its_charts(rendered: dict[str, PageReport]) -> None:
    page = rendered["tearsheet"]
    assert page.console_errors == []
    assert page.requests == [page.url], "the page fetches nothing but itself"
    # equity and drawdown, one path per variant each; P&L by exit reason, one bar per reason per variant
    assert page.counts["svg.line-chart path.series"] == 2 * len(VARIANTS)
    assert page.counts["svg.bar-chart rect.bar"] == 4 * len(VARIANTS)
    assert page.counts[".no-data"] == 0 and page.counts["#no-pre-fix"] == 0
    series = page.values["series"]
    assert [s[1] for s in series] == VARIANTS * 2
    for title, name, d in series:
        assert d and d.startswith("M") and len(re.findall(r"[\d.]+ [\d.]+", d)) > 100, (title, name)
    assert all(length > 500 for length in page.values["drawn"]), page.values["drawn"]
    assert page.values["width"] > 700
    assert page.screenshot is not None
    png = page.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_the_browser_support_sees_errors_and_outside_requests(rendered: dict[str, PageReport]) -> None:
    bad = rendered["bad"]
    assert any("boom from the page" in e for e in bad.console_errors), bad.console_errors
    assert any("undefinedFunction" in e for e in bad.console_errors), bad.console_errors
    assert "http://example.invalid/pixel.png" in bad.requests


def test_the_page_is_offline_and_its_figures_are_the_json(
    replay_page: tuple[Path, dict[str, Any], str],
) -> None:
    _, doc, text = replay_page
    page = Page(text)
    assert_offline(page)
    assert_figures_equal(page, doc)
    # every variant beside the pre-fix posture, with the difference
    comparison = page.tables["comparison"]
    assert comparison.head[1] == PRE_FIX_VARIANT
    assert comparison.head[2:] == [h for n in VARIANTS[:-1] for h in (n, f"Δ {n}")]
    (cells,) = [c for _, label, c in comparison.rows if label == "net P&L"]
    ref = doc["variants"][PRE_FIX_VARIANT]["net_pnl"]
    assert cells[0][1] is not None and float(cells[0][1]) == ref
    for k, name in enumerate(VARIANTS[:-1]):
        value, delta = cells[1 + 2 * k], cells[2 + 2 * k]
        assert float(value[1] or "nan") == doc["variants"][name]["net_pnl"]
        assert float(delta[1] or "nan") == doc["variants"][name]["net_pnl"] - ref
    # monthly returns are the JSON's by_month, symbols its by_symbol
    months = page.tables["months"]
    assert [label for _, label, _ in months.rows] == sorted(doc["variants"]["baseline"]["by_month"])
    for _, month, cells in months.rows:
        for name, (_, value) in zip(months.head[1:], cells, strict=True):
            assert value is not None and float(value) == doc["variants"][name]["by_month"][month]["return"]
    symbols = page.tables["symbols"]
    for _, symbol, cells in symbols.rows:
        for name, (_, value) in zip(symbols.head[1:], cells, strict=True):
            assert float(value or "nan") == doc["variants"][name]["by_symbol"][symbol]["net_pnl"]


def test_without_the_pre_fix_posture_the_page_says_how_to_add_it() -> None:
    result = replay(BUNDLED / "NFP_USDT-1h.feather")
    text = tearsheet_html(TradingRun.from_replay(result, "one symbol"))
    page = Page(text)
    assert 'id="no-pre-fix"' in text and "comparison" not in page.tables
    assert "--variant config/legacy/fixed3.yaml" in text
    assert_offline(page)


def test_names_are_escaped_and_the_page_is_the_same_each_time() -> None:
    result = replay(BUNDLED / "NFP_USDT-1h.feather")
    text = tearsheet_html(TradingRun.from_replay(result, "<script>alert(1)</script> & more"))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text
    again = replay(BUNDLED / "NFP_USDT-1h.feather")
    assert tearsheet_html(TradingRun.from_replay(again, "<script>alert(1)</script> & more")) == text


@pytest.mark.postgres
async def test_report_writes_the_tearsheet_of_the_daemons_book(db_url: str, tmp_path: Path) -> None:
    from sigil.store import Database, PositionStore
    from tests.support.store_workers import order_args

    t0 = datetime(2024, 3, 10, tzinfo=UTC)
    db = await Database.open(db_url, min_size=1, max_size=1)
    try:
        store = PositionStore(db)
        for k, (symbol, price) in enumerate([("A/USDT", 2.2), ("B/USDT", 1.9), ("A/USDT", 2.0)]):
            opened = await store.open_position(
                **order_args("baseline", symbol, t0 + timedelta(hours=10 * k), timedelta(hours=1))
            )
            assert opened.position is not None
            await store.close_position(
                opened.position.id,
                closed_at=t0 + timedelta(hours=10 * k + 5),
                exit_price=price,
                gross=5.0 * price,
                exit_fee=5.0 * price * 0.001,
                exit_reason="atr_trail" if price > 2 else "hard_stop",
            )
    finally:
        await db.close()
    out, html = tmp_path / "report.json", tmp_path / "report.html"
    # in a thread of this process (the command runs its own event loop), as a user runs it
    code = await asyncio.to_thread(
        main, ["report", "--database-url", db_url, "--json", str(out), "--html", str(html)]
    )
    assert code == 0
    page = Page(html.read_text(encoding="utf-8"))
    assert_offline(page)
    doc = json.loads(out.read_text())
    doc["trades"].sort(key=lambda t: t["exit_time"])
    assert_figures_equal(page, doc)
    assert doc["variants"]["baseline"]["closed_trades"] == 3
