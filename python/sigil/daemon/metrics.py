"""In-process counters, gauges and histograms, rendered in the Prometheus text format (0.0.4).

Written here rather than pulled from ``prometheus_client``: the daemon exposes a couple of dozen
series, and the exposition format is a few lines of escaping and ordering.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

LabelValues = tuple[str, ...]

#: Pass-duration buckets (seconds): a healthy pass is well under a second, a slow exchange takes tens.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(v: float) -> str:
    """A sample value: integers without a fraction, the special values spelled as Prometheus does."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _labels(names: Sequence[str], values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra is not None:
        pairs.append(f'{extra[0]}="{escape_label(extra[1])}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name}: expected labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(x) for x in labels)

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()

    def render(self) -> str:
        """HELP, TYPE and every sample line of this family."""
        head = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        return "\n".join([*head, *self.samples()])


class Counter(_Family):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        """Adds ``by`` (>= 0) to the series named by ``labels``."""
        if by < 0:
            raise ValueError(f"{self.name}: a counter cannot go down (by={by})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + by

    def value(self, *labels: str) -> float:
        """The current count (0 for a series never incremented)."""
        return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        """Sum over every label set."""
        return sum(self._values.values())

    def samples(self) -> Iterable[str]:
        """One line per label set, sorted for a stable scrape."""
        if not self._values and not self.label_names:
            yield f"{self.name} 0"
        for key in sorted(self._values):
            yield f"{self.name}{_labels(self.label_names, key)} {format_value(self._values[key])}"


class Gauge(_Family):
    """A value that goes up and down; optionally computed at scrape time by ``fn``."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        fn: Callable[[], dict[LabelValues, float]] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}
        self._fn = fn

    def set(self, value: float, *labels: str) -> None:
        """Sets the series named by ``labels``."""
        self._values[self._key(labels)] = float(value)

    def value(self, *labels: str) -> float | None:
        """The current value; None when never set."""
        return self._current().get(self._key(labels))

    def _current(self) -> dict[LabelValues, float]:
        return self._fn() if self._fn is not None else self._values

    def samples(self) -> Iterable[str]:
        """One line per label set."""
        current = self._current()
        for key in sorted(current):
            yield f"{self.name}{_labels(self.label_names, key)} {format_value(current[key])}"


class Histogram(_Family):
    """Cumulative buckets, sum and count per label set."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sum: dict[LabelValues, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        """Records one observation."""
        key = self._key(labels)
        counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                counts[i] += 1
        counts[-1] += 1
        self._sum[key] = self._sum.get(key, 0.0) + value

    def count(self, *labels: str) -> int:
        """Number of observations of one label set."""
        counts = self._counts.get(self._key(labels))
        return counts[-1] if counts else 0

    def samples(self) -> Iterable[str]:
        """``_bucket`` lines (cumulative, ending in +Inf), then ``_sum`` and ``_count``."""
        for key in sorted(self._counts):
            counts = self._counts[key]
            for upper, n in zip((*self.buckets, math.inf), counts, strict=True):
                lab = _labels(self.label_names, key, ("le", format_value(upper)))
                yield f"{self.name}_bucket{lab} {n}"
            lab = _labels(self.label_names, key)
            yield f"{self.name}_sum{lab} {format_value(self._sum[key])}"
            yield f"{self.name}_count{lab} {counts[-1]}"


class Registry:
    """The daemon's metric families, in exposition order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> None:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} registered twice")
        self._families[family.name] = family

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        """Registers and returns a counter."""
        c = Counter(name, help_text, labels)
        self._add(c)
        return c

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        fn: Callable[[], dict[LabelValues, float]] | None = None,
    ) -> Gauge:
        """Registers and returns a gauge (computed at scrape time when ``fn`` is given)."""
        g = Gauge(name, help_text, labels, fn)
        self._add(g)
        return g

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        """Registers and returns a histogram."""
        h = Histogram(name, help_text, labels, buckets)
        self._add(h)
        return h

    def render(self) -> str:
        """The whole scrape, newline-terminated, as ``text/plain; version=0.0.4``."""
        return "\n".join(f.render() for f in self._families.values()) + "\n"


class DaemonMetrics:
    """Every series the daemon exposes on ``/metrics``.

    Scrape-time gauges (heartbeat age, balances, equity, open positions, scheduler state) read the
    daemon's live state through the callables set with :meth:`bind`.
    """

    def __init__(self) -> None:
        r = self.registry = Registry()
        self._heartbeat_age: Callable[[], float | None] = lambda: None
        self._per_variant: Callable[[], dict[str, tuple[float, float, int]]] = dict
        self._scheduler_running: Callable[[], bool] = lambda: False

        self.passes = r.counter(
            "sigil_passes_total", "Scanner passes by job and outcome.", ("job", "outcome")
        )
        self.pass_duration = r.histogram(
            "sigil_pass_duration_seconds", "Wall-clock duration of completed passes.", ("job",)
        )
        self.last_pass = r.gauge(
            "sigil_last_pass_completed_timestamp_seconds",
            "Unix time of the last completed pass, by job.",
            ("job",),
        )
        self.candles = r.counter("sigil_candles_fetched_total", "Closed candles fetched from the exchange.")
        self.symbols = r.gauge("sigil_universe_symbols", "Symbols in the scanned universe.")
        self.signals = r.counter(
            "sigil_signals_total", "Breakout signals that passed the guard.", ("variant",)
        )
        self.opens = r.counter("sigil_opens_total", "Positions opened.", ("variant",))
        self.closes = r.counter(
            "sigil_closes_total", "Positions closed, by exit reason.", ("variant", "reason")
        )
        self.skips = r.counter("sigil_skips_total", "Breakouts not traded, by reason.", ("variant", "reason"))
        self.exchange_errors = r.counter(
            "sigil_exchange_errors_total", "Exchange calls that failed, by error type.", ("type",)
        )
        self.job_events = r.counter(
            "sigil_scheduler_events_total",
            "Scheduler events: job errors, missed runs, max-instances refusals.",
            ("job", "event"),
        )
        self.loop_errors = r.counter(
            "sigil_loop_errors_total",
            "Exceptions that reached the event loop (e.g. a failed scheduler wake-up).",
        )
        self.rearms = r.counter(
            "sigil_watchdog_rearms_total", "Times the watchdog re-armed a stalled scheduler."
        )
        self.notifications = r.counter(
            "sigil_notifications_total",
            "Notifications per URL by event and outcome: sent, failed (after every retry), dropped "
            "(queue full, or left at the stop).",
            ("event", "outcome"),
        )
        r.gauge(
            "sigil_heartbeat_age_seconds",
            "Seconds since the last heartbeat this daemon wrote (absent before the first).",
            fn=self._age_sample,
        )
        r.gauge(
            "sigil_scheduler_running",
            "1 when the scheduler is running.",
            fn=lambda: {(): 1.0 if self._scheduler_running() else 0.0},
        )
        r.gauge("sigil_balance_usdt", "Paper balance per variant.", ("variant",), fn=lambda: self._variant(0))
        r.gauge(
            "sigil_equity_usdt",
            "Balance plus open positions at their last price.",
            ("variant",),
            fn=lambda: self._variant(1),
        )
        r.gauge(
            "sigil_open_positions", "Open positions per variant.", ("variant",), fn=lambda: self._variant(2)
        )

    def bind(
        self,
        heartbeat_age: Callable[[], float | None],
        per_variant: Callable[[], dict[str, tuple[float, float, int]]],
        scheduler_running: Callable[[], bool],
    ) -> None:
        """Connects the scrape-time gauges to the running daemon."""
        self._heartbeat_age = heartbeat_age
        self._per_variant = per_variant
        self._scheduler_running = scheduler_running

    def _age_sample(self) -> dict[LabelValues, float]:
        age = self._heartbeat_age()
        return {} if age is None else {(): age}

    def _variant(self, i: int) -> dict[LabelValues, float]:
        return {(name,): float(v[i]) for name, v in self._per_variant().items()}

    def render(self) -> str:
        """The Prometheus scrape."""
        return self.registry.render()
