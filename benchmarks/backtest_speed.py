"""Backtest speed: bars per second of strategies against an empty strategy on the same data, same run.

    python benchmarks/backtest_speed.py [--symbols 50] [--repeat 3]

Data: the first N tickers with full history (1259 daily bars) of ../shared/data/sp500_5yr when that
folder exists (a developer's checkout), else the sample universe shipped in data/. "Bars" counts
symbol-bars (50 symbols x 1259 days = 62,950). Each figure is the best of --repeat runs, measured
from building Cerebro (feeds included) to the end of the run; outputs are not written.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from config import load_config  # noqa: E402
from engine.backtest import build_cerebro  # noqa: E402
from engine.compat import bt  # noqa: E402
from feeds.loader import load_universe  # noqa: E402
from strategies.base import PortfolioStrategy  # noqa: E402


class EmptyStrategy(PortfolioStrategy):
    """Walks the bars through the same clock and recording machinery, decides nothing."""

    def decide(self, now, fresh):
        pass


def universe(n: int) -> tuple[list[Path], str]:
    shared = ROOT.parent / "shared" / "data" / "sp500_5yr"
    if shared.is_dir():
        full = [p for p in sorted(shared.glob("*_data.csv")) if sum(1 for _ in open(p)) == 1260]
        return full[:n], f"{shared} (first {n} full-history tickers)"
    files = sorted((ROOT / "data" / "sample").glob("*.csv"))
    return files[:n], "data/sample"


def time_run(cfg, bars, strategy_cls, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        cerebro = build_cerebro(cfg, bars, strategy_cls=strategy_cls)
        cerebro.run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files, source = universe(args.symbols)
    bars = load_universe(files)
    n_bars = sum(len(f) for f in bars.values())
    cfg = load_config(overrides={"backtest.progress": False})
    print(f"data: {source}: {len(bars)} symbols, {n_bars} symbol-bars; backtrader {bt.__version__}")
    from strategies import get_strategy

    rows = [("empty", EmptyStrategy), ("momentum_breakout", get_strategy("momentum_breakout"))]
    empty_rate = None
    for name, cls in rows:
        seconds = time_run(cfg, bars, cls, args.repeat)
        rate = n_bars / seconds
        empty_rate = empty_rate or rate
        print(f"{name:>20}: {seconds:6.2f} s  {rate:9,.0f} bars/s  ratio to empty {rate / empty_rate:5.2f}")


if __name__ == "__main__":
    main()
