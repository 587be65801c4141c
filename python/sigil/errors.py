"""Exceptions a caller can handle, one per kind of failure."""

from __future__ import annotations


class SigilError(Exception):
    """Base class of Sigil's own errors."""


class ConfigError(SigilError, ValueError):
    """A config file or value is wrong; the message names the file and the field."""


class DataError(SigilError, ValueError):
    """A candle file is missing or malformed; the message names the file and the row."""
