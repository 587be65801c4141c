"""Helpers the test suites share (none of them is a test): import them as ``tests.support.<module>``.

- ``data``: where the candle files are (bundled, ``../shared/data``), candles as ccxt rows.
- ``pg``: a throw-away PostgreSQL server per session, a fresh database per test; ``sigil`` as a subprocess.
- ``sim_process``: ``sigil exchange-sim`` as a subprocess, its simulated clock.
- ``exchange``: exchange-client settings for tests, a plain ccxt binance pointed at a simulator.
- ``daemon_stack``: the daemon's end-to-end building blocks and the book's invariants.
- ``invariants``: the invariants after any fault, named (the SQL book, no half-written row, live orders
  booked once, the book against ``sigil replay``'s).
- ``store_workers``, ``store_books``: open/close requests (also a script, run as its own process) and the
  store's book invariants.
- ``live_session``: a live-mode session run as its own process by the key-hygiene test.
"""
