"""The search space of ``sigil optimize``: which posture keys vary, and over what range.

A YAML file (``config/search/default.yaml`` ships) names the keys of a
:class:`~sigil.config.Posture` that the search varies, each with a range (both ends included) and a
step or a log scale; every other key keeps its value from the config (``sigil.yaml``'s defaults, or
the configured variant named by ``base``). Integer keys (``lookback``, ``max_open``…) take whole
numbers. Unknown keys, empty ranges and a space without a key are errors naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sigil.config import Config, Posture, default_config_dir
from sigil.errors import ConfigError

if TYPE_CHECKING:
    import optuna

#: The posture keys a search may vary (the issue's list: the stops, the breakout, the trail, the
#: book's limits, the ATR band, the time stop). Costs and balances are facts, not postures.
SEARCHABLE: tuple[str, ...] = (
    "stop_k",
    "stop_floor",
    "stop_cap",
    "lookback",
    "volume_mult",
    "trail_activation",
    "trail_mult",
    "cooldown_candles",
    "max_open",
    "atr_min_pct",
    "atr_max_pct",
    "time_stop_candles",
)

#: Where a config directory keeps its search spaces, and the one used without ``--space``.
SPACE_DIR = "search"
DEFAULT_SPACE = "default.yaml"

ParamValue = int | float


def _is_int_key(key: str) -> bool:
    return Posture.model_fields[key].annotation in (int, "int")


class Range(BaseModel):
    """One key's range: ``low`` to ``high`` (both included), on a grid of ``step`` or a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    step: float | None = Field(None, gt=0, allow_inf_nan=False)
    log: bool = False

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        if self.step is not None and self.log:
            raise ValueError("a range takes a step or a log scale, not both")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {self.low}")
        if self.step is not None and self.step > self.high - self.low:
            raise ValueError(f"step ({self.step}) is wider than the range ({self.low} to {self.high})")
        return self

    def decimals(self) -> int | None:
        """Decimal places of the grid (from ``low`` and ``step`` as written); None without a step."""
        if self.step is None:
            return None
        places = [-int(Decimal(repr(x)).normalize().as_tuple().exponent) for x in (self.low, self.step)]
        return max(0, *places)


class SearchSpace(BaseModel):
    """The keys a search varies (at least one) and the posture every other key comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A configured variant whose posture the unvaried keys take; None = ``sigil.yaml``'s defaults.
    base: str | None = None
    params: dict[str, Range]

    @model_validator(mode="after")
    def _known_keys(self) -> Self:
        if not self.params:
            raise ValueError("params: the space is empty (name at least one key to vary)")
        for key, r in self.params.items():
            if key not in SEARCHABLE:
                known = "a posture key that is not searched" if key in Posture.model_fields else "unknown key"
                raise ValueError(f"params.{key}: {known} (searchable: {', '.join(SEARCHABLE)})")
            if _is_int_key(key):
                ends = [r.low, r.high] + ([r.step] if r.step is not None else [])
                if any(not float(x).is_integer() for x in ends):
                    raise ValueError(f"params.{key}: a whole-number key needs whole low, high and step")
            # Each end against the key's own bounds (the checks across keys are per posture).
            field = Posture.model_fields[key]
            adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
            for end in (r.low, r.high):
                try:
                    adapter.validate_python(int(end) if _is_int_key(key) else end)
                except ValidationError as e:
                    msg = e.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"params.{key}: {end} is not a valid value: {msg}") from None
        return self

    def digest(self) -> str:
        """A short hash of the space (base and ranges): a study is tied to the space it searched."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def suggest(self, trial: optuna.Trial) -> dict[str, ParamValue]:
        """Asks ``trial`` for a value of every key (a retried or enqueued trial gets its fixed ones)."""
        out: dict[str, ParamValue] = {}
        for key, r in self.params.items():
            if _is_int_key(key):
                step = int(r.step) if r.step is not None else 1
                out[key] = trial.suggest_int(key, int(r.low), int(r.high), step=step, log=r.log)
            else:
                out[key] = trial.suggest_float(key, r.low, r.high, step=r.step, log=r.log)
        return out

    def posture(self, base: Posture, params: dict[str, Any]) -> dict[str, Any]:
        """``base``'s keys with ``params`` on top, grid values rounded to the grid's decimals (so an
        exported overlay reads 0.015, not 0.015000000000000001), validated. ConfigError when the
        combination is impossible (a stop cap below the floor, an ATR band upside down)."""
        values = base.model_dump()
        for key, r in self.params.items():
            if key not in params:
                raise ConfigError(f"trial parameters: {key} is missing")
            raw = params[key]
            places = r.decimals()
            if _is_int_key(key):
                values[key] = int(raw)
            else:
                values[key] = round(float(raw), places) if places is not None else float(raw)
        try:
            return Posture.model_validate(values).model_dump()
        except ValidationError as e:
            raise ConfigError(
                "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
            ) from None

    def base_posture(self, config: Config) -> Posture:
        """The posture the unvaried keys come from: the variant ``base``, else the config's defaults."""
        if self.base is None:
            return config.settings.defaults
        return Posture.model_validate(config.variant(self.base).model_dump(exclude={"name"}))


def default_space_path(config_dir: str | Path | None = None) -> Path:
    """``<config>/search/default.yaml`` of ``config_dir`` when it has one, else the shipped one."""
    if config_dir is not None:
        mine = Path(config_dir) / SPACE_DIR / DEFAULT_SPACE
        if mine.is_file():
            return mine
    return default_config_dir() / SPACE_DIR / DEFAULT_SPACE


def load_space(path: str | Path) -> SearchSpace:
    """Reads and validates a space file; ConfigError naming the file and the key on any problem."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"{p}: params: the space is empty (name at least one key to vary)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return space_from_dict(data, str(p))


def space_from_dict(data: dict[str, Any], source: str) -> SearchSpace:
    """A space from its mapping (a file's, or a study's stored copy); ConfigError naming ``source``."""
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_problems(e)}") from None


def _problems(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err["loc"])
        # A check of the whole space names its key in the message itself.
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
