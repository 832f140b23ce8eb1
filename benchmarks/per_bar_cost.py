#!/usr/bin/env python
"""Per-bar cost against the length of history: the same last bars, after 1 year or 5 years before them.

A bar-by-bar backtest (``runonce=False``, the way live trading steps) of ``--symbols`` symbols is
timed at every bar by an analyzer (the whole loop of a bar: feeds, broker, strategy, observers,
records). Two runs end on the same day: one starts 5 years earlier, one 1 year earlier. The median
time per bar over the last ``--last`` bars of each must be the same if the per-bar cost does not grow
with the history kept; the script prints both and their ratio, for ``momentum_breakout`` and an empty
strategy (the framework's own cost).

The runs alternate (5 years, 1 year, 5 years, ...) so that a drift in the machine's speed hits both;
the ratio printed is the median of the pairs' ratios, with their range. A second view needs no
pairing: within each 5-year run, the median time per bar in its second to fifth years (the same
symbols, a year more history each).

``--ml``: the default ML plan (``ml``) instead, on a registry model fitted once in this process on
the symbols' real 1,259 bars (``benchmarks.registry_model``), with ``benchmarks/live_latency.py``'s
settings (entries on most bars, so every bar runs the whole pipeline: features, predictor, ranking,
cvxpy sizing, risk manager). Its bar-by-bar run needs more history than the data has: each symbol's
real bars are repeated end to end, prices chained (``benchmarks.universe.long_history``: a stitched,
not a real, history, dated from 1940). It prints the median (and p90, p99) time per bar over the
``--last`` bars after 250 bars of session history and over the same real bars two repeats later,
after 2,768 bars (250 + 2 x 1,259: the same prices, up to a factor, so the same work but for the
history), in one run; the goal (the issue): the same cost at both. ``BENCH_PROFILE=FILE``
profiles that run (not the fit) with cProfile.

Usage: ``python benchmarks/per_bar_cost.py [--symbols 100] [--last 200] [--repeat 5]``;
``python benchmarks/per_bar_cost.py --ml [--symbols 50] [--last 200] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.backtest_speed import EmptyStrategy  # noqa: E402
from benchmarks.registry_model import fit_registry_model  # noqa: E402
from benchmarks.universe import clean_tickers, long_history  # noqa: E402
from config import load_config  # noqa: E402
from engine.backtest import backtest_cerebro  # noqa: E402
from engine.compat import bt  # noqa: E402
from strategies import get_strategy  # noqa: E402


class BarClock(bt.Analyzer):
    """The time at the end of each bar."""

    def start(self):
        self.stamps = []

    def next(self):
        self.stamps.append(time.perf_counter())


def per_bar_times(cfg, bars, strategy_cls, **strategy_kwargs) -> list[float]:
    """Seconds each bar took, in order: ``times[k]`` is bar k + 1's (after k + 1 bars of history)."""
    cerebro = backtest_cerebro(cfg, bars, strategy_cls=strategy_cls, runonce=False, **strategy_kwargs)
    cerebro.addanalyzer(BarClock, _name="clock")
    stamps = cerebro.run()[0].analyzers.clock.stamps
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


# benchmarks/live_latency.py's ml settings: entries on most bars, the account's gates off
ML_SETTINGS = {"backtest.strategy": "ml", "backtest.progress": False, "ml.min_confidence": 0.5,
               "ml.min_expected_return": 0.0, "models.search.schedule": "off", "risk.max_position_weight": 0.02,
               "risk.stop_max": 0.01, "risk.daily_loss_limit": 1.0, "risk.max_drawdown": 1.0,
               "features.cache": False}
REAL_BARS = 1259
HISTORIES = (250, 250 + 2 * REAL_BARS)   # the same real bars, two repeats apart


def ml_history_effect(args) -> None:
    """See the module docstring (``--ml``)."""
    from models.registry import REGISTRY_ROOT

    real = dict(itertools.islice(clean_tickers(REAL_BARS), args.symbols))
    threads = {"models.threads": args.threads} if args.threads else {}
    cfg = load_config(overrides={**ML_SETTINGS, **threads})
    name = f"bench-{os.getpid()}"
    try:
        print(fit_registry_model(cfg, {s: frame.iloc[:REAL_BARS] for s, frame in real.items()}, name), flush=True)
        bars = long_history(real, HISTORIES[-1] + args.last + 1)
        profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
        with profile or contextlib.nullcontext():
            times = per_bar_times(cfg, bars, get_strategy("ml"), model=name)
        if profile is not None:
            profile.dump_stats(os.environ["BENCH_PROFILE"])
    finally:
        shutil.rmtree(REGISTRY_ROOT / name, ignore_errors=True)
    print(f"ml plan, {len(bars)} symbols, bar by bar on stitched bars (each symbol's 1,259 real bars repeated); "
          f"time per bar over {args.last} bars:")
    medians = []
    for history in HISTORIES:
        window = sorted(times[history - 1: history - 1 + args.last])
        medians.append(statistics.median(window))
        print(f"  after {history:>5,} bars of history: median {medians[-1] * 1e3:.2f} ms, "
              f"p90 {window[int(0.9 * (len(window) - 1))] * 1e3:.2f} ms, "
              f"p99 {window[round(0.99 * (len(window) - 1))] * 1e3:.2f} ms")
    print(f"  ratio of the medians ({HISTORIES[1]:,} / {HISTORIES[0]:,}): {medians[1] / medians[0]:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, help="default: 100 (--ml: 50)")
    parser.add_argument("--last", type=int, default=200, help="bars timed at the end of each run")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs (5 years, 1 year), interleaved")
    parser.add_argument("--ml", action="store_true", help="the ml plan after 250 and 2,768 bars of history")
    parser.add_argument("--threads", type=int, help="--ml: models.threads (default: the config's)")
    args = parser.parse_args(argv)
    args.symbols = args.symbols or (50 if args.ml else 100)
    if args.ml:
        ml_history_effect(args)
        return 0
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
