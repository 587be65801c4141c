"""An instance's share (``daemon.variants`` × ``daemon.shard``): the config checks, the stable hash, and
the overlap rule. Bad shares are bad input: exit 2 with one line naming the key, before anything runs."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from sigil.config import apply_overrides, default_config_dir, load_config
from sigil.daemon.share import Share, parse_shard, symbol_hash
from sigil.errors import EXIT_BAD_INPUT, ConfigError
from tests.support.pg import run_cli

SYMBOLS = [f"{b}/USDT" for b in ("DOGE", "PEPE", "WIF", "SUI", "BTC", "NFP", "TST", "ETH", "SOL", "XRP")]


def test_shard_parses_i_of_n_and_refuses_the_rest() -> None:
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 3 / 8 ") == (3, 8)
    for bad, why in [
        ("2/2", "i must be below N"),
        ("0/0", "N must be at least 1"),
        ("1", "expected i/N"),
        ("-1/2", "expected i/N"),
        ("a/b", "expected i/N"),
        ("0/99999999", "at most"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_shard(bad)


def test_the_hash_is_stable_and_the_shards_partition_the_symbols() -> None:
    # CRC-32 of the UTF-8 name: the same in every process and release (pinned, never Python's hash()).
    assert symbol_hash("DOGE/USDT") == 1649970828
    assert symbol_hash("PEPE/USDT") == 2697798521
    for n in (1, 2, 3, 7):
        shares = [Share(("baseline",), i, n) for i in range(n)]
        for sym in SYMBOLS:
            assert sum(s.owns_symbol(sym) for s in shares) == 1, (sym, n)
    assert Share(("baseline",), 0, 2).owns("baseline", "DOGE/USDT")
    assert not Share(("baseline",), 0, 2).owns("moderate", "DOGE/USDT")
    assert not Share(("baseline",), 1, 2).owns("baseline", "DOGE/USDT")


def test_overlap_rule() -> None:
    both = ("baseline", "moderate")

    def s(shard: str, variants: tuple[str, ...] = both) -> Share:
        i, n = parse_shard(shard)
        return Share(variants, i, n)

    assert s("0/1").overlaps(s("0/1"))
    assert not s("0/1", ("baseline",)).overlaps(s("0/1", ("moderate",))), "no variant in common"
    assert not s("0/2").overlaps(s("1/2")), "same N, different i"
    assert s("1/2").overlaps(s("1/2"))
    assert s("0/1").overlaps(s("1/3")), "0/1 holds every symbol"
    assert s("0/2").overlaps(s("0/3")), "hash 0 is in both"
    assert s("1/2").overlaps(s("0/3")), "hash 3 is in both"
    assert not s("0/2").overlaps(s("1/4")), "even hashes vs hashes 1 mod 4"
    # The rule is sound: shares it calls disjoint never hold one symbol, whatever the hash.
    shards = [(i, n) for n in range(1, 7) for i in range(n)]
    for (i, n), (j, m) in itertools.product(shards, shards):
        a, b = Share(both, i, n), Share(both, j, m)
        common = any(h % n == i and h % m == j for h in range(60))
        assert a.overlaps(b) == common, (a.shard, b.shard)


def test_config_takes_variants_and_shard_and_names_the_key_when_wrong() -> None:
    cfg = apply_overrides(load_config(), ["daemon.variants=[moderate, baseline]", "daemon.shard=1/3"])
    share = Share.of_config(cfg)
    assert share == Share(("baseline", "moderate"), 1, 3), "config order, not the list's"
    assert [v.name for v in share.pick(cfg.variants)] == ["baseline", "moderate"]
    assert Share.of_config(load_config()) == Share(("baseline", "moderate", "aggressive", "unhinged"), 0, 1)
    for item, key in [
        ("daemon.shard=2/2", "daemon.shard"),
        ("daemon.shard=0/0", "daemon.shard"),
        ("daemon.shard=x", "daemon.shard"),
        ("daemon.variants=[baseline, nope]", "daemon.variants"),
        ("daemon.variants=[]", "daemon.variants"),
        ("daemon.variants=[baseline, baseline]", "daemon.variants"),
    ]:
        with pytest.raises(ConfigError, match=key):
            apply_overrides(load_config(), [item])


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == EXIT_BAD_INPUT, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_bad_share_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    # No database and no exchange are reachable: the config is refused before either is asked.
    nowhere = ["--database-url", "postgresql://u@127.0.0.1:9/x", "--exchange-url", "http://127.0.0.1:9"]
    line = _one_line(run_cli("daemon", *nowhere, "--set", "daemon.shard=2/2"))
    assert line.startswith("sigil daemon: error: ") and "daemon.shard" in line and "'2/2'" in line
    line = _one_line(run_cli("daemon", *nowhere, "--set", "daemon.variants=[baseline, nope]"))
    assert "daemon.variants" in line and "'nope'" in line
    # The same from a config file.
    conf = tmp_path / "conf"
    (conf / "variants").mkdir(parents=True)
    for f in (default_config_dir() / "variants").glob("*.yaml"):
        (conf / "variants" / f.name).write_text(f.read_text())
    text = (default_config_dir() / "sigil.yaml").read_text().replace("shard: 0/1", "shard: 3/2")
    (conf / "sigil.yaml").write_text(text)
    line = _one_line(run_cli("daemon", "--config", str(conf), *nowhere))
    assert "sigil.yaml: daemon.shard: '3/2': i must be below N" in line
