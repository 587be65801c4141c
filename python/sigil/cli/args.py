"""Argument types and checks shared by the commands: each turns one command-line word into a value or
says why not; :func:`check_outputs` checks output files before a command does any work."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sigil.times import to_ms


def add_replay_inputs(p: argparse.ArgumentParser, variant_help: str) -> None:
    """``--data PATH...``, ``--config DIR`` and ``--variant FILE`` (repeatable): what a replay reads."""
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="candle files or folders")
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument("--variant", action="append", default=[], metavar="FILE", help=variant_help)


def time_ms(raw: str) -> int:
    """ISO 8601 (UTC unless it says otherwise) or epoch milliseconds → epoch milliseconds."""
    if raw.isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {raw!r} (e.g. 2025-06-19 or 2025-06-19T00:00:00Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return to_ms(dt)


def positive_int(raw: str) -> int:
    """A whole number >= 1."""
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {raw!r}")
    return int(raw)


def seconds(raw: str) -> float:
    """A finite number of seconds > 0."""
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {raw}")
    return v


def database_url(raw: str) -> str:
    """A database URL given on the command line: never empty (an empty one would silently mean the
    embedded server)."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("empty: leave it out for the embedded server")
    return raw


def instance(raw: str) -> str:
    """A daemon instance name, by the rule of ``daemon.instance``."""
    from sigil.config import check_instance

    try:
        return check_instance(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def port(raw: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    if not raw.isdigit() or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {raw!r}")
    return int(raw)


#: Suffixes ``--plot`` accepts: the formats matplotlib writes that a reader opens without tools.
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: Suffixes ``--html`` accepts.
HTML_SUFFIXES = (".html", ".htm")


def check_outputs(outputs: Mapping[str, tuple[str | None, Sequence[str]]]) -> None:
    """Before any work: each output given (option → (path or None, allowed suffixes, empty for any))
    has an allowed suffix, is not a folder, lies in an existing folder, can be written there, and no
    two options name one file. Raises ValueError naming the option and the problem (one line)."""
    seen: dict[Path, str] = {}
    for option, (raw, suffixes) in outputs.items():
        if not raw:
            continue
        path = Path(raw)
        if suffixes and path.suffix.lower() not in suffixes:
            allowed = ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]
            raise ValueError(f"{option} {raw}: the file name must end in {allowed}")
        target = path.resolve()
        if target in seen:
            raise ValueError(f"{option} {raw}: the same file as {seen[target]}")
        seen[target] = option
        if not target.parent.is_dir():
            raise ValueError(f"{option} {raw}: the folder does not exist")
        if target.is_dir():
            raise ValueError(f"{option} {raw}: is a folder, not a file")
        _check_writable(option, raw, target)


def _check_writable(option: str, raw: str, target: Path) -> None:
    """Opens an existing file for writing without truncating it, or creates and removes a file of the
    same name: permission bits, read-only mounts and pseudo file systems (``/proc``) all show here,
    where ``os.access`` answers yes to root."""
    try:
        if target.exists():
            with target.open("r+b"):
                pass
        else:
            with target.open("xb"):
                pass
            target.unlink()
    except OSError as e:
        raise ValueError(f"{option} {raw}: cannot write there ({e.strerror or e})") from None
