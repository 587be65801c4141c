"""Sending notices through apprise without ever holding a pass up.

Each URL gets its own bounded queue and worker thread, so a receiver that is down or never answers
delays nobody but itself: :meth:`NotificationSender.send` only puts the notice on the queues (a full
queue drops it, counted) and returns at once. A worker sends with apprise (which speaks Telegram,
Discord, Slack, ntfy, e-mail, a plain JSON webhook…), retries a failed send ``notify.retries`` times
with doubling waits from ``notify.backoff_s``, and counts each notice as sent or failed. At a stop the
queues get ``notify.flush_s`` to empty; what is left then is counted as dropped.

The URLs hold tokens: they are never logged or shown. A destination is named by its scheme and its
place in the list (``json #2``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sigil.config import NotifyConfig
from sigil.daemon.metrics import DaemonMetrics
from sigil.errors import ConfigError
from sigil.notify.events import EVENT_NAMES, Notice, PositionClosed
from sigil.notify.summary import Book, DailySummaries

log = logging.getLogger(__name__)

#: The longest wait between two attempts, whatever the back-off has grown to.
MAX_BACKOFF_S = 60.0
OUTCOMES = ("sent", "failed", "dropped")


def service_of(url: str) -> str:
    """The scheme of an apprise URL (``json``, ``tgram``…): all that may be shown of it."""
    return url.partition("://")[0].lower() or "?"


class _Destination:
    """One URL: its apprise object, its queue and its worker thread."""

    def __init__(self, index: int, url: str, queue_size: int) -> None:
        self.label = f"{service_of(url)} #{index + 1}"
        with warnings.catch_warnings():
            # apprise's plugins import the deprecated imghdr: not ours to fix, and noise in every log.
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise

            self.apprise = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
            accepted = self.apprise.add(url)
        if not accepted:
            raise ConfigError(
                f"notify URL {self.label}: apprise does not accept it (check its scheme and form)"
            )
        self.queue: queue.Queue[Notice] = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None
        self.drops_logged = 0


class NotificationSender:
    """Queues notices for every URL and sends them from worker threads (see the module docstring).

    ``send`` is safe from any thread and never blocks. The daily summaries are counted here too:
    every close passes through :meth:`send`, whether or not ``close`` notices are wanted.
    """

    def __init__(
        self, urls: Sequence[str], settings: NotifyConfig, metrics: DaemonMetrics | None = None
    ) -> None:
        self.settings = settings
        self.events = frozenset(settings.events)
        self._destinations = [_Destination(i, u, settings.queue_size) for i, u in enumerate(urls)]
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        for event in EVENT_NAMES:
            for outcome in OUTCOMES:
                self._counts[(event, outcome)] = 0
                if metrics is not None:
                    # Every series exists from the start: the scrape never sees the table change size.
                    metrics.notifications.inc(event, outcome, by=0)
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self.summaries = DailySummaries()

    @property
    def enabled(self) -> bool:
        """True when there is at least one URL."""
        return bool(self._destinations)

    def start(self) -> None:
        """Starts one worker per URL (daemon threads: a stuck send never keeps the process alive)."""
        for d in self._destinations:
            if d.thread is None:
                d.thread = threading.Thread(
                    target=self._work, args=(d,), name=f"sigil-notify-{d.label}", daemon=True
                )
                d.thread.start()

    # -- the producers' side -------------------------------------------------------------------------

    def send(self, notice: Notice) -> None:
        """Queues ``notice`` for every URL when its event is wanted; never blocks, never raises."""
        if isinstance(notice, PositionClosed):
            self.summaries.closed(notice.variant_name, notice.at_ms, notice.pnl)
        if notice.event.value not in self.events:
            return
        for d in self._destinations:
            try:
                d.queue.put_nowait(notice)
            except queue.Full:
                self._count(notice, "dropped")
                if d.drops_logged % 100 == 0:
                    log.warning(
                        "notifications to %s: queue full (%d), dropping %r",
                        d.label,
                        self.settings.queue_size,
                        notice.title(),
                    )
                d.drops_logged += 1

    def pass_completed(
        self, market_ms: int | None, variants: Sequence[str], books: Mapping[str, Book]
    ) -> None:
        """A breakout pass completed: sends the summaries of the market days that have ended."""
        for summary in self.summaries.passed(market_ms, variants, books):
            self.send(summary)

    # -- the workers' side ---------------------------------------------------------------------------

    def _count(self, notice: Notice, outcome: str) -> None:
        key = (notice.event.value, outcome)
        with self._lock:
            self._counts[key] += 1
            if self._metrics is not None:
                self._metrics.notifications.inc(*key)

    def _work(self, d: _Destination) -> None:
        while True:
            try:
                notice = d.queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if self._abandon.is_set():
                self._count(notice, "dropped")
                continue
            self._count(notice, "sent" if self._deliver(d, notice) else "failed")

    def _deliver(self, d: _Destination, notice: Notice) -> bool:
        attempts = 1 + self.settings.retries
        wait = self.settings.backoff_s
        for attempt in range(1, attempts + 1):
            try:
                if d.apprise.notify(body=notice.body(), title=notice.title(), notify_type=notice.level()):
                    return True
                why = "apprise reported a failure"
            except Exception as e:  # a plugin's bug must not end the worker
                why = f"{type(e).__name__}: {e}"
            if attempt == attempts or self._abandon.wait(min(wait, MAX_BACKOFF_S)):
                log.warning(
                    "notification %r to %s failed after %d attempt(s): %s",
                    notice.title(),
                    d.label,
                    attempt,
                    why,
                )
                return False
            wait *= 2
        return False

    # -- stopping and reporting ----------------------------------------------------------------------

    def close(self, timeout_s: float | None = None) -> None:
        """Lets the queues empty for at most ``timeout_s`` (default ``notify.flush_s``), then gives up
        on what is left (counted as dropped)."""
        deadline = time.monotonic() + (self.settings.flush_s if timeout_s is None else timeout_s)
        self._closing.set()
        for d in self._destinations:
            if d.thread is not None:
                d.thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()
        for d in self._destinations:
            while True:
                try:
                    self._count(d.queue.get_nowait(), "dropped")
                except queue.Empty:
                    break

    def counts(self) -> dict[str, int]:
        """Notices sent, failed and dropped so far (per URL each), summed over the events."""
        with self._lock:
            return {o: sum(n for (_, out), n in self._counts.items() if out == o) for o in OUTCOMES}

    def health(self) -> dict[str, Any]:
        """What ``/health`` shows: the services (schemes only, never a URL), the counts, what is queued."""
        return {
            "services": [d.label for d in self._destinations],
            "events": sorted(self.events),
            "queued": sum(d.queue.qsize() for d in self._destinations),
            **self.counts(),
        }


def sender_for(
    urls: Iterable[str], settings: NotifyConfig, metrics: DaemonMetrics | None = None
) -> NotificationSender:
    """A started sender for ``urls`` (ConfigError naming a URL apprise refuses, by its place only)."""
    sender = NotificationSender(list(urls), settings, metrics)
    sender.start()
    return sender
