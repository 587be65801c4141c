"""Exceptions a caller can handle, one per kind of failure."""

from __future__ import annotations


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


class DaemonNotRunning(SigilError):
    """A scheduled job fired in a process where no daemon is installed (or a second one was started)."""
