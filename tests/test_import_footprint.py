"""What each command loads, in a fresh interpreter: the daemon without numpy or pyarrow, the probe
without numpy or ccxt, a replay of feather files without pyarrow or pandas (each of these was most of a
command's start-up or a daemon's resident memory)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.data import BUNDLED

HEAVY = ("numpy", "pyarrow", "pandas", "ccxt", "sqlalchemy", "optuna", "apprise", "jinja2")


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1])) & set(HEAVY)


def test_the_daemon_loads_neither_numpy_nor_pyarrow() -> None:
    code = (
        "import sigil.cli.daemon, sigil.daemon.serve, sigil.daemon.dashboard\n"
        "from sigil.exchange.ccxt_hooks import exchange_class\n"
        "exchange_class('binance')"
    )
    assert loaded_after(code) == {"ccxt", "sqlalchemy"}


def test_the_probe_loads_no_numpy_and_no_exchange() -> None:
    code = (
        "import sigil.cli.probe, sigil.store\n"
        "from sigil.store import HeartbeatStore, open_database, require_current"
    )
    assert loaded_after(code) == set()


def test_a_replay_of_feather_files_loads_numpy_only() -> None:
    code = (
        "import contextlib, io\nfrom sigil.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['replay', '--data', {str(BUNDLED)!r}, '--quiet'])"
    )
    assert loaded_after(code) == {"numpy"}
