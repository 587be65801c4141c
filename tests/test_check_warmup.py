"""``sigil check warmup``: the per-variant table on the bundled data, the levels of agreement, and a
full run whose decisions are not the data's (it saw the next candle) is exit 1, named."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sigil.cli import main
from sigil.cli.check import print_warmup
from sigil.config import load_config
from sigil.data import load_universe
from sigil.research.decisions import CLOSE, OPEN, Decision
from sigil.research.warmup import LEVELS, agreement, check_warmup
from sigil.times import iso_z, to_ms
from tests.support.data import BUNDLED
from tests.support.peeking import peeking_replay


def test_bundled_data_table_and_what_the_ladder_shows(capsys: Any) -> None:
    assert main(["check", "warmup", "--data", str(BUNDLED), "--ladder", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    config = load_config()
    for v in config.variants:
        row = next(line for line in out if line.startswith(v.name)).split()
        assert row[3:] == ["100", "full", "full"], "100 candles give the decisions, not the exact figures"
    report = check_warmup(load_universe([BUNDLED]), config, (20, 100, 1000))
    by_name = {v.name: v for v in report.variants}
    for v in config.variants:
        w = by_name[v.name]
        total = w.entries + w.exits
        assert total > 100
        # The full history reproduces every decision bit for bit (else exit 1).
        assert w.full_mismatch is None and w.agree[-1] == [total] * len(LEVELS)
        # 20 candles cannot fill a lookback of 24: not one of baseline's breakouts fires.
        if v.lookback > 20:
            assert w.agree[0][0] == 0 and w.smallest[0] != 20
        # Wilder's ATR remembers its start: 100 candles give the decisions, not the exact figures.
        assert w.agree[1][0] == total and w.agree[1][2] < total
        assert w.smallest == [100, 1000, 1000]
        # A window that reaches before the file's first candle is the whole history: it agrees exactly.
        assert w.whole_file == sorted(w.whole_file) and 0 < w.whole_file[-1] < total
        assert all(n <= row[2] for n, row in zip(w.whole_file, w.agree, strict=False))


def test_levels_of_agreement() -> None:
    o = Decision(1, "X/USDT", OPEN, 0, 2.0, "", 0.03, 0.05)
    c = Decision(9, "X/USDT", CLOSE, 0, 2.1, "atr_trail")
    assert agreement(o, o) == 3
    assert agreement(o, o._replace(atr=float(np.nextafter(0.05, 1.0)))) == 2
    assert agreement(o, o._replace(stop_pct=0.03 * (1 + 1e-6))) == 1
    assert agreement(c, c._replace(reason="hard_stop")) == 0
    assert agreement(c, c._replace(time=10)) == 0
    assert agreement(c, None) == 0


def test_a_full_run_that_saw_the_next_candle_is_exit_1(capsys: Any) -> None:
    report = check_warmup(load_universe([BUNDLED]), load_config(), (50,), replay=peeking_replay)
    assert not report.clean
    assert print_warmup(report, 0.0) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len([v for v in report.variants if v.full_mismatch])
    m = re.match(
        r"sigil check warmup: the full history does not reproduce a decision: (\S+) (\S+) at (\S+):", err[0]
    )
    assert m is not None, err[0]
    variant, symbol, at = m.groups()
    assert variant in {v.name for v in report.variants}
    assert symbol in {s.symbol for s in load_universe([BUNDLED])}
    assert at == iso_z(to_ms(datetime.fromisoformat(at)))


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    assert main(["check", "warmup", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert main(["check", "warmup", "--data", str(BUNDLED), "--variant", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml" in err[0]
    with pytest.raises(SystemExit) as exit_:
        main(["check", "warmup", "--data", str(BUNDLED), "--ladder", "14,zero"])
    assert exit_.value.code == 2
