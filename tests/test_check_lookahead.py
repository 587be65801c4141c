"""``sigil check lookahead``: passes on the bundled data with its counts, checks every decision time of
a small data set, and catches a replay that sees one candle ahead (exit 1, naming the decision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sigil.cli import main
from sigil.cli.check import print_lookahead
from sigil.config import load_config
from sigil.data import load_universe
from sigil.research.decisions import decisions_of, first_difference
from sigil.research.lookahead import check_lookahead, cut_at
from sigil.research.replay import replay_series
from sigil.times import iso_z
from tests.support.data import BUNDLED
from tests.support.peeking import peeking_replay


def test_bundled_data_has_no_look_ahead_and_the_counts_are_the_replays(capsys: Any) -> None:
    assert main(["check", "lookahead", "--data", str(BUNDLED), "--cuts", "40"]) == 0
    out = capsys.readouterr().out
    result = replay_series(load_universe([BUNDLED]), load_config())
    for name in result.variants:
        closed = sum(t.variant == name for t in result.trades)
        still_open = sum(p.variant == name for p in result.open_positions)
        assert closed > 20
        row = next(line for line in out.splitlines() if line.startswith(name)).split()
        assert (int(row[1].replace(",", "")), int(row[2].replace(",", ""))) == (closed + still_open, closed)
    assert "cut replays: 40 of " in out
    assert "no look-ahead" in out


def test_every_decision_time_of_a_small_data_set_is_a_cut() -> None:
    config = load_config()
    full = load_universe([BUNDLED])
    series = cut_at(full, int(full[0].time[0]) + 1500 * 3_600_000)
    report = check_lookahead(series, config, cuts=100_000)
    assert report.decision_times > 50
    assert len(report.cut_times) == report.decision_times
    assert report.clean, report.findings
    # Every decision was compared at its own cut: the decisions at the cuts are all of them.
    assert report.at_cuts == report.streamed


def test_a_replay_that_sees_the_next_candle_is_caught_by_both_forms(capsys: Any) -> None:
    config = load_config()
    series = load_universe([BUNDLED])
    report = check_lookahead(series, config, cuts=20, replay=peeking_replay)
    assert {f.form for f in report.findings} == {"streaming", "cut replay"}
    first = report.first()
    assert first is not None
    d = first.difference.decision
    assert print_lookahead(report, 0.0) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{report.variants[d.variant]} {d.symbol} at {iso_z(d.time)}" in err[0]
    assert "a decision changed" in err[0]


def test_a_one_ulp_change_of_a_stop_is_a_difference() -> None:
    config = load_config()
    want = decisions_of(replay_series(load_universe([BUNDLED]), config))
    k = next(i for i, d in enumerate(want) if d.action == "open")
    got = list(want)
    got[k] = got[k]._replace(stop_pct=float(np.nextafter(got[k].stop_pct, 1.0)))
    diff = first_difference(want, got)
    assert diff is not None and diff.want == want[k] and diff.got == got[k]
    line = diff.describe([v.name for v in config.variants], "x")
    assert repr(want[k].stop_pct) in line and repr(got[k].stop_pct) in line
    assert first_difference(want, want) is None
    assert first_difference(want, want[:-1]) is not None


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    assert main(["check", "lookahead", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and err[0].startswith("sigil check: error:")
    assert main(["check", "lookahead", "--data", str(BUNDLED), "--variant", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml" in err[0]
