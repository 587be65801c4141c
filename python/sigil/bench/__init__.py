"""Sigil's benchmarks as they ship in the wheel: a user can measure the Sigil they installed.

``python -m sigil.bench`` runs the Python-facing ATR benchmarks (:mod:`sigil.bench.atr`:
``sigil.atr``, ``sigil.atr_many`` and ``Atr.update`` against TA-Lib, kand and talipp, measured in the
same run) against whichever ``sigil`` the interpreter imports: an installed wheel, or a checkout's
development build. The decision: the benchmarks are pytest-benchmark tests inside the package, run by
this entry point through ``pytest --pyargs sigil.bench.atr -p sigil.bench.plugin``, so the checkout's
``make bench`` (``tests/benchmarks`` collects the same functions) and a user's check of a wheel measure
the same code the same way. They need the references and the runner, which the wheel does not pull in
by itself::

    pip install 'sigil-trader[bench]'         # pytest, pytest-benchmark, ta-lib, kand, talipp
    python -m sigil.bench                     # seeded synthetic candles, no files needed
    python -m sigil.bench --data DIR          # the candle files in DIR (freqtrade feather/json, csv)
    python -m sigil.bench --no-timing         # each benchmark once, timing off: does it all run?
    python -m sigil.bench -- --benchmark-save=mine   # anything after -- goes to pytest

The table at the end prints ``sigil / reference`` ratios (below 1: Sigil is faster) and the run's
ratios file (:mod:`sigil.bench.ratios`, ``.benchmarks/ratios.json`` under the current folder unless
``--ratios PATH``), which :mod:`sigil.bench.gate` compares with a saved baseline.

What stays in the repository's ``tests/benchmarks``: the replay against the pure-Python reference
(the reference is a test oracle), and the daemon, exchange and store benchmarks (they need the
exchange simulator process and an embedded PostgreSQL from the test fixtures).

Modules: :mod:`sigil.bench.plugin` (pytest plugin: timings, ratios, the ratios file),
:mod:`sigil.bench.candles` (the candles), :mod:`sigil.bench.atr` (the benchmarks),
:mod:`sigil.bench.ratios` (the file), :mod:`sigil.bench.gate` (the baseline comparison).
"""
