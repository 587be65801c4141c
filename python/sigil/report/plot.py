"""Equity curves per variant and the exit-reason breakdown, as one PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sigil.report.metrics import EXIT_REASONS as _REASONS
from sigil.report.table import Row


def plot_equity(
    path: str | Path,
    times_ms: npt.NDArray[np.int64],
    equity: Mapping[str, npt.NDArray[np.float64]],
    metrics: Mapping[str, Row],
    title: str = "Sigil",
) -> None:
    """Writes equity curves (top) and exit P&L by reason (bottom) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=(3, 2))
    when = times_ms.astype("datetime64[ms]")
    for name, curve in equity.items():
        top.plot(when, curve, label=name, linewidth=1.2)
    top.set_title(f"{title}: equity per variant (USDT)")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    names = list(metrics)
    x = np.arange(len(names))
    width = 0.8 / len(_REASONS)
    for k, reason in enumerate(_REASONS):
        vals = [metrics[n].by_reason[reason][1] for n in names]
        bottom.bar(x + k * width - 0.4 + width / 2, vals, width, label=reason)
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_xticks(x, names)
    bottom.set_title("P&L by exit reason (USDT)")
    bottom.legend(loc="best")
    bottom.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
