"""Keeping the exchange's secrets out of logs and health output: the API key pair and URL credentials."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit


class Redactor(logging.Filter):
    """Replaces secret strings in log records (ccxt logs request headers, API key included)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__("")
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by asterisks."""
        for s in self._secrets:
            text = text.replace(s, "**********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites ``record``'s message when it holds a secret; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

    def __repr__(self) -> str:
        return "<Redactor>"


def public_url(url: str | None) -> str | None:
    """``url`` without any user:password part, for logs and health output."""
    if url is None:
        return None
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))
