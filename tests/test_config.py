"""Config: the shipped postures, overlays, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil.config import default_config_dir, load_config
from sigil.config_digest import content_hash
from sigil.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_postures_match_the_design_table() -> None:
    cfg = load_config()
    got = {
        v.name: (
            v.stop_k,
            v.stop_floor,
            v.stop_cap,
            v.lookback,
            v.volume_mult,
            v.max_open,
            v.cooldown_candles,
        )
        for v in cfg.variants
    }
    assert got == {
        "baseline": (1.5, 0.03, 0.06, 24, 3.0, 3, 12),
        "moderate": (1.5, 0.03, 0.06, 20, 2.5, 5, 8),
        "aggressive": (2.5, 0.03, 0.06, 16, 2.0, 8, 6),
        "unhinged": (2.5, 0.03, 0.06, 12, 1.5, 12, 4),
    }
    assert [v.name for v in cfg.variants] == ["baseline", "moderate", "aggressive", "unhinged"]
    for v in cfg.variants:
        assert (v.starting_balance, v.stake, v.fee_rate, v.slippage, v.atr_period) == (
            1000,
            100,
            0.001,
            0.0005,
            14,
        )
        assert (v.trail_activation, v.trail_mult, v.atr_min_pct, v.atr_max_pct, v.time_stop_candles) == (
            1.0,
            2.0,
            0.005,
            0.10,
            0,
        )


def test_repo_config_is_the_shipped_config() -> None:
    assert (REPO / "config" / "sigil.yaml").read_text() == (default_config_dir() / "sigil.yaml").read_text()


def test_legacy_overlay_is_the_fixed_three_percent_stop() -> None:
    cfg = load_config(extra_variants=(REPO / "config" / "legacy" / "fixed3.yaml",))
    legacy = cfg.variant("legacy_fixed3")
    assert (legacy.stop_floor, legacy.stop_cap, legacy.stop_k) == (0.03, 0.03, 0.0)
    assert legacy.lookback == cfg.variant("baseline").lookback
    assert len(cfg.variants) == 5


def _copy_config(tmp_path: Path) -> Path:
    src = default_config_dir()
    dst = tmp_path / "cfg"
    (dst / "variants").mkdir(parents=True)
    (dst / "sigil.yaml").write_text((src / "sigil.yaml").read_text())
    for f in (src / "variants").iterdir():
        (dst / "variants" / f.name).write_text(f.read_text())
    return dst


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("stop_k: 1.5\nstop_kk: 2\n", "stop_kk: unknown key"),
        ("lookback: 0\n", "lookback"),
        ("lookback: twenty\n", "lookback"),
        ("stop_floor: 0.05\nstop_cap: 0.04\n", "stop_cap (0.04) is below stop_floor (0.05)"),
        ("stake: -5\n", "stake"),
        ("fee_rate: .nan\n", "fee_rate"),
        ("- a list\n", "expected a mapping"),
        ("stop_k: [1\n", "not valid YAML"),
    ],
)
def test_bad_overlay_names_file_and_field(tmp_path: Path, text: str, needle: str) -> None:
    cfg = _copy_config(tmp_path)
    (cfg / "variants" / "moderate.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "moderate.yaml" in str(e.value)
    assert needle in str(e.value)


def test_bad_main_file_and_missing_variant(tmp_path: Path) -> None:
    cfg = _copy_config(tmp_path)
    (cfg / "sigil.yaml").write_text("defaults:\n  atr_period: 0\n")
    with pytest.raises(ConfigError, match=r"sigil\.yaml: defaults\.atr_period"):
        load_config(cfg)
    (cfg / "sigil.yaml").write_text("variants: [baseline, nosuch]\n")
    with pytest.raises(ConfigError, match=r"nosuch\.yaml: file not found"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="config directory not found"):
        load_config(tmp_path / "nothing")


def test_unknown_variant_lookup() -> None:
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        load_config().variant("nope")


def test_a_file_that_is_not_utf8_text_is_named(tmp_path: Path) -> None:
    cfg = _copy_config(tmp_path)
    (cfg / "variants" / "moderate.yaml").write_bytes(b"stop_k: 1.5\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"moderate\.yaml: not UTF-8 text \(byte 17"):
        load_config(cfg)


def test_a_config_lists_every_file_it_read_with_its_content_hash(tmp_path: Path) -> None:
    cfg = _copy_config(tmp_path)
    extra = REPO / "config" / "legacy" / "fixed3.yaml"
    loaded = load_config(cfg, extra_variants=(extra,))
    names = [Path(f).name for f in loaded.files]
    assert names == ["sigil.yaml", *(f"{v}.yaml" for v in loaded.settings.variants), "fixed3.yaml"]
    assert loaded.files[str(cfg / "sigil.yaml")] == content_hash((cfg / "sigil.yaml").read_bytes())
