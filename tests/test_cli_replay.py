"""``sigil replay`` as a user runs it: the table, --json, --plot, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sigil.cli import main
from sigil.cli.args import HTML_SUFFIXES, check_outputs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def sigil(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sigil", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_replay_prints_the_variant_table_and_writes_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    png = tmp_path / "out.png"
    r = sigil("replay", "--data", str(DATA), "--json", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    for col in ("closed trades", "atr_trail exits", "hard_stop exits", "net P&L", "balance"):
        assert col in header
    for name in ("baseline", "moderate", "aggressive", "unhinged"):
        assert any(line.startswith(name) for line in lines)
    doc = json.loads(out.read_text())
    assert set(doc["variants"]) == {"baseline", "moderate", "aggressive", "unhinged"}
    assert doc["trades"], "the bundled real candles produce trades"
    total = sum(v["closed_trades"] for v in doc["variants"].values())
    assert total == len(doc["trades"])
    for t in doc["trades"]:
        assert t["entry_time"].endswith("Z") and t["exit_time"] >= t["entry_time"]
        assert t["exit_reason"] in {"atr_trail", "hard_stop", "time_stop"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_legacy_posture_runs_beside_the_fixed_variants() -> None:
    r = sigil("replay", "--data", str(DATA), "--variant", str(REPO / "config/legacy/fixed3.yaml"))
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("legacy_fixed3") for line in r.stdout.splitlines())


def _one_line_exit_2(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    for n in needles:
        assert n in err[0]
    assert "Traceback" not in r.stderr


def test_missing_file(tmp_path: Path) -> None:
    _one_line_exit_2(
        sigil("replay", "--data", str(tmp_path / "nope.feather")), "nope.feather", "file not found"
    )


def test_malformed_file_names_file_and_row(tmp_path: Path) -> None:
    rows = [[1_700_000_000_000 + i * 60_000, 10.0, 11.0, 9.0, 10.5, 1.0] for i in range(20)]
    rows[7][2] = 8.0
    bad = tmp_path / "BAD_USDT-1m.json"
    bad.write_text(json.dumps(rows))
    out = tmp_path / "o.json"
    _one_line_exit_2(sigil("replay", "--data", str(bad), "--json", str(out)), "BAD_USDT-1m.json", "row 7")
    assert not out.exists(), "nothing is written on bad input"


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    (cfg / "variants").mkdir(parents=True)
    (cfg / "sigil.yaml").write_text("variants: [solo]\n")
    (cfg / "variants" / "solo.yaml").write_text("lookback: 10\nmax_opn: 3\n")
    _one_line_exit_2(sigil("replay", "--data", str(DATA), "--config", str(cfg)), "solo.yaml", "max_opn")


@pytest.mark.parametrize(("flag", "name"), [("--json", "x"), ("--plot", "x.png"), ("--html", "x.html")])
def test_output_into_missing_folder(tmp_path: Path, flag: str, name: str) -> None:
    _one_line_exit_2(
        sigil("replay", "--data", str(DATA), flag, str(tmp_path / "no" / name)), "does not exist"
    )


def test_usage_error_is_exit_2() -> None:
    assert sigil("replay").returncode == 2


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        ("--plot", "x.txt", "--plot x.txt: the file name must end in .png, .svg or .pdf"),
        ("--html", "x.txt", "--html x.txt: the file name must end in .html or .htm"),
        ("--json", "/proc/x.json", "--json /proc/x.json: cannot write there"),
        ("--html", "/proc/x.html", "--html /proc/x.html: cannot write there"),
        ("--plot", "ok.json", "--plot ok.json: the file name must end in"),
        ("--html", "/proc", "--html /proc: the file name must end in .html or .htm"),
        ("--json", ".", "--json .: is a folder, not a file"),
    ],
)
def test_outputs_are_checked_before_the_replay(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    problem: str,
) -> None:
    # In this process (the same main() as the console script): five subprocesses would cost ~20 s here.
    monkeypatch.chdir(tmp_path)
    code = main(["replay", "--data", str(DATA), "--json", "ok.json", flag, value])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("sigil replay: error: "), err
    assert problem in lines[0]
    assert out == "", "no table: the replay did not run"
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_two_outputs_cannot_name_one_file(tmp_path: Path) -> None:
    page = str(tmp_path / "page.html")
    with pytest.raises(ValueError, match=r"^--html .*page.html: the same file as --json$"):
        check_outputs({"--json": (page, ()), "--html": (page, HTML_SUFFIXES)})
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """``sigil replay … | head -1``: the reader goes away before the table is written. The command
    stops as a command killed by SIGPIPE would (exit 141, nothing on stderr), not with an error line
    about a broken pipe or a traceback from the interpreter's last flush."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil", "replay", "--data", str(DATA)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # no reader left: the command's first write fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert err == ""
