"""The run's own plots (PNG): equity and drawdown against buy-and-hold, monthly returns heatmap.

Backtrader's price chart is drawn by ``engine.compat.save_chart``.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless; these plots never need a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analyzers.stats import monthly_returns  # noqa: E402


def equity_vs_benchmark(equity: pd.Series, benchmark: pd.Series, path, *, label: str,
                        benchmark_label: str = "buy and hold (equal weight)") -> str:
    """Equity of the strategy and the benchmark (both from the same starting cash), and drawdowns."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    top.plot(equity.index, equity.to_numpy(), label=label, color="tab:blue", lw=1.4)
    top.plot(benchmark.index, benchmark.to_numpy(), label=benchmark_label, color="tab:gray", lw=1.2)
    top.set_ylabel("equity")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    top.set_title("Equity (costs included) against buy-and-hold of the same symbols")
    for series, color, name in ((equity, "tab:blue", label), (benchmark, "tab:gray", benchmark_label)):
        dd = 1.0 - series / series.cummax()
        bottom.fill_between(dd.index, -100 * dd.to_numpy(), 0, color=color, alpha=0.35, label=name)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def monthly_heatmap(equity: pd.Series, path, *, title: str = "Monthly returns (%)") -> str:
    table = monthly_returns(equity).reindex(columns=range(1, 13)) * 100.0
    fig, ax = plt.subplots(figsize=(12, 0.6 * max(len(table), 2) + 1.5))
    values = table.to_numpy(dtype=float)
    bound = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    im = ax.imshow(values, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.025)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return str(path)
