"""``sigil optimize`` on the bundled candles against a real PostgreSQL: a small 2-fold study reports
in-sample beside out-of-sample per fold, PBO and DSR; its export replays, through ``sigil replay
--variant``, to exactly the reported out-of-sample figures; ``--show`` runs nothing; a study of the
same name with another objective is refused; bad input exits 2 (1 for an unreachable database)
before anything is written."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import optuna
import pyarrow as pa
import pyarrow.feather as feather
import pytest
import yaml

from sigil.cli import main
from sigil.config import default_config_dir, load_config
from sigil.data.candles import CandleSeries, load_universe
from sigil.research.out_of_sample import evaluate_fold
from sigil.research.studies import SPEC_ATTR, family, open_storage, stored_spec
from sigil.research.walk_forward import slice_series
from tests.support.data import BUNDLED

pytestmark = pytest.mark.postgres

SMALL = ["--data", str(BUNDLED), "--folds", "2", "--trials", "3", "--batch", "3", "--seed", "7",
         "--min-trades", "5", "--quiet"]  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_window(series: list[CandleSeries], folder: Path) -> Path:
    """The candles as freqtrade feather files (what ``sigil replay --data`` reads)."""
    folder.mkdir(parents=True)
    for s in series:
        base, quote = s.symbol.split("/")
        table = pa.table(
            {
                "date": pa.array(s.time * 1_000_000, type=pa.timestamp("ns", tz="UTC")),
                "open": s.open, "high": s.high, "low": s.low, "close": s.close, "volume": s.volume,
            }
        )  # fmt: skip
        feather.write_feather(table, folder / f"{base}_{quote}-{s.timeframe_ms // 3_600_000}h.feather")
    return folder


@pytest.fixture(scope="module")
def study(pg: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """One small study for the module: (database URL, export file, printed report)."""
    cm = pg.database(migrated=False)  # type: ignore[attr-defined]
    url = cm.__enter__()
    out = tmp_path_factory.mktemp("optimize") / "best.yaml"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["optimize", *SMALL, "--study", "small", "--database-url", url, "--export", str(out),
                     "--html", str(out.with_suffix(".html"))])  # fmt: skip
    assert code == 0, buf.getvalue()
    yield url, out, buf.getvalue()
    cm.__exit__(None, None, None)


def test_the_report_sets_in_sample_beside_out_of_sample_per_fold(study: tuple[str, Path, str]) -> None:
    _url, _out, text = study
    assert "Study small: objective calmar (at least 5 closed trades), 2 folds, 3 trials per fold" in text
    rows = [line for line in text.splitlines() if line.startswith(("1/2 ", "2/2 "))]
    assert len(rows) == 2, text
    assert "trades IS/OOS" in text and "return IS/OOS" in text and "Sharpe IS/OOS" in text
    assert "Stitched out-of-sample equity" in text
    assert "fold 1: 3 trials, PBO" in text and "DSR" in text
    assert any(line.startswith("Verdict: ") for line in text.splitlines())


def test_the_html_page_has_the_comparison_and_the_search(study: tuple[str, Path, str]) -> None:
    _url, out, _text = study
    page = out.with_suffix(".html").read_text()
    assert "In sample and out of sample" in page and "Verdict: " in page
    assert "stitched out-of-sample equity" in page
    assert "small-fold1: best so far" in page and "small-fold2: parameter importances" in page
    assert page.count("<svg") >= 6


def test_the_export_replays_to_the_reported_out_of_sample_figures(
    study: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, out, _text = study
    storage = open_storage(url, 10)
    series = load_universe([BUNDLED])
    config = load_config()
    names = family(storage, "small")
    assert names == ["small-fold1", "small-fold2"]
    assert out.exists()
    for k, name in enumerate(names, start=1):
        spec = stored_spec(storage, name)
        outcome = evaluate_fold(optuna.load_study(study_name=name, storage=storage), spec, series, config)
        assert outcome is not None
        overlay = out.with_name(f"best-fold{k}.yaml")
        window = write_window(slice_series(series, spec.fold.test), tmp_path / f"fold{k}")
        report = tmp_path / f"fold{k}.json"
        capsys.readouterr()
        assert (
            main(
                ["replay", "--data", str(window), "--variant", str(overlay), "--json", str(report), "--quiet"]
            )
            == 0
        )
        got = json.loads(report.read_text())["variants"][f"best-fold{k}"]
        oos = outcome.out_of_sample
        assert got["closed_trades"] == oos.closed_trades
        assert got["equity"] / got["starting_balance"] - 1.0 == oos.total_return
        assert got["max_drawdown"] == oos.max_drawdown
        assert got["sharpe"] == oos.sharpe
        assert got["calmar"] == oos.calmar
        assert got["net_pnl"] == oos.net_pnl
    # A config directory (the daemon's) takes the overlay unchanged as one of its variants.
    mine = tmp_path / "config"
    shutil.copytree(default_config_dir(), mine)
    shutil.copy(out, mine / "variants" / "best.yaml")
    settings = yaml.safe_load((mine / "sigil.yaml").read_text())
    settings["variants"] = [*settings["variants"], "best"]
    (mine / "sigil.yaml").write_text(yaml.safe_dump(settings))
    last = evaluate_fold(
        optuna.load_study(study_name=names[-1], storage=storage),
        stored_spec(storage, names[-1]),
        series,
        config,
    )
    assert last is not None
    assert load_config(mine).variant("best").model_dump(exclude={"name"}) == last.posture
    # The last fold's posture is the one exported as the file itself.
    assert out.read_text().split("\n", 2)[2] == out.with_name("best-fold2.yaml").read_text().split("\n", 2)[2]


def test_show_prints_the_state_without_running(
    study: tuple[str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _out, _text = study
    storage = open_storage(url, 10)
    before = [
        len(optuna.load_study(study_name=n, storage=storage).trials) for n in ("small-fold1", "small-fold2")
    ]
    capsys.readouterr()
    assert main(["optimize", "--study", "small", "--show", "--database-url", url]) == 0
    shown = capsys.readouterr().out
    assert "small-fold1: 3 finished" in shown and "small-fold2: 3 finished" in shown
    assert "best #" in shown and "workers " in shown and ":" in shown.split("workers ")[1]
    after = [
        len(optuna.load_study(study_name=n, storage=storage).trials) for n in ("small-fold1", "small-fold2")
    ]
    assert after == before


def test_a_study_of_the_same_name_with_another_objective_is_refused(
    study: tuple[str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _out, _text = study
    storage = open_storage(url, 10)
    spec_before = storage.get_study_user_attrs(storage.get_study_id_from_name("small-fold1"))[SPEC_ATTR]
    count = len(optuna.load_study(study_name="small-fold1", storage=storage).trials)
    capsys.readouterr()
    args = ["optimize", *SMALL, "--study", "small", "--database-url", url, "--objective", "sharpe"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "study 'small-fold1' exists with objective calmar (asked: sharpe)" in err and "--resume" in err
    assert len(optuna.load_study(study_name="small-fold1", storage=storage).trials) == count
    assert (
        storage.get_study_user_attrs(storage.get_study_id_from_name("small-fold1"))[SPEC_ATTR] == spec_before
    )


def test_bad_input_exits_2_before_the_database_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"postgresql://sigil:x@127.0.0.1:{closed_port()}/sigil"
    empty = tmp_path / "empty.yaml"
    empty.write_text("params: {}\n")
    cases = [
        (["--folds", "60"], "too short for 60 folds"),
        (["--space", str(empty)], f"{empty}: params: the space is empty"),
        (["--objective", "calamr"], "unknown figure 'calamr'"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        code = main(["optimize", "--data", str(BUNDLED), "--database-url", nowhere, "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in err and err.count("\n") == 1


def test_an_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = f"postgresql://sigil:x@127.0.0.1:{closed_port()}/sigil"
    assert main(["optimize", "--data", str(BUNDLED), "--database-url", nowhere, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and err.count("\n") == 1
