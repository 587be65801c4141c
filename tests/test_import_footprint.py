"""What each command loads, in a fresh interpreter: the daemon without numpy or pyarrow, the probe
without numpy, ccxt or pydantic, a replay of feather files without pyarrow or pandas, and from its
config's digest without pydantic (each of these was most of a command's start-up or a daemon's
resident memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sigil.config_digest import ENV_CACHE_DIR
from tests.support.data import BUNDLED

HEAVY = ("numpy", "pyarrow", "pandas", "ccxt", "sqlalchemy", "optuna", "apprise", "jinja2", "pydantic")


def loaded_after(code: str, packages: tuple[str, ...] = HEAVY) -> set[str]:
    """Which of ``packages`` (top-level names, or dotted modules) a fresh interpreter holds after ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    return {p for p in packages if any(m == p or m.startswith(p + ".") for m in modules)}


def test_the_daemon_loads_neither_numpy_nor_pyarrow() -> None:
    code = (
        "import sigil.cli.daemon, sigil.daemon.serve, sigil.daemon.dashboard\n"
        "from sigil.exchange.ccxt_hooks import exchange_class\n"
        "exchange_class('binance')"
    )
    assert loaded_after(code) == {"ccxt", "sqlalchemy", "pydantic"}


def test_the_probe_loads_no_numpy_and_no_exchange_and_no_pydantic(tmp_path: Path) -> None:
    """Not even pydantic or the extension module, once the config's digest is written (the first
    probe of a config validates it, tests/test_config_digest.py): they must not come in through the
    store, the heartbeat or the package itself."""
    code = (
        "import sigil.cli.probe, sigil.store, sigil.daemon.heartbeat\n"
        "from sigil.store import HeartbeatStore, open_database, require_current\n"
        "from pathlib import Path\nfrom sigil.config_digest import probe_settings\n"
        f"probe_settings(cache_dir=Path({str(tmp_path)!r}))"
    )
    loaded_after(code)  # the first run digests the shipped config
    assert loaded_after(code) == set()
    assert loaded_after(code, packages=("sigil._core",)) == set()


def test_a_replay_of_feather_files_loads_numpy_only(tmp_path: Path) -> None:
    """Once the config's digest is written (the first replay of a config validates it,
    tests/test_replay_digest.py), neither pydantic nor ``sigil.config`` comes in: not through the
    command, the replay module or the reports."""
    code = (
        "import contextlib, io, os\n"
        f"os.environ[{ENV_CACHE_DIR!r}] = {str(tmp_path)!r}\n"
        "from sigil.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['replay', '--data', {str(BUNDLED)!r}, '--quiet']) == 0"
    )
    assert loaded_after(code) == {"numpy", "pydantic"}  # the first run validates, and digests
    assert loaded_after(code) == {"numpy"}
    assert loaded_after(code, packages=("sigil.config", "yaml")) == set()
