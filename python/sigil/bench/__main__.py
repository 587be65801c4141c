"""``python -m sigil.bench``: the shipped benchmarks against the ``sigil`` this interpreter imports.

See :mod:`sigil.bench` for the options. Exit status: pytest's (0 all benchmarks ran and their
results agreed with the references), 2 when an option is wrong or a needed package is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

#: Import name -> what to install, for the packages the benchmarks need besides Sigil.
NEEDS = {
    "pytest": "pytest",
    "pytest_benchmark": "pytest-benchmark",
    "talib": "ta-lib",
    "kand": "kand",
    "talipp": "talipp",
}
PROG = "python -m sigil.bench"


def pytest_args(data: Sequence[Path], timing: bool, ratios: Path, extra: Sequence[str]) -> list[str]:
    """The pytest command line that runs :mod:`sigil.bench.atr` with the plugin."""
    # pytest-asyncio (when installed) warns outside a configured project; nothing here is async.
    args = [
        "-p",
        "sigil.bench.plugin",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",
        "--rootdir",
        str(Path.cwd()),
    ]
    args += ["--pyargs", "sigil.bench.atr", "-q", "--sigil-ratios", str(ratios)]
    args += [f"--sigil-data={p}" for p in data]
    args += (
        ["--benchmark-only", "--benchmark-columns=min,median,mean,rounds"]
        if timing
        else ["--benchmark-disable"]
    )
    return [*args, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the options, checks the needed packages, runs pytest; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        prog=PROG, description="Sigil's ATR benchmarks against TA-Lib, kand, talipp."
    )
    parser.add_argument("--data", type=Path, action="append", default=[], help="candle files or folders")
    parser.add_argument("--no-timing", action="store_true", help="run each benchmark once, timing off")
    parser.add_argument(
        "--ratios", type=Path, default=Path(".benchmarks") / "ratios.json", help="where the ratios file goes"
    )
    args = parser.parse_args(argv)
    for path in args.data:
        if not path.exists():
            print(f"{PROG}: error: --data {path}: no such file or folder", file=sys.stderr)
            return 2
    missing = [pkg for name, pkg in NEEDS.items() if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"{PROG}: error: missing {', '.join(missing)} (pip install 'sigil-trader[bench]')",
            file=sys.stderr,
        )
        return 2
    import pytest

    import sigil
    from sigil.bench.ratios import sigil_info

    info = sigil_info()
    where = ", ".join(map(str, args.data)) or "synthetic candles (seeded)"
    print(f"sigil {info['version']} from {Path(sigil.__file__).resolve().parent}; candles: {where}")
    return int(pytest.main(pytest_args(args.data, not args.no_timing, args.ratios, extra)))


if __name__ == "__main__":
    sys.exit(main())
