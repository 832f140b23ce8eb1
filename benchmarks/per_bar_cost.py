#!/usr/bin/env python
"""Per-bar cost against the length of history: the same last bars, after 1 year or 5 years before them.

A bar-by-bar backtest (``runonce=False``, the way live trading steps) of ``--symbols`` symbols is
timed at every bar by an analyzer (the whole loop of a bar: feeds, broker, strategy, observers,
records). Two runs end on the same day: one starts 5 years earlier, one 1 year earlier. The median
time per bar over the last ``--last`` bars of each must be the same if the per-bar cost does not grow
with the history kept; the script prints both and their ratio, for ``momentum_breakout`` and an empty
strategy (the framework's own cost). The ML plan is not measured here: it needs about two years of
bars before it trades (``benchmarks/ml_speed.py`` times its inference per bar).

The runs alternate (5 years, 1 year, 5 years, ...) so that a drift in the machine's speed hits both;
the ratio printed is the median of the pairs' ratios, with their range. A second view needs no
pairing: within each 5-year run, the median time per bar in its second to fifth years (the same
symbols, a year more history each).

Usage: ``python benchmarks/per_bar_cost.py [--symbols 100] [--last 200] [--repeat 5]``.
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


def per_bar_times(cfg, bars, strategy_cls) -> list[float]:
    """Seconds each bar took, in order."""
    cerebro = build_cerebro(cfg, bars, strategy_cls=strategy_cls, runonce=False)
    cerebro.addanalyzer(BarClock, _name="clock")
    stamps = cerebro.run()[0].analyzers.clock.stamps
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--last", type=int, default=200, help="bars timed at the end of each run")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs (5 years, 1 year), interleaved")
    args = parser.parse_args(argv)
    universe = dict(item for item, _ in zip(clean_tickers(1259), range(args.symbols)))
    end = min(frame.index[-1] for frame in universe.values())
    print(f"{len(universe)} symbols, the last {args.last} bars of runs ending {end:%Y-%m-%d}, bar by bar; "
          f"{args.repeat} interleaved pairs")
    print(f"{'strategy':<18} {'after 5 years':>14} {'after 1 year':>13} {'ratio (median of pairs, range)':>32}"
          f"   5-year run, median per bar in its years 2..5")
    for name, strategy_cls in (("momentum_breakout", get_strategy("momentum_breakout")), ("empty", EmptyStrategy)):
        cfg = load_config(overrides={"backtest.strategy": "momentum_breakout", "backtest.progress": False})
        runs = {5: [], 1: []}
        for _ in range(args.repeat):      # interleaved: a drift in the machine's speed hits both alike
            for years in (5, 1):
                first = end - pd.DateOffset(years=years)
                runs[years].append(per_bar_times(cfg, {s: f.loc[first:end] for s, f in universe.items()},
                                                 strategy_cls))
        last = {y: [statistics.median(times[-args.last:]) for times in runs[y]] for y in runs}
        ratios = sorted(a / b for a, b in zip(last[5], last[1]))
        # within one 5-year run: the same number of symbols, more history each year
        yearly = [statistics.median(statistics.median(times[k * 252:(k + 1) * 252]) for times in runs[5])
                  for k in range(1, 5)]
        print(f"{name:<18} {statistics.median(last[5]) * 1e3:>11.2f} ms {statistics.median(last[1]) * 1e3:>10.2f} ms "
              f"{statistics.median(ratios):>12.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})          "
              + " ".join(f"{y * 1e3:.2f}" for y in yearly) + " ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
