"""The process-level handle through which scheduled jobs reach the running daemon.

A persistent job store pickles jobs, so a job may carry only a function reference and plain
arguments. The function looks up the daemon of this process here; pools, the engine and the exchange
client never go near pickle.
"""

from __future__ import annotations

from typing import Protocol

from sigil.errors import DaemonNotRunning


class JobTarget(Protocol):
    """What a scheduled job calls: the daemon's pass runner."""

    async def run_job(self, name: str) -> None:
        """Runs the pass called ``name`` to completion (or raises)."""

    def job_timeout(self, name: str) -> float:
        """Upper bound of one run of ``name``, in seconds."""


_current: JobTarget | None = None


def install(target: JobTarget) -> None:
    """Makes ``target`` the daemon of this process. One at a time."""
    global _current
    if _current is not None and _current is not target:
        raise DaemonNotRunning("another daemon is already installed in this process")
    _current = target


def uninstall(target: JobTarget) -> None:
    """Removes ``target`` (no-op when another one is installed)."""
    global _current
    if _current is target:
        _current = None


def current() -> JobTarget:
    """The daemon of this process; :class:`~sigil.errors.DaemonNotRunning` when there is none.

    A job that fires with no daemon installed (a stale row run by some other process) fails loudly
    rather than doing anything.
    """
    if _current is None:
        raise DaemonNotRunning("no daemon is running in this process")
    return _current
