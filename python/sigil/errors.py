"""Exceptions a caller can handle, one per kind of failure, and the exit status each kind means.

Every ``sigil`` command exits with one of these statuses, one meaning each (``sigil probe`` keeps its
own 0 fresh / 1 stale / 2 cannot tell, see :mod:`sigil.daemon.heartbeat`):

====  ==================================================================================
0     success
1     a database or the exchange cannot be reached (retryable: try again later)
2     bad input: a file, a config key or value, a URL, a schema not migrated (retrying is no use)
3     the daemon's scheduler stalled and could not be re-armed (a supervisor restarts it)
4     the daemon's instance is held by another process
====  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2
EXIT_STALLED = 3
EXIT_INSTANCE_HELD = 4


class SigilError(Exception):
    """Base class of Sigil's own errors."""


class ConfigError(SigilError, ValueError):
    """A config file or value is wrong; the message names the file and the field."""


class DataError(SigilError, ValueError):
    """A candle file is missing or malformed; the message names the file and the row."""


class DatabaseUnavailable(SigilError):
    """The database cannot be reached, or the connection was lost during an operation.

    Retry later. When the connection drops during a commit, the outcome of that commit is unknown:
    read the state back (for instance ``PositionStore.open_positions``) before acting on it again.
    """


class MigrationError(SigilError):
    """The schema cannot be brought up to date: an applied migration file has changed, the database
    holds a migration this version does not know, or a migration failed (and was rolled back)."""


class SchemaNotReady(MigrationError):
    """The database schema is not at this version's level; run ``sigil migrate``."""


class UnknownVariant(SigilError, ValueError):
    """A variant name that is not configured (or has no account in the database)."""


class InvalidOrder(SigilError, ValueError):
    """An open or close request carries an invalid value; the message names the field. Nothing is written."""


class PositionNotOpen(SigilError):
    """A close, or a trail update, names a position that is not open (unknown, or already closed)."""


class ExchangeUnavailable(SigilError):
    """The exchange could not be reached: a network error, a timeout, a 5xx, or rate limiting (429/418)
    that outlasted every retry, or a Retry-After too long to wait for. Try again later.

    ``retry_after_s`` is the wait the exchange asked for, when it said.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ExchangeRejected(SigilError):
    """The exchange answered with an error that retrying will not fix (an unknown symbol, a bad
    parameter, a refused order, an authentication failure)."""


class LiveKeysMissing(SigilError, ValueError):
    """Live trading was switched on but the API key or secret is not in the environment."""


class OrderRefused(SigilError):
    """A broker refused an order before sending it; ``reason`` says why (``balance``, ``position``…)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class OrderOutcomeUnknown(SigilError):
    """An order was sent but its answer was lost, and looking it up by its client id could not tell
    whether it executed. ``client_order_id`` names it at the exchange; a person must look."""

    def __init__(self, message: str, client_order_id: str) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id


class InstanceHeld(SigilError):
    """Another process holds this daemon instance; ``holder`` says which (host, pid, since), when known."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class DaemonNotRunning(SigilError):
    """A scheduled job fired in a process where no daemon is installed (or a second one was started)."""


#: Errors that mean "cannot reach it now": a database or the exchange, or a socket that failed.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    ExchangeUnavailable,
    ConnectionError,
    TimeoutError,
)


def exit_status(error: BaseException) -> int:
    """The exit status of a command that ended with ``error`` (see the module docstring): 1 when
    something could not be reached, 4 when the instance is held elsewhere, else 2 (bad input)."""
    if isinstance(error, InstanceHeld):
        return EXIT_INSTANCE_HELD
    if isinstance(error, _UNREACHABLE):
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


def unknown_variant(name: str, known: Iterable[str]) -> ConfigError:
    """The error for a variant name the configuration does not have (one wording for every lookup:
    the validated config's and its digest's)."""
    return ConfigError(f"unknown variant {name!r} (known: {', '.join(known)})")
