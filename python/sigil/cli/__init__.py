"""The ``sigil`` command line. One module per command; each adds its parser and runs it. ``args`` and
``database`` hold what several commands share (argument types; the database arguments and session).

Exit codes, one meaning each on every command (:mod:`sigil.errors` maps an error to its code): 0
success, 1 a database or the exchange cannot be reached (retryable), 2 bad input, 3 the daemon's
scheduler stalled, 4 the daemon's instance is held elsewhere; every failure prints one line on stderr
naming the problem. ``sigil probe`` keeps its own: 0 fresh, 1 stale, 2 cannot tell. A command whose
stdout's reader left (``| head``) ends with 141, silent, as one killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from sigil.errors import SigilError, exit_status

#: Exit status when stdout's reader left early: what a shell shows for a command killed by SIGPIPE.
EXIT_READER_GONE = 141

#: Commands in help order: name → (module under ``sigil.cli`` with ``add_parser(subparsers)``, one-line help).
#: Only the module of the command being run is imported, so ``sigil probe`` does not load ccxt or numpy.
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("replay", "replay candle files through the variants"),
    "check": ("check", "verify a replay: no look-ahead (lookahead), enough warm-up (warmup)"),
    "download": ("download", "download candle history from the exchange into freqtrade-format files"),
    "migrate": ("migrate", "create or update the database schema (idempotent)"),
    "status": ("status", "open positions, cooldowns, balances and the last heartbeat"),
    "exchange-sim": ("exchange_sim", "serve candle files as a Binance-compatible exchange on 127.0.0.1"),
    "daemon": ("daemon", "trade the variants on a schedule, on paper unless --live (SIGTERM: clean stop)"),
    "probe": ("probe", "exit 0 when the scanner heartbeat is fresh, 1 when stale, 2 when it cannot tell"),
    "report": ("report", "the variant table (and equity curves) of what the daemon traded"),
    "doctor": ("doctor", "check config, database, exchange, keys, ports and heartbeats; exit 1 if one fails"),
    "optimize": ("optimize", "search postures on Optuna with walk-forward validation"),
    "pause": (
        "pause",
        "stop new opens (exits go on) until `sigil resume`, on every daemon of the database",
    ),
    "resume": ("resume", "lift the pauses of `sigil pause`"),
    "exit": ("exit", "sell one open position at the market at the next pass (exit reason manual)"),
    "ack-drift": ("ack_drift", "acknowledge a live balance drift so opens resume"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. ``command`` gets its full parser (every command when None), the rest a stub."""
    parser = argparse.ArgumentParser(
        prog="sigil", description="Sigil: breakout-scanning trading daemon (paper unless --live)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_line) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"sigil.cli.{module}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sigil`` console script."""
    try:
        try:
            return _run(argv)
        finally:
            # Flushed here, not at interpreter exit, so that a reader gone early is seen below.
            sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()


def _run(argv: Sequence[str] | None) -> int:
    # Sigil does no BLAS work; OpenBLAS's idle threads spin after every numpy call and take a core
    # from the engine on small machines. Set before numpy is first imported by a command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # The CLI uses no pydantic plugins; looking them up scans every installed package's entry points.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(words)
    try:
        code = args.run(args)
    except BrokenPipeError:
        raise
    except (SigilError, ValueError, OSError) as e:
        print(f"sigil {args.command}: error: {e}", file=sys.stderr)
        return exit_status(e)
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


def _reader_gone() -> int:
    """``sigil replay | head``: the reader of stdout left. End as a command killed by SIGPIPE does
    (status 128 + 13, nothing printed); what is still buffered goes to /dev/null, so the interpreter's
    last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_READER_GONE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
