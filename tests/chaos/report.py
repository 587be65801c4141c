"""Writes docs/RELIABILITY.md from the records of a ``make chaos`` run (one JSON object a line, as
tests/chaos/conftest.py appends them): the machine, one table row per scenario, its times and notes.

Usage: ``python -m tests.chaos.report RESULTS.jsonl OUT.md``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INTRO = """\
# Reliability in figures

What Sigil survives, measured by `make chaos` (tests/chaos/): scripted faults against real processes —
`sigil daemon` and `sigil exchange-sim` as subprocesses, a real PostgreSQL (the embedded server of the
test suite, stopped, restarted and frozen for real), the real ccxt client on 127.0.0.1. After each fault,
and again once the last run has reached the end of the candles, the suite checks the invariants
(tests/support/invariants.py):

- **SQL book**: no (variant, symbol) open twice or overlapping, every cooldown counted from its open
  and its protection in force, every account equal to its starting balance plus the P&L of its closed
  positions minus the stakes and fees of its open ones, an event for every open, close and fill;
- **no half-written row**: no open position with exit fields, no closed one without its exit price,
  P&L and fees, no exchange fill without its order id, no event naming no position; at the end, no
  reservation still waiting for its order;
- **executed live orders booked once**: every order the simulated exchange executed is in the book
  exactly once, and nothing else is;
- **book = replay**: the daemon's trades are `sigil replay`'s on the same candles to the bit (entry,
  exit, price, reason, P&L, fees), and so are the balances and the positions still open.

Market time runs on the simulator's clock, faster than real time (30 000×: a one-hour candle every
0.12 s), so a few minutes cover months of candles; each scenario's first pass comes before the first
candle closes, and its last run goes on at 500 000× to the end of the data. Times are wall-clock seconds
on the machine below, which is shared with other work: they are what this run measured, not bounds.

Scaled: the exchange's "minute" of outage is 20 s of real time (166 hours of market time at 30 000×:
the restarted simulator's clock resumes where market time would be, so the daemon catches up a week of
candles); PostgreSQL outages last 6 s and hangs 10 s of real time. The load scenario runs the shipped
60 s scan interval in real time with the simulator at 60×, so a one-hour candle closes on every symbol
before every pass (sixty times the decisions of real time); the exchange client's rate limit is lifted
(`exchange.rate_limit_ms=1`), as in every daemon test against the simulator.
"""

COLUMNS = ("scenario", "runs", "faults injected", "invariants checked", "result", "failover / recovery times")


def machine() -> str:
    """One line naming the machine: CPU, cores, load, Python, commit."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores (shared), load average {load} when the report was written;"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()};"
        f" commit {commit or '?'}"
    )


def faults_cell(faults: list[str]) -> str:
    """The faults, grouped: ``kill -9 #1 … #20`` becomes ``20 × kill -9``."""
    counts: dict[str, int] = {}
    for f in faults:
        key = f.rsplit(" #", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{n} × {k}" if n > 1 or f"{k} #1" in faults else k for k, n in counts.items())


def times_cell(times: dict[str, Any]) -> str:
    """The times as ``name: value s``."""
    return "; ".join(f"{k}: {v:g} s" if isinstance(v, int | float) else f"{k}: {v}" for k, v in times.items())


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def about(nodeid: str) -> str:
    """The docstring of ``nodeid``'s module (what the scenario checks, what it found), on one line."""
    module = nodeid.split("::", 1)[0].removesuffix(".py").replace("/", ".")
    try:
        doc = importlib.import_module(module).__doc__ or ""
    except ImportError as e:
        return f"(its module cannot be imported: {e})"
    return " ".join(doc.split())


def render(records: list[dict[str, Any]], when: str) -> str:
    """The whole document."""
    passed = sum(r["result"] == "pass" for r in records)
    wall = sum(float(r.get("wall_s", 0)) for r in records)
    out = [INTRO, f"## The run of {when}\n", f"Machine: {machine()}.\n"]
    out.append(f"{passed} of {len(records)} scenarios passed; {wall / 60:.1f} minutes of scenarios.\n")
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for r in records:
        row = (
            r["scenario"] or r["test"],
            str(r["runs"]),
            faults_cell(r["faults"]),
            "; ".join(r["invariants"]),
            r["result"],
            times_cell(r["times"]),
        )
        out.append("| " + " | ".join(cell(c) for c in row) + " |")
    failed = [r for r in records if r["result"] != "pass"]
    if failed:
        out.append("\n## Failed scenarios\n")
        for r in failed:
            out.append(f"- **{r['scenario'] or r['test']}** (`{r['test']}`): {r['result']}")
            out.append(f"  {about(r['test'])}")
    out.append("\n## Notes\n")
    for r in records:
        notes = [*r["notes"], f"{r['wall_s']:g} s of wall time", f"test `{r['test']}`"]
        out.append(f"- **{r['scenario'] or r['test']}**: " + "; ".join(notes) + ".")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Reads the results, writes the report; exit 2 when there is nothing to report."""
    if len(argv) != 2:
        print("usage: python -m tests.chaos.report RESULTS.jsonl OUT.md", file=sys.stderr)
        return 2
    src, dest = Path(argv[0]), Path(argv[1])
    if not src.is_file():
        print(f"reliability report: error: no results in {src} (did the scenarios run?)", file=sys.stderr)
        return 2
    records = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        print(f"reliability report: error: {src} holds no record", file=sys.stderr)
        return 2
    when = datetime.fromtimestamp(src.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    dest.write_text(render(records, when), encoding="utf-8")
    print(f"reliability report: {len(records)} scenarios -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
