"""The replay's config digest: the same variants as validation gives, the same replay to the bit, taken
only while every file it came from is unchanged, never for a config that fails, and never the probe's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sigil.config import load_config
from sigil.config_digest import (
    ENV_CACHE_DIR,
    ProbeSettings,
    ReplaySettings,
    probe_settings,
    replay_settings,
)
from sigil.data.candles import load_universe
from sigil.errors import ConfigError
from sigil.research.replay import ReplayResult, replay_series
from tests.support.data import BUNDLED
from tests.test_config import _copy_config
from tests.test_config_digest import digests

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "config" / "legacy" / "fixed3.yaml"


def engine_types(settings: ReplaySettings) -> list[list[tuple[str, type, object]]]:
    """Each variant's engine parameters with their types: 100 and 100.0 are equal but not the same."""
    return [[(k, type(x), x) for k, x in v.engine_params().items()] for v in settings.variants]


def test_the_variants_are_the_configs_whether_validated_or_digested(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    expected = ReplaySettings.of(load_config(cfg, (LEGACY,)))
    missed = replay_settings(cfg, [LEGACY], cache_dir=cache)  # validated, then digested
    assert len(digests(cache)) == 1
    hit = replay_settings(cfg, [LEGACY], cache_dir=cache)
    assert missed == expected and hit == expected
    assert engine_types(hit) == engine_types(expected)
    assert [v.name for v in hit.variants][-1] == "legacy_fixed3"
    assert hit.variant("legacy_fixed3").starting_balance == expected.variant("legacy_fixed3").starting_balance


def test_the_settings_answer_as_the_config_does() -> None:
    config = load_config()
    settings = ReplaySettings.of(config)
    for v in config.variants:
        mine = settings.variant(v.name)
        assert (mine.name, mine.starting_balance, mine.engine_params()) == (
            v.name,
            v.starting_balance,
            v.engine_params(),
        )
    mine.engine_params()["stake"] = -1.0  # a caller's copy: the settings stay as validated
    assert mine.engine_params() == config.variants[-1].engine_params()
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        settings.variant("nope")
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        config.variant("nope")
    assert hash(settings) == hash(ReplaySettings.of(config))  # frozen, and usable as a key


def same_replay(a: ReplayResult, b: ReplayResult) -> bool:
    return (
        a.to_json() == b.to_json()
        and np.array_equal(a.equity_time, b.equity_time)
        and all(np.array_equal(a.equity[n], b.equity[n]) for n in a.variants)
    )


def test_a_replay_of_the_settings_is_the_replay_of_the_config(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    series = load_universe([BUNDLED])
    replay_settings(None, [LEGACY], cache_dir=cache)
    from_digest = replay_settings(None, [LEGACY], cache_dir=cache)
    want = replay_series(series, load_config(None, (LEGACY,)))
    assert want.trades, "the bundled candles trade"
    assert same_replay(replay_series(series, from_digest), want)


@pytest.mark.parametrize("edit", ["overlay", "variant", "sigil.yaml"])
def test_an_edited_file_is_validated_again(tmp_path: Path, edit: str) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    overlay = tmp_path / "wide.yaml"
    overlay.write_text("name: wide\nextends: baseline\nlookback: 30\n")
    before = replay_settings(cfg, [overlay], cache_dir=cache)
    target, name, key, value = {
        "overlay": (overlay, "wide", "lookback", 31),
        "variant": (cfg / "variants" / "moderate.yaml", "moderate", "max_open", 7),
        "sigil.yaml": (cfg / "sigil.yaml", "baseline", "stake", 55.5),
    }[edit]
    text = target.read_text()
    target.write_text(
        text.replace("stake: 100.0", f"{key}: {value}")
        if edit == "sigil.yaml"
        else text + f"\n{key}: {value}\n"
    )
    after = replay_settings(cfg, [overlay], cache_dir=cache)
    assert before.variant(name).engine_params()[key] != value
    assert after.variant(name).engine_params()[key] == value
    assert after == ReplaySettings.of(load_config(cfg, (overlay,)))
    assert len(digests(cache)) == 1  # the same digest, rewritten


def test_the_overlays_are_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another set of overlays is another digest; the same overlay named by another path is the same."""
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    plain = replay_settings(cfg, cache_dir=cache)
    with_legacy = replay_settings(cfg, [LEGACY], cache_dir=cache)
    assert len(with_legacy.variants) == len(plain.variants) + 1
    assert len(digests(cache)) == 2
    monkeypatch.chdir(LEGACY.parent)
    assert replay_settings(cfg, [LEGACY.name], cache_dir=cache) == with_legacy
    assert replay_settings(cfg, cache_dir=cache) == plain
    assert len(digests(cache)) == 2


def test_a_config_that_fails_is_never_digested(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    (cfg / "variants" / "moderate.yaml").write_text("lookback: 0\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"moderate\.yaml: lookback"):
            replay_settings(cfg, cache_dir=cache)
    assert digests(cache) == []


def test_a_deleted_overlay_is_a_miss(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    overlay = tmp_path / "wide.yaml"
    overlay.write_text("name: wide\nlookback: 30\n")
    replay_settings(cfg, [overlay], cache_dir=cache)
    overlay.unlink()
    with pytest.raises(ConfigError, match=r"wide\.yaml: file not found"):
        replay_settings(cfg, [overlay], cache_dir=cache)


def test_the_probes_digest_and_the_replays_do_not_collide(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    config = load_config(cfg)
    for _ in range(2):  # misses, then hits
        assert probe_settings(cfg, cache_dir=cache) == ProbeSettings.of(config)
        assert replay_settings(cfg, cache_dir=cache) == ReplaySettings.of(config)
    probe, replay = digests(cache)
    assert probe.name.startswith("probe-") and replay.name.startswith("replay-")
    # Even a digest of the other kind under this kind's name is a miss, not misread.
    replay.write_bytes(probe.read_bytes())
    assert replay_settings(cfg, cache_dir=cache) == ReplaySettings.of(config)
    assert json.loads(replay.read_text())["key"][0] == "replay"


@pytest.mark.parametrize(
    "settings",
    [
        {"variants": [{"name": "baseline", "starting_balance": 1000.0, "engine": 5}]},
        {"variants": [{"name": "baseline"}]},
        {"variants": 3},
        {},
    ],
)
def test_a_damaged_replay_digest_is_a_miss_and_is_rewritten(tmp_path: Path, settings: object) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    expected = replay_settings(cfg, cache_dir=cache)
    (where,) = digests(cache)
    whole = json.loads(where.read_text())
    where.write_text(json.dumps({**whole, "settings": settings}))
    assert replay_settings(cfg, cache_dir=cache) == expected
    assert json.loads(where.read_text()) == whole


def sigil_replay(*args: str, cache: str) -> subprocess.CompletedProcess[str]:
    """``sigil replay`` in a fresh interpreter with ``cache`` as Sigil's cache directory; its stderr's
    last line says whether pydantic was imported."""
    script = (
        "import sys\nfrom sigil.cli import main\n"
        f"code = main(['replay', *{list(args)!r}])\n"
        "print('pydantic' in sys.modules, file=sys.stderr)\nsys.exit(code)"
    )
    env = {**os.environ, ENV_CACHE_DIR: cache}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_the_command_prints_and_writes_the_same_from_the_digest(tmp_path: Path) -> None:
    """Validating (no cache directory to keep a digest in), digesting, and from the digest: the same
    table and the same ``--json``, to the byte; only the first two import pydantic."""
    cache = str(tmp_path / "cache")
    runs = []
    for k, where in enumerate(["/dev/null/none", cache, cache]):
        out = tmp_path / f"run{k}.json"
        r = sigil_replay("--data", str(BUNDLED), "--variant", str(LEGACY), "--json", str(out), cache=where)
        assert r.returncode == 0, r.stderr
        runs.append((r.stdout.replace(str(out), "OUT"), out.read_bytes(), r.stderr.split()[-1]))
    assert [pydantic for _, _, pydantic in runs] == ["True", "True", "False"]
    assert runs[0][:2] == runs[1][:2] == runs[2][:2]
    assert "legacy_fixed3" in runs[2][0]


def test_the_command_refuses_a_bad_config_in_one_line_and_digests_nothing(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    (cfg / "variants" / "unhinged.yaml").write_text("stake: -1\n")
    out = tmp_path / "out.json"
    for _ in range(2):
        r = sigil_replay("--data", str(BUNDLED), "--config", str(cfg), "--json", str(out), cache=str(cache))
        assert r.returncode == 2, r.stderr
        error, _pydantic = r.stderr.strip().splitlines()
        assert error.startswith("sigil replay: error: ") and "unhinged.yaml: stake" in error
        assert r.stdout == "" and not out.exists()
    assert digests(cache) == []
