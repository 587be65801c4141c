"""Notice texts, the notify and logging settings, the daily summaries, and the redaction of tokens
in both log formats."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sigil.config import NotifyConfig, api_token, apply_overrides, load_config, notify_urls
from sigil.errors import ConfigError
from sigil.exchange.redaction import url_secrets
from sigil.notify.events import (
    DEFAULT_EVENTS,
    EVENT_NAMES,
    DailySummary,
    HeartbeatStale,
    OrderFailed,
    PositionClosed,
    PositionOpened,
)
from sigil.notify.summary import DAY_MS, MAX_DAYS, Book, DailySummaries
from sigil.ops.logs import configure_logging, secrets_of

DAY = 1_718_755_200_000  # 2024-06-19 00:00 UTC


def test_titles_start_with_the_event_then_variant_and_symbol() -> None:
    o = PositionOpened("baseline", "TST/USDT", 3, 1.25, 80.0, 100.0, 0.03, 1.2125, DAY)
    c = PositionClosed("moderate", "NFP/USDT", 4, 1.5, "hard_stop", -3.5, DAY)
    assert o.title() == "open baseline TST/USDT" and c.title() == "close moderate NFP/USDT"
    assert HeartbeatStale("main", 400, 300).title() == "stale"
    assert DailySummary("unhinged", "2024-06-19", 2, 1.0, 1001.0, 1001.0, 0).title() == "summary unhinged"
    assert OrderFailed("aggressive", "X/USDT", "sell", "boom").title() == "order_failed aggressive X/USDT"
    assert "pnl: -3.5000" in c.body() and "reason: hard_stop" in c.body()
    assert (o.level(), c.level()) == ("info", "warning")


def test_notify_settings_are_validated_and_the_environment_wins() -> None:
    assert "fill" not in DEFAULT_EVENTS and set(DEFAULT_EVENTS) < set(EVENT_NAMES)
    cfg = load_config()
    assert cfg.settings.notify.events == list(DEFAULT_EVENTS) and cfg.settings.logging.format == "text"
    with pytest.raises(ConfigError, match=r"notify\.events: unknown event 'opened'"):
        apply_overrides(cfg, ["notify.events=[open, opened]"])
    with pytest.raises(ConfigError, match=r"logging\.format"):
        apply_overrides(cfg, ["logging.format=xml"])
    with pytest.raises(ConfigError, match=r"notify\.urls: entry 1 is not an apprise URL") as e:
        apply_overrides(cfg, ["notify.urls=[secret-without-scheme]"])
    assert "secret-without-scheme" not in str(e.value)
    settings = NotifyConfig(urls=["json://a.example/x"])
    assert notify_urls(settings, {}) == ["json://a.example/x"]
    env = {"SIGIL_NOTIFY_URLS": " json://h/1, tgram://t0k/2  ntfy://x "}
    assert notify_urls(settings, env) == ["json://h/1", "tgram://t0k/2", "ntfy://x"]
    with pytest.raises(ConfigError, match="SIGIL_NOTIFY_URLS: entry 2") as e:
        notify_urls(settings, {"SIGIL_NOTIFY_URLS": "json://h/1 token-only"})
    assert "token-only" not in str(e.value)
    assert api_token({"SIGIL_API_TOKEN": "  "}) is None and api_token({"SIGIL_API_TOKEN": "t"}) == "t"


def test_each_market_day_is_summarised_once_per_variant() -> None:
    s = DailySummaries()
    books = {"a": Book(1010.0, 1020.0, 1), "b": Book(990.0, 990.0, 0)}
    assert s.passed(DAY + 3_600_000, ["a", "b"], books) == []  # the first pass: nothing has ended
    s.closed("a", DAY + 5 * 3_600_000, 4.0)
    s.closed("a", DAY + 6 * 3_600_000, -1.5)
    s.closed("b", DAY + DAY_MS + 1, 2.0)  # the next day: not in the first summary
    assert s.passed(DAY + 20 * 3_600_000, ["a", "b"], books) == []
    out = s.passed(DAY + DAY_MS + 3_600_000, ["a", "b"], books)
    assert [(x.variant_name, x.day, x.closes, x.pnl, x.balance) for x in out] == [
        ("a", "2024-06-19", 2, 2.5, 1010.0),
        ("b", "2024-06-19", 0, 0.0, 990.0),
    ]
    assert s.passed(DAY + DAY_MS + 7_200_000, ["a", "b"], books) == []
    later = s.passed(DAY + 100 * DAY_MS, ["a"], books)
    assert len(later) == MAX_DAYS, "a long gap: only the latest days"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tokens_and_keys_are_redacted_in_both_formats(fmt: str) -> None:
    url = "tgram://123456789:AAHsecretBotToken42/987654321"
    stream = io.StringIO()
    handler = configure_logging(fmt, logging.INFO, secrets_of(["api-key-1234567"], [url]), stream)
    try:
        log = logging.getLogger("sigil.test.redaction")
        log.info("sending to %s with api-key-1234567", url, extra={"variant": "baseline", "target": url})
        log.warning("token AAHsecretBotToken42 alone")
        try:
            raise RuntimeError(f"connect failed: {url}")
        except RuntimeError:
            log.exception("send failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "AAHsecretBotToken42" not in text and "api-key-1234567" not in text
    assert text.count("**********") >= 4
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR"]
        assert records[0]["variant"] == "baseline" and "exc_info" in records[2]
        assert {"time", "logger", "message"} <= records[0].keys()


def test_url_secrets_keep_hosts_and_words() -> None:
    got = url_secrets("json://127.0.0.1:8080/hook/s3cr3t-T0KEN-value?rto=3")
    assert "s3cr3t-T0KEN-value" in got and "127.0.0.1" not in got and "hook" not in got
    assert "hooks.slack.com" not in url_secrets("json://hooks.slack.com/services/abcdefgh12345")
