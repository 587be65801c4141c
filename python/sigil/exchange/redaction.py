"""Keeping secrets out of logs and health output: the API key pair, URL credentials, the tokens in
notification URLs."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

#: Attributes every log record has; any other is an ``extra=`` field (redacted when it is a string).
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: A piece of a notification URL shorter than this is a word, not a token (``hooks``, ``api``).
_TOKEN_MIN_LEN = 8
_DNS_NAME = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class Redactor(logging.Filter):
    """Replaces secret strings in log records (ccxt logs request headers, API key included): in the
    message, in string ``extra=`` fields, and in the traceback of a logged exception."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("")
        # Longest first: a secret that contains another is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

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
        if record.exc_info and not record.exc_text:
            # Formatted here, so that both the text and the JSON formatter print the cleaned text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text, record.exc_info = self.redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
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


def url_secrets(url: str) -> list[str]:
    """What to redact of a notification URL (apprise's ``scheme://…``, which holds tokens in its
    host, path or query): the URL itself, and each of its pieces that could be a token — at least
    8 characters long, and neither an IP address nor a DNS name (``hooks.slack.com`` stays)."""
    out = [url]
    rest = url.partition("://")[2]
    for piece in re.split(r"[/?&=#@,]+", rest):
        host = piece.rsplit(":", 1)[0] if re.search(r":\d+$", piece) else piece
        if len(piece) < _TOKEN_MIN_LEN or _is_address(host) or host.isdigit():
            continue
        out.append(piece)
        if ":" in piece:
            out.extend(p for p in piece.split(":") if len(p) >= _TOKEN_MIN_LEN)
    return out


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(_DNS_NAME.match(host)) or host.lower() == "localhost"
    return True
