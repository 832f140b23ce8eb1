#!/usr/bin/env python
"""Per-bar cost against the length of history: the same last bars, after 1 year or 5 years before them.

A bar-by-bar backtest (``runonce=False``, the way live trading steps) of ``--symbols`` symbols is
timed at every bar by an analyzer (the whole loop of a bar: feeds, broker, strategy, observers,
records). Two runs end on the same day: one starts 5 years earlier, one 1 year earlier. The median
time per bar over the last ``--last`` bars of each must be the same if the per-bar cost does not grow
with the history kept; the script prints both and their ratio, for ``momentum_breakout`` and an empty
strategy (the framework's own cost). The ML plan is not measured here: it needs about two years of
bars before it trades (``benchmarks/ml_speed.py`` times its inference per bar).

Usage: ``python benchmarks/per_bar_cost.py [--symbols 100] [--last 200] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.backtest_speed import EmptyStrategy  # noqa: E402
from benchmarks.universe import clean_tickers  # noqa: E402
from config import load_config  # noqa: E402
from engine.backtest import build_cerebro  # noqa: E402
from engine.compat import bt  # noqa: E402
from strategies import get_strategy  # noqa: E402


class BarClock(bt.Analyzer):
    """The time at the end of each bar."""

    def start(self):
        self.stamps = []

    def next(self):
        self.stamps.append(time.perf_counter())


def per_bar_median(cfg, bars, strategy_cls, last: int) -> float:
    cerebro = build_cerebro(cfg, bars, strategy_cls=strategy_cls, runonce=False)
    cerebro.addanalyzer(BarClock, _name="clock")
    stamps = cerebro.run()[0].analyzers.clock.stamps
    return statistics.median(b - a for a, b in zip(stamps[-last - 1:], stamps[-last:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--last", type=int, default=200, help="bars timed at the end of each run")
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many runs")
    args = parser.parse_args(argv)
    universe = dict(item for item, _ in zip(clean_tickers(1259), range(args.symbols)))
    end = min(frame.index[-1] for frame in universe.values())
    print(f"{len(universe)} symbols, the last {args.last} bars of runs ending {end:%Y-%m-%d}, bar by bar")
    print(f"{'strategy':<18} {'after 5 years':>14} {'after 1 year':>13} {'ratio':>6}")
    for name, strategy_cls in (("momentum_breakout", get_strategy("momentum_breakout")), ("empty", EmptyStrategy)):
        cfg = load_config(overrides={"backtest.strategy": "momentum_breakout", "backtest.progress": False})
        medians = {}
        for years in (5, 1):
            first = end - pd.DateOffset(years=years)
            bars = {s: f.loc[first:end] for s, f in universe.items()}
            medians[years] = min(per_bar_median(cfg, bars, strategy_cls, args.last) for _ in range(args.repeat))
        print(f"{name:<18} {medians[5] * 1e3:>11.2f} ms {medians[1] * 1e3:>10.2f} ms {medians[5] / medians[1]:>6.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
