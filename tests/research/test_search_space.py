"""The search space file: the shipped one loads; unknown keys, empty ranges and an empty space are
errors that name the file and the key; postures are built on the grid and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil.config import load_config
from sigil.errors import ConfigError
from sigil.research.search_space import SEARCHABLE, default_space_path, load_space


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_the_shipped_space_loads_and_covers_the_searchable_keys() -> None:
    space = load_space(default_space_path())
    assert set(space.params) == set(SEARCHABLE)
    assert space.base is None
    assert len(space.digest()) == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: {}", "params: the space is empty"),
        ("", "params: the space is empty"),
        ("params: {stop_kk: {low: 1, high: 2}}", "params.stop_kk: unknown key"),
        (
            "params: {fee_rate: {low: 0.001, high: 0.002}}",
            "params.fee_rate: a posture key that is not searched",
        ),
        ("params: {stop_k: {low: 2, high: 1}}", "params.stop_k: empty range"),
        ("params: {stop_k: {low: 2, high: 2}}", "params.stop_k: empty range"),
        ("params: {stop_k: {low: 1, high: 2, stepp: 1}}", "params.stop_k.stepp: unknown key"),
        ("params: {lookback: {low: 8.5, high: 20}}", "params.lookback: a whole-number key"),
        ("params: {stop_floor: {low: 0.01, high: 1.5}}", "params.stop_floor: 1.5 is not a valid value"),
        ("params: {stop_k: {low: 0, high: 2, log: true}}", "params.stop_k: a log scale needs low > 0"),
        ("params: {stop_k: {low: 1, high: 2, step: 5}}", "params.stop_k: step (5.0) is wider"),
        ("spread: 1\nparams: {stop_k: {low: 1, high: 2}}", "spread: unknown key"),
    ],
)
def test_bad_spaces_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)


def test_a_missing_space_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_space(tmp_path / "nope.yaml")


def test_postures_sit_on_the_grid_and_keep_the_other_keys(tmp_path: Path) -> None:
    space = load_space(
        write(
            tmp_path,
            "params: {stop_floor: {low: 0.01, high: 0.04, step: 0.005},"
            " lookback: {low: 8, high: 72, step: 4}}",
        )
    )
    base = load_config().settings.defaults
    posture = space.posture(base, {"stop_floor": 0.01 + 3 * 0.005, "lookback": 20})
    assert posture["stop_floor"] == 0.025  # not 0.025000000000000005
    assert posture["lookback"] == 20 and isinstance(posture["lookback"], int)
    assert posture["trail_mult"] == base.trail_mult


def test_an_impossible_combination_is_refused(tmp_path: Path) -> None:
    space = load_space(
        write(tmp_path, "params: {stop_floor: {low: 0.01, high: 0.09}, stop_cap: {low: 0.02, high: 0.1}}")
    )
    with pytest.raises(ConfigError, match="stop_cap"):
        space.posture(load_config().settings.defaults, {"stop_floor": 0.08, "stop_cap": 0.03})


def test_base_names_a_configured_variant(tmp_path: Path) -> None:
    config = load_config()
    space = load_space(write(tmp_path, "base: aggressive\nparams: {stop_k: {low: 1, high: 2}}"))
    assert space.base_posture(config).lookback == config.variant("aggressive").lookback
    unknown = load_space(write(tmp_path, "base: nobody\nparams: {stop_k: {low: 1, high: 2}}"))
    with pytest.raises(ConfigError, match="unknown variant 'nobody'"):
        unknown.base_posture(config)
