"""The chaos scenarios' record: each test fills a :class:`Record` (faults injected, invariants checked,
times measured) and it is appended, with the test's outcome, as one JSON line to the results file —
``SIGIL_CHAOS_RESULTS`` (``make chaos`` sets it), else a file in pytest's temporary directory."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.record import Record

ENV_RESULTS = "SIGIL_CHAOS_RESULTS"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keeps each phase's report on the test item, so the record's teardown knows the outcome."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"chaos_{report.when}", report)


@pytest.fixture(scope="session")
def chaos_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the records go (one JSON object a line, appended)."""
    named = os.environ.get(ENV_RESULTS)
    path = Path(named) if named else tmp_path_factory.getbasetemp() / "chaos-results.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def record(request: pytest.FixtureRequest, chaos_results: Path) -> Iterator[Record]:
    """The scenario's record, written with the test's result once the test has run."""
    rec = Record(test=request.node.nodeid)
    started = time.monotonic()
    yield rec
    call = getattr(request.node, "chaos_call", None)
    if call is None:
        rec.result = "not run"
    elif call.passed:
        rec.result = "pass"
    else:
        lines = str(call.longrepr).strip().splitlines()
        first = next((x for x in lines if x.startswith("E ")), lines[-1])
        rec.result = "FAIL: " + first.removeprefix("E").strip()[:300]
    rec.wall_s = round(time.monotonic() - started, 1)
    with chaos_results.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec.as_json()) + "\n")
