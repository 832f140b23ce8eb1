"""Backtest speed: bars per second of strategies against an empty strategy on the same data, same run.

    python benchmarks/backtest_speed.py [--symbols 50] [--repeat 3]

Data: the first N tickers with full history (1259 daily bars) of ../shared/data/sp500_5yr when that
folder exists (a developer's checkout), else the sample universe shipped in data/. "Bars" counts
symbol-bars (50 symbols x 1259 days = 62,950). Each figure is the best of --repeat runs, measured
from building Cerebro (feeds included) to the end of the run; outputs are not written.

The ML strategies are timed with their training excluded: one untimed run trains the walk-forward,
and the timed runs get its predictions (``walk_forward=``), so they measure the features' batch
computation, reading the predictions and every decision (sizing, risk, stops), as inference does;
the "(features given)" rows also get the feature panel that run computed, so they measure reading
precomputed rows and predictions plus the decisions. ``--no-ml`` skips them.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.universe import clean_tickers, source_folder  # noqa: E402
from config import load_config  # noqa: E402
from engine.backtest import backtest_cerebro  # noqa: E402
from engine.compat import bt  # noqa: E402
from strategies.base import PortfolioStrategy  # noqa: E402


class EmptyStrategy(PortfolioStrategy):
    """Walks the bars through the same clock and recording machinery, decides nothing."""

    def decide(self, now, fresh):
        pass


def universe(n: int) -> tuple[dict, str]:
    """The first n clean tickers with the full history (1259 bars)."""
    full = ((symbol, frame) for symbol, frame in clean_tickers(1259) if len(frame) == 1259)
    bars = dict(itertools.islice(full, n))
    return bars, f"{source_folder()} (first {len(bars)} clean full-history tickers)"


def time_run(cfg, bars, strategy_cls, repeat: int, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        cerebro = backtest_cerebro(cfg, bars, strategy_cls=strategy_cls, **kwargs)
        cerebro.run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-ml", action="store_true", help="skip the ML strategies (their training takes minutes)")
    args = parser.parse_args()
    bars, source = universe(args.symbols)
    n_bars = sum(len(f) for f in bars.values())
    cfg = load_config(overrides={"backtest.progress": False, "features.cache": False})  # features computed in each run
    print(f"data: {source}: {len(bars)} symbols, {n_bars} symbol-bars; backtrader {bt.__version__}")
    from strategies import get_strategy

    rows = [("empty", EmptyStrategy, {}), ("momentum_breakout", get_strategy("momentum_breakout"), {})]
    if not args.no_ml:
        start = time.perf_counter()
        trained = backtest_cerebro(cfg, bars, strategy_cls=get_strategy("ml_equal_weight")).run()[0]
        given = trained.walk_forward()
        print(f"walk-forward training (not timed below): {time.perf_counter() - start:.0f} s, "
              f"{len(given[0].folds)} retrains")
        panel = trained.features.panel
        rows += [(name, get_strategy(name), {"walk_forward": given}) for name in ("ml_equal_weight", "ml")]
        rows += [(f"{name} (features given)", get_strategy(name), {"walk_forward": given, "feature_panel": panel})
                 for name in ("ml_equal_weight", "ml")]
    empty_rate = None
    for name, cls, kwargs in rows:
        seconds = time_run(cfg, bars, cls, args.repeat, **kwargs)
        rate = n_bars / seconds
        empty_rate = empty_rate or rate
        print(f"{name:>32}: {seconds:6.2f} s  {rate:9,.0f} bars/s  ratio to empty {rate / empty_rate:5.2f}")


if __name__ == "__main__":
    main()
