"""The ``sigil`` command line. One module per command; each adds its parser and runs it.

Exit codes: 0 success, 2 bad input (one line on stderr naming the problem); commands may define
others (``sigil probe``: 1 stale).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from sigil.errors import SigilError

#: Command modules under ``sigil.cli``, in help order. Each has ``add_parser(subparsers)``.
COMMANDS = ("replay", "migrate", "status", "exchange_sim", "daemon", "probe", "report")

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="sigil", description="Sigil: breakout-scanning paper-trading daemon."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sigil.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sigil`` console script."""
    # Sigil does no BLAS work; OpenBLAS's idle threads spin after every numpy call and take a core
    # from the engine on small machines. Set before numpy is first imported by a command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except (SigilError, ValueError, OSError) as e:
        print(f"sigil {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
