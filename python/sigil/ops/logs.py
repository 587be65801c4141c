"""How the daemon logs on stderr: words for a person (the default), or one JSON object per line for a
log collector (``--log-format json`` / ``logging.format: json``).

A JSON line holds ``time`` (ISO 8601 UTC), ``level``, ``logger`` and ``message``, plus the context
fields a line carries (``variant``, ``symbol``, ``position_id``, ``pass``: the ``extra=`` of the log
call; the text format says the same in its words). In both formats one filter on the handler
replaces every secret — the exchange's API key pair and the notification URLs with their tokens —
before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Literal, TextIO

from sigil.exchange.redaction import Redactor, url_secrets

LogFormat = Literal["text", "json"]
#: The text format (unchanged since the first release: tests and people read it).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The context fields a log call may pass as ``extra=``.
CONTEXT_FIELDS = ("variant", "symbol", "position_id", "pass")


def secrets_of(api_keys: Iterable[str | None], notify_urls: Iterable[str]) -> list[str]:
    """Every string to redact: the API key pair's values, and each notification URL with its tokens."""
    out = [k for k in api_keys if k]
    for url in notify_urls:
        out.extend(url_secrets(url))
    return out


def json_formatter() -> logging.Formatter:
    """python-json-logger's formatter with Sigil's key names (time, level, logger, message)."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(
    fmt: LogFormat, level: int, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Replaces the root logger's handlers with one on ``stream`` (stderr) in ``fmt``, redacting
    ``secrets``; returns the handler. Warnings go through logging too, so JSON lines stay JSON."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(Redactor(secrets))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    return handler
