"""The probe's config digest: taken only while every file and rule it came from is unchanged, and
never the way around a configuration that fails validation."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from sigil.config import DatabaseConfig, load_config
from sigil.config_digest import RULES, DatabaseSettings, ProbeSettings, probe_settings
from sigil.errors import ConfigError
from tests.test_config import _copy_config


def digests(cache: Path) -> list[Path]:
    return sorted((cache / "config-digest").glob("*.json"))


def test_the_settings_are_the_configs_whether_validated_or_digested(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    expected = ProbeSettings.of(load_config(cfg))
    assert probe_settings(cfg, cache_dir=cache) == expected  # a miss: validated, then digested
    assert len(digests(cache)) == 1
    assert probe_settings(cfg, cache_dir=cache) == expected  # a hit


def test_a_changed_file_is_validated_again(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    probe_settings(cfg, cache_dir=cache)
    main = cfg / "sigil.yaml"
    main.write_text(main.read_text() + "\ndaemon:\n  heartbeat_max_age_s: 42\n  instance: east\n")
    got = probe_settings(cfg, cache_dir=cache)
    assert (got.heartbeat_max_age_s, got.instance) == (42, "east")


def test_an_edit_that_lands_while_the_config_is_validated_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest is keyed on the bytes validation read, not on the file as it is when the digest is
    written: an edit saved in between leaves a digest that the next read finds out of date."""
    import sigil.config

    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    main = cfg / "sigil.yaml"
    real = sigil.config.load_config

    def load_then_edit(*args: object, **kwargs: object) -> object:
        loaded = real(*args, **kwargs)  # type: ignore[arg-type]
        main.write_text(main.read_text() + "\ndaemon:\n  instance: edited\n")
        return loaded

    monkeypatch.setattr(sigil.config, "load_config", load_then_edit)
    assert probe_settings(cfg, cache_dir=cache).instance == "main"  # what validation read
    monkeypatch.setattr(sigil.config, "load_config", real)
    assert probe_settings(cfg, cache_dir=cache).instance == "edited"


def test_a_variant_broken_after_the_digest_is_still_refused(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    probe_settings(cfg, cache_dir=cache)
    (cfg / "variants" / "moderate.yaml").write_text("lookback: 0\n")
    with pytest.raises(ConfigError, match=r"moderate\.yaml: lookback"):
        probe_settings(cfg, cache_dir=cache)
    with pytest.raises(ConfigError):  # and the refusal was not digested either
        probe_settings(cfg, cache_dir=cache)


def test_a_deleted_file_is_a_miss(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    probe_settings(cfg, cache_dir=cache)
    (cfg / "variants" / "unhinged.yaml").unlink()
    with pytest.raises(ConfigError, match=r"unhinged\.yaml: file not found"):
        probe_settings(cfg, cache_dir=cache)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "",  # empty
        lambda d: "{not json",
        lambda d: json.dumps({**d, "layout": 0}),  # another layout
        lambda d: json.dumps({**d, "rules": [["/gone.py", 1, 1]]}),  # other code judged it
        lambda d: json.dumps({**d, "settings": {"database": {}}}),  # not what a digest holds
        lambda d: json.dumps([1, 2]),
    ],
)
def test_a_damaged_digest_is_a_miss_and_is_rewritten(tmp_path: Path, damage: object) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    expected = probe_settings(cfg, cache_dir=cache)
    (where,) = digests(cache)
    whole = json.loads(where.read_text())
    where.write_text(damage(whole))  # type: ignore[operator]
    assert probe_settings(cfg, cache_dir=cache) == expected
    assert json.loads(where.read_text()) == whole


def test_a_digest_whose_settings_were_tampered_is_taken_only_while_its_fingerprint_holds(
    tmp_path: Path,
) -> None:
    """What makes a hit is the fingerprint alone (the settings are not re-derived): shown by editing
    a digest's settings, which a hit then returns, and which the next change of a file replaces."""
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    probe_settings(cfg, cache_dir=cache)
    (where,) = digests(cache)
    body = json.loads(where.read_text())
    body["settings"]["instance"] = "from-the-digest"
    where.write_text(json.dumps(body))
    assert probe_settings(cfg, cache_dir=cache).instance == "from-the-digest"
    main = cfg / "sigil.yaml"
    main.write_text(main.read_text() + "\n")
    assert probe_settings(cfg, cache_dir=cache).instance == "main"


def test_an_unwritable_cache_costs_only_time(tmp_path: Path) -> None:
    cfg = _copy_config(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be")
    expected = ProbeSettings.of(load_config(cfg))
    assert probe_settings(cfg, cache_dir=blocker) == expected
    assert probe_settings(cfg, cache_dir=blocker) == expected


def test_the_database_settings_are_the_config_sections_fields() -> None:
    assert [f.name for f in fields(DatabaseSettings)] == list(DatabaseConfig.model_fields)


def test_the_rules_are_every_module_of_sigil_that_judges_a_config() -> None:
    """``RULES`` must name each Sigil module that ``sigil.config`` loads beyond what ``import sigil``
    loads (a change to any of them may change what is valid), else a digest could outlive a rule."""
    script = (
        "import sys, sigil\nbefore = set(sys.modules)\nimport sigil.config\n"
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items()"
        " if n.startswith('sigil') and n not in before and n != 'sigil.config_digest')))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    package = Path(__import__("sigil").__file__).parent
    loaded = {str(Path(f).relative_to(package)) for f in out.stdout.split()}
    # sigil.errors is loaded by ``import sigil`` itself but is where ConfigError's wording lives; the
    # extension module is fingerprinted beside RULES.
    extension = Path(str(importlib.util.find_spec("sigil._core").origin)).name  # type: ignore[union-attr]
    assert loaded | {"errors.py"} == set(RULES) | {extension}


def test_a_hit_loads_no_pydantic(tmp_path: Path) -> None:
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    script = (
        f"import sys\nfrom pathlib import Path\nfrom sigil.config_digest import probe_settings\n"
        f"probe_settings({str(cfg)!r}, cache_dir=Path({str(cache)!r}))\n"
        "print(any(m.split('.')[0] == 'pydantic' for m in sys.modules))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert [r.strip() for r in runs] == ["True", "False"]  # a miss validates (pydantic); a hit does not


#: Edits per process of the race below.
EDITS = 150


def test_probes_racing_config_edits_never_take_a_digest_of_other_bytes(tmp_path: Path) -> None:
    """Four processes, each rewriting ``sigil.yaml`` (atomically, as an editor saves) with its own
    ``daemon.instance`` and then reading the settings, :data:`EDITS` times, all at once: so digests are
    written and read while other processes change the file. Whatever the interleaving, the
    settings each read returns are those of some whole version of the file, and once the edits
    stop, the next read returns the last version's: a digest never outlives the bytes it was
    made from."""
    cfg, cache = _copy_config(tmp_path), tmp_path / "cache"
    base = (cfg / "sigil.yaml").read_text()
    script = (
        "import os, sys, time\nfrom pathlib import Path\nfrom sigil.config_digest import probe_settings\n"
        f"cfg, cache, base = Path({str(cfg)!r}), Path({str(cache)!r}), {base!r}\n"
        "me, start = sys.argv[1], float(sys.argv[2])\nseen = set()\n"
        "probe_settings(cfg, cache_dir=cache)\n"  # imports done before the start, so all overlap
        "time.sleep(max(0.0, start - time.time()))\n"
        f"for k in range({EDITS}):\n"
        "    tmp = cfg / f'.sigil.yaml.{me}'\n"
        "    tmp.write_text(base + f'\\ndaemon:\\n  instance: p{me}-{k}\\n')\n"
        "    os.replace(tmp, cfg / 'sigil.yaml')\n"
        "    seen.add(probe_settings(cfg, cache_dir=cache).instance)\n"
        "print(' '.join(sorted(seen)))\n"
    )
    start = str(time.time() + 5)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i), start], stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    written = {f"p{i}-{k}" for i in range(4) for k in range(EDITS)}
    assert set(" ".join(outs).split()) <= written  # only ever settings of a whole version
    last = load_config(cfg).settings.daemon.instance
    assert last in written
    assert probe_settings(cfg, cache_dir=cache).instance == last
    assert not list((cache / "config-digest").glob(".digest-*"))  # no temporary file left behind
