"""The parts of the daemon that need no database: watchdog policy, loop guard, sd_notify, metrics text."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from sigil.daemon.metrics import DaemonMetrics, Registry, escape_label, format_value
from sigil.daemon.systemd import SystemdNotifier
from sigil.daemon.watchdog import EXIT_STALLED, LoopGuard, Verdict, Watchdog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, interval: float = 10.0) -> tuple[Watchdog, list[str], list[str]]:
    rearms: list[str] = []
    fatal: list[str] = []
    wd = Watchdog(
        {"breakout": interval}, rearm=lambda: rearms.append("x"), on_fatal=fatal.append, clock=clock
    )
    return wd, rearms, fatal


def test_watchdog_quiet_while_passes_complete() -> None:
    clock = Clock()
    wd, rearms, fatal = make(clock)
    for _ in range(10):
        clock.t += 15
        wd.completed("breakout")
        assert wd.step() is Verdict.OK
    assert not rearms and not fatal


def test_watchdog_rearms_after_two_intervals_then_recovers() -> None:
    clock = Clock()
    wd, rearms, fatal = make(clock)
    clock.t += 20
    assert wd.step() is Verdict.OK, "exactly two intervals is not yet a stall"
    clock.t += 0.1
    assert wd.step() is Verdict.REARM
    assert rearms == ["x"]
    clock.t += 1
    assert wd.step() is Verdict.OK, "one re-arm per stall"
    wd.completed("breakout")  # the re-arm's own kick
    clock.t += 10
    wd.completed("breakout")  # the scheduler's own timer: recovered
    clock.t += 20.5
    assert wd.step() is Verdict.REARM, "a later, separate stall is re-armed again"
    assert len(rearms) == 2 and not fatal


def test_watchdog_fatal_when_rearm_brings_nothing() -> None:
    clock = Clock()
    wd, _, fatal = make(clock)
    clock.t += 21
    assert wd.step() is Verdict.REARM
    clock.t += 9
    assert wd.step() is Verdict.OK
    clock.t += 2
    assert wd.step() is Verdict.FATAL
    assert wd.step() is Verdict.FATAL
    assert len(fatal) == 1 and "re-arming" in fatal[0]


def test_watchdog_fatal_when_stalled_again_before_recovering() -> None:
    clock = Clock()
    wd, _, fatal = make(clock)
    clock.t += 21
    assert wd.step() is Verdict.REARM
    wd.completed("breakout")  # one pass from the kick, then silence again
    clock.t += 21
    assert wd.step() is Verdict.FATAL
    assert fatal


def test_watchdog_rearm_that_raises_counts_as_failed() -> None:
    clock = Clock()
    fatal: list[str] = []

    def broken() -> None:
        raise ConnectionError("job store down")

    wd = Watchdog({"breakout": 1.0}, rearm=broken, on_fatal=fatal.append, clock=clock)
    clock.t += 2.5
    assert wd.step() is Verdict.REARM
    clock.t += 1.5
    assert wd.step() is Verdict.FATAL


def test_loop_guard_exits_when_loop_stops_turning() -> None:
    codes: list[int] = []
    guard = LoopGuard(0.2, exit_fn=codes.append)
    guard.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        guard.tick()
        time.sleep(0.02)
    assert not codes, "a turning loop is left alone"
    time.sleep(0.6)
    assert codes == [EXIT_STALLED]
    guard.stop()


def test_sd_notify_over_a_real_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("first pass")
    assert server.recv(256) == b"READY=1\nSTATUS=first pass"
    assert n.watchdog()
    assert server.recv(256) == b"WATCHDOG=1"
    assert n.stopping()
    assert server.recv(256) == b"STOPPING=1"
    server.close()
    assert not n.watchdog(), "a vanished supervisor is not an error"
    n.close()


def test_sd_notify_abstract_socket() -> None:
    name = f"sigil-test-{time.monotonic_ns()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    n = SystemdNotifier("@" + name)
    assert n.watchdog()
    assert server.recv(64) == b"WATCHDOG=1"
    server.close()
    n.close()


def test_sd_notify_off_without_socket() -> None:
    n = SystemdNotifier.from_env({})
    assert not n.enabled
    assert not n.ready()


def test_metrics_text_format() -> None:
    r = Registry()
    c = r.counter("x_total", "Things.", ("kind",))
    c.inc("a")
    c.inc('we"ird\\\n', by=2)
    h = r.histogram("d_seconds", "Durations.", ("job",), buckets=(0.1, 1.0))
    h.observe(0.05, "j")
    h.observe(0.5, "j")
    r.gauge("g", "A gauge.", fn=lambda: {(): 1.5})
    text = r.render()
    assert text.endswith("\n")
    assert "# TYPE x_total counter" in text
    assert 'x_total{kind="a"} 1' in text
    assert 'x_total{kind="we\\"ird\\\\\\n"} 2' in text
    assert 'd_seconds_bucket{job="j",le="0.1"} 1' in text
    assert 'd_seconds_bucket{job="j",le="1"} 2' in text
    assert 'd_seconds_bucket{job="j",le="+Inf"} 2' in text
    assert 'd_seconds_sum{job="j"} 0.55' in text
    assert 'd_seconds_count{job="j"} 2' in text
    assert "g 1.5" in text
    with pytest.raises(ValueError):
        c.inc("a", by=-1)
    with pytest.raises(ValueError):
        c.inc()
    with pytest.raises(ValueError):
        r.counter("x_total", "again")
    assert escape_label("a\nb") == "a\\nb"
    assert format_value(float("nan")) == "NaN" and format_value(3.0) == "3"


def test_daemon_metrics_families_are_all_exposed() -> None:
    m = DaemonMetrics()
    m.bind(lambda: 2.5, lambda: {"baseline": (1000.0, 1010.0, 2)}, lambda: True)
    m.closes.inc("baseline", "hard_stop")
    m.skips.inc("baseline", "cooldown")
    m.exchange_errors.inc("RateLimitExceeded")
    text = m.render()
    for name in (
        "sigil_passes_total",
        "sigil_pass_duration_seconds",
        "sigil_candles_fetched_total",
        "sigil_signals_total",
        "sigil_opens_total",
        "sigil_closes_total",
        "sigil_skips_total",
        "sigil_exchange_errors_total",
        "sigil_heartbeat_age_seconds",
        "sigil_balance_usdt",
        "sigil_equity_usdt",
        "sigil_open_positions",
    ):
        assert f"# TYPE {name} " in text, name
    assert "sigil_heartbeat_age_seconds 2.5" in text
    assert 'sigil_closes_total{variant="baseline",reason="hard_stop"} 1' in text
    assert 'sigil_equity_usdt{variant="baseline"} 1010' in text
    assert 'sigil_exchange_errors_total{type="RateLimitExceeded"} 1' in text


def test_watchdog_lets_a_slow_run_finish_within_its_timeout() -> None:
    clock = Clock()
    fatal: list[str] = []
    rearms: list[int] = []
    wd = Watchdog(
        {"breakout": 1.0}, rearm=lambda: rearms.append(1), on_fatal=fatal.append, clock=clock, timeout_s=10.0
    )
    wd.started("breakout")
    clock.t += 9.0
    assert wd.step() is Verdict.OK, "in flight within its timeout"
    wd.completed("breakout")
    wd.started("breakout")
    clock.t += 12.5
    assert wd.step() is Verdict.REARM, "in flight beyond timeout + one interval: the timeout did not work"
    clock.t += 1.5
    assert wd.step() is Verdict.FATAL
    assert fatal and rearms == [1]
