"""The README's benchmark table: written from a ratios file between its markers, goals judged, the rest
of the README kept; bad input one line and exit 2 with the README untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sigil.bench import readme
from sigil.bench.ratios import Figure, RatiosFile, git_commit, vector_units

README = "# Title\n\nprose before\n\n<!-- bench-table -->\nold table\n<!-- /bench-table -->\n\nprose after\n"
GOALS = '[goals]\n"atr 10k: sigil/talib" = "<= 0.5"\n"replay speed-up" = ">= 100"\n"gone case" = "<= 1"\n'


def _run_file(tmp_path: Path) -> Path:
    run = RatiosFile(
        figures={
            "atr 10k: sigil/talib": Figure(0.42, "report", "median 1 ns vs 2.4 ns | per bar"),
            "replay speed-up": Figure(84.0, "higher", "Python reference"),
            "peak RSS (MiB)": Figure(151.5, "report"),
        },
        commit="0123456789abcdef",
        dirty=False,
        machine={"cpu": "Test CPU", "cores": 2},
        written="2026-12-02T07:00:00+0000",
    )
    path = tmp_path / "ratios.json"
    run.write(path)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sigil.bench.readme", *args], capture_output=True, text=True, timeout=60
    )


def test_the_table_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    ratios, target, goals = _run_file(tmp_path), tmp_path / "README.md", tmp_path / "goals.toml"
    target.write_text(README, encoding="utf-8")
    goals.write_text(GOALS, encoding="utf-8")
    r = _cli(str(ratios), str(target), "--goals", str(goals))
    assert r.returncode == 0, r.stderr
    assert "3 figures, 1 of 3 goals met" in r.stdout
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nprose before\n\n<!-- bench-table -->\n")
    assert text.endswith("<!-- /bench-table -->\n\nprose after\n")
    assert "old table" not in text
    assert "0123456789" in text and "Test CPU" in text
    assert "| atr 10k: sigil/talib | 0.42 | ≤ 0.5: met | median 1 ns vs 2.4 ns \\| per bar |" in text
    assert "| replay speed-up | 84 | ≥ 100: **not met** | Python reference |" in text
    assert "| peak RSS (MiB) | 151.5 |  |  |" in text
    assert "Goals without a figure in this run: `gone case`." in text
    # Run again: the same README (the markers survive their own output).
    assert _cli(str(ratios), str(target), "--goals", str(goals)).returncode == 0
    assert target.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(
    ("readme_text", "goals_text", "message"),
    [
        ("no markers here\n", None, "needs one <!-- bench-table --> line"),
        (README + "<!-- bench-table -->\n", None, "needs one <!-- bench-table --> line"),
        ("<!-- /bench-table -->\n<!-- bench-table -->\n", None, "needs one <!-- bench-table --> line"),
        (README, '[goals]\n"x" = "< 3"\n', "goal '< 3' is not"),
        (README, '[goals]\n"x" = "<= many"\n', "goal '<= many' is not"),
        (README, "goals = 3\n", "no [goals] table"),
        (README, "[goals\n", "not a goals file"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_readme(
    tmp_path: Path, readme_text: str, goals_text: str | None, message: str
) -> None:
    ratios, target = _run_file(tmp_path), tmp_path / "README.md"
    target.write_text(readme_text, encoding="utf-8")
    args = [str(ratios), str(target)]
    if goals_text is not None:
        (tmp_path / "goals.toml").write_text(goals_text, encoding="utf-8")
        args += ["--goals", str(tmp_path / "goals.toml")]
    r = _cli(*args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert target.read_text(encoding="utf-8") == readme_text


def test_a_missing_ratios_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "README.md"
    target.write_text(README, encoding="utf-8")
    r = _cli(str(tmp_path / "nope.json"), str(target))
    assert r.returncode == 2 and "nope.json: no such file" in r.stderr
    assert target.read_text(encoding="utf-8") == README


def test_goals_judge_both_ways() -> None:
    assert readme.Goal.parse("<= 0.5", "t").met(0.5) and not readme.Goal.parse("<= 0.5", "t").met(0.51)
    assert readme.Goal.parse(">= 100", "t").met(100) and not readme.Goal.parse(">= 100", "t").met(99.9)


def test_the_shipped_goals_parse() -> None:
    goals = readme.read_goals(Path(__file__).parent / "benchmarks" / "goals.toml")
    assert "atr 10k bars: sigil/talib" in goals and str(goals["atr 10k bars: sigil/talib"]) == "≤ 0.5"


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ("fpu sse2 avx2 fma avx512f avx512dq", "AVX-512"),
        ("fpu sse2 avx2 fma", "AVX2/FMA"),
        ("fpu sse2 avx2", "no AVX2/FMA"),
        ("fpu sse2 avx512f", "no AVX2/FMA"),
    ],
)
def test_the_vector_units_are_read_off_the_flags(tmp_path: Path, flags: str, want: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n")
    assert vector_units(cpuinfo) == want
    assert vector_units(tmp_path / "missing") == ""


def test_a_readme_changed_by_an_earlier_run_leaves_the_checkout_clean(tmp_path: Path) -> None:
    """``make bench`` writes the README: a table from an earlier run there does not change what the
    next run measures, so the run is not marked as of uncommitted changes; any other change is."""
    package = tmp_path / "python" / "sigil"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "README.md").write_text(README)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, timeout=30)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "c")
    assert git_commit(package)[1] is False
    (tmp_path / "README.md").write_text(README + "a table\n")
    assert git_commit(package)[1] is False
    (package / "__init__.py").write_text("x = 1\n")
    assert git_commit(package)[1] is True
