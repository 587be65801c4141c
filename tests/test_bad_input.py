"""Bad input on the command line: one line naming the problem, exit 2, before any work or write.

Each case runs the CLI in-process. Where a database or an exchange would be the next step, they point at
closed ports on 127.0.0.1: a check that came after opening them would exit 1 (cannot reach), not 2.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sigil.cli import main
from sigil.config import SigilConfig, apply_overrides, default_config_dir, load_config
from sigil.errors import EXIT_BAD_INPUT, ConfigError
from sigil.exchange.sim.clock import MAX_SPEED, SimClock
from tests.test_cli_exit_codes import closed_port
from tests.test_cli_exit_codes import unreachable_db as closed_db


def error_line(capsys: Any, command: str, argv: list[str]) -> str:
    """Runs ``sigil ARGV``, expects exit 2 and returns its one error line (argparse's usage lines may
    come before it; nothing else may)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit for a bad argument
        code = e.code
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith(f"sigil {command}: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(ln == errors[0] or ln.startswith(("usage:", " ")) for ln in lines), err
    return errors[0]


@pytest.mark.parametrize("speed", ["1e308", "inf", "nan", "-1"])
def test_exchange_sim_refuses_a_speed_out_of_range(capsys: Any, speed: str) -> None:
    line = error_line(capsys, "exchange-sim", ["exchange-sim", "--data", "nosuch", "--speed", speed])
    assert "--speed" in line and "from 0 to" in line, line


def test_the_simulator_clock_refuses_what_the_command_refuses() -> None:
    SimClock(0, MAX_SPEED)
    with pytest.raises(ValueError, match="speed"):
        SimClock(0, 1e308)
    with pytest.raises(ValueError, match="speed"):
        SimClock(0, 1.0).set_speed(MAX_SPEED * 2)


@pytest.mark.parametrize("value", ["inf", ".inf", "-.inf", ".nan"])
def test_daemon_refuses_an_infinite_interval_before_the_database(capsys: Any, value: str) -> None:
    argv = ["daemon", "--set", f"daemon.scan_interval_s={value}", "--database-url", closed_db()]
    argv += ["--exchange-url", f"http://127.0.0.1:{closed_port()}", "--health-port", "0"]
    line = error_line(capsys, "daemon", argv)
    assert "daemon.scan_interval_s" in line and "finite" in line, line


def test_every_float_of_the_config_refuses_inf(tmp_path: Path) -> None:
    """One rule covers every section, not just the fields that say so."""
    cfg = tmp_path / "cfg"
    shutil.copytree(default_config_dir(), cfg)
    floats = {
        name: [k for k, f in model.model_fields.items() if f.annotation in (float, float | None)]
        for name, model in (
            ("exchange", SigilConfig.model_fields["exchange"].annotation),
            ("database", SigilConfig.model_fields["database"].annotation),
            ("daemon", SigilConfig.model_fields["daemon"].annotation),
        )
        if model is not None
    }
    config = load_config(cfg)
    checked = 0
    for section, keys in floats.items():
        for key in keys:
            with pytest.raises(ConfigError, match=rf"{section}\.{key}: .*finite"):
                apply_overrides(config, [f"{section}.{key}=.inf"])
            checked += 1
    assert checked >= 10


def test_garbage_yaml_is_one_line_naming_file_line_and_column(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "cfg"
    shutil.copytree(default_config_dir(), cfg)
    (cfg / "sigil.yaml").write_text("daemon:\n  scan_interval_s: 5\n  shard: [0/1\n  x: {\n")
    line = error_line(capsys, "status", ["status", "--config", str(cfg), "--database-url", closed_db()])
    assert f"{cfg / 'sigil.yaml'}: line 4, column 4: not valid YAML" in line, line


def test_pool_min_above_pool_max_is_refused_naming_both(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "cfg"
    shutil.copytree(default_config_dir(), cfg)
    text = (cfg / "sigil.yaml").read_text()
    (cfg / "sigil.yaml").write_text(text + "\ndatabase:\n  pool_min: 9\n  pool_max: 4\n")
    line = error_line(capsys, "status", ["status", "--config", str(cfg), "--database-url", closed_db()])
    assert "pool_min (9) is above pool_max (4)" in line, line
    argv = ["daemon", "--set", "database.pool_min=20", "--database-url", closed_db()]
    line = error_line(capsys, "daemon", argv)
    assert "pool_min (20) is above pool_max" in line, line


@pytest.mark.parametrize("name", ["", "a b", "x/y", "é", "n" * 65])
def test_probe_refuses_an_instance_name_daemon_instance_refuses(capsys: Any, name: str) -> None:
    line = error_line(capsys, "probe", ["probe", "--instance", name, "--database-url", closed_db()])
    assert "--instance" in line and "not an instance name" in line, line
    with pytest.raises(ConfigError, match=r"daemon\.instance"):
        apply_overrides(load_config(), [f"daemon.instance={name!r}"])


@pytest.mark.parametrize("command", ["status", "migrate", "daemon", "probe"])
def test_an_empty_database_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, command: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SIGIL_HOME", str(home))
    line = error_line(capsys, command, [command, "--database-url", ""])
    assert "--database-url" in line and "leave it out for the embedded server" in line, line
    assert list(home.iterdir()) == []  # no embedded server was started
