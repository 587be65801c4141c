"""The chaos suite of ``make chaos``: scripted faults against real processes, the invariants after each,
and the figures docs/RELIABILITY.md is written from (tests/chaos/report.py)."""
