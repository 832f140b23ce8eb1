"""Speed of the feature engine, printed in one run (no assertions: see the issue's goals).

1. all features on 1,000,000 bars in batch (50 symbols x 20,000 daily bars, built by repeating
   real daily bars end to end), and the TA-Lib functions behind the TA-Lib-checked features alone;
2. the live update (the engine's stream) per bar for 50 symbols: median and p99;
3. Backtrader on 50 stocks x 1259 bars: bars per second of a strategy that reads every feature row
   each bar, as a ratio to an empty strategy. The features are computed inside the timed run (the
   hub's batch over the preloaded datas) and read through the FeatureHub; a second run reads a panel
   computed beforehand, as training does.

Each figure is the best of a few repeats (other processes on a shared machine slow single runs;
the live update also prints the other passes' p99, so the spread shows).
Data: the first 50 tickers of ``../shared/data/sp500_5yr`` when that folder exists, else the sample.
Run: ``python benchmarks/features_speed.py``.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.errors import DataError  # noqa: E402
from engine.compat import bt  # noqa: E402
from features import FeatureEngine, build_registry  # noqa: E402
from features.registry import default_config  # noqa: E402
from feeds.loader import load_sector_map, load_universe  # noqa: E402
from feeds.pandas_feed import bars_to_feed  # noqa: E402
from benchmarks.universe import long_history  # noqa: E402
from indicators.feature_hub import FeatureHub  # noqa: E402

SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr"
SYMBOLS = 50
LONG_BARS = 20_000
FIELDS = ("open", "high", "low", "close", "volume")


def fifty_stocks() -> dict[str, pd.DataFrame]:
    folder = SP500 if SP500.is_dir() else ROOT / "data" / "sample"
    files = sorted(folder.glob("*.csv"))
    full = []
    for path in files:
        try:
            symbol, frame = next(iter(load_universe([path]).items()))
        except DataError:  # a few files of that dataset have bad rows: skipped
            continue
        if len(frame) >= 1259:
            full.append((symbol, frame))
        if len(full) == SYMBOLS:
            break
    return dict(full)


def sectors_for(symbols) -> dict[str, str]:
    """The sample's sector map where it knows the symbol, else one of its sectors in turn (a
    benchmark needs sector groups of realistic sizes, not the right ones)."""
    known = load_sector_map(ROOT / "data" / "sectors.csv")
    names = sorted(set(known.values()))
    return {s: known.get(s, names[i % len(names)]) for i, s in enumerate(symbols)}


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def batch_speed(bars, registry, sectors) -> None:
    long = long_history(bars, LONG_BARS)
    n_bars = sum(len(f) for f in long.values())
    engine = FeatureEngine(registry, list(long), sectors=sectors)
    seconds = best_of(3, lambda: engine.batch(long))
    print(f"batch: {len(registry)} features on {n_bars:,} bars ({len(long)} symbols x {LONG_BARS:,}): "
          f"{seconds:.2f} s")
    oracles = [f for f in registry if f.definition.oracle is not None]
    arrays = [[f[c].to_numpy(np.float64) for c in FIELDS] for f in long.values()]

    def talib_only():
        for columns in arrays:
            for feature in oracles:
                feature.definition.oracle(*columns, **feature.params)
    print(f"TA-Lib alone: the {len(oracles)} TA-Lib-checked features' TA-Lib calls on the same bars: "
          f"{best_of(2, talib_only):.2f} s")


def live_speed(bars, registry, sectors) -> None:
    engine = FeatureEngine(registry, list(bars), sectors=sectors)
    times = pd.DatetimeIndex(sorted(set().union(*(f.index for f in bars.values()))))
    prices = np.full((len(FIELDS), len(times), len(bars)), np.nan)
    present = np.zeros((len(times), len(bars)), dtype=bool)
    for j, frame in enumerate(bars.values()):
        rows = times.get_indexer(frame.index)
        present[rows, j] = True
        for k, field in enumerate(FIELDS):
            prices[k, rows, j] = frame[field].to_numpy()

    def one_pass() -> np.ndarray:
        stream, spent = engine.stream(), np.empty(len(times))
        gc.collect()
        for t in range(len(times)):
            start = time.perf_counter()
            stream.update(times[t], present[t], *prices[:, t])
            spent[t] = time.perf_counter() - start
        return spent

    passes = sorted((one_pass() for _ in range(3)), key=lambda s: np.percentile(s, 99))
    spent, warm = passes[0], passes[0][registry.max_warmup:]
    print(f"live update, {len(bars)} symbols x {len(registry)} features, {len(times)} bars: median "
          f"{np.median(spent) * 1e3:.2f} ms, p99 {np.percentile(spent, 99) * 1e3:.2f} ms "
          f"(after the {registry.max_warmup}-bar warm-up: median {np.median(warm) * 1e3:.2f} ms, "
          f"p99 {np.percentile(warm, 99) * 1e3:.2f} ms); p99 of the other passes: "
          + ", ".join(f"{np.percentile(s, 99) * 1e3:.2f} ms" for s in passes[1:]))


class Empty(bt.Strategy):
    def prenext(self):
        self.next()

    def next(self):
        pass


class ReadFeatures(bt.Strategy):
    """Reads every symbol's whole feature row at every bar."""

    params = (("engine", None), ("panel", None))

    def __init__(self):
        self.features = FeatureHub(self, self.p.engine, panel=self.p.panel)
        self.buffer = np.empty((len(self.datas), len(self.p.engine.names)))

    def prenext(self):
        self.next()

    def next(self):
        self.buffer[:] = self.features.rows()


def backtest_speed(bars, registry, sectors) -> None:
    # the features are computed in each timed run: not read from the feature cache
    engine = FeatureEngine(registry, list(bars), sectors=sectors,
                           config=default_config().model_copy(update={"cache": False}))
    n_bars = sum(len(f) for f in bars.values())

    def run(strategy, **kwargs):
        cerebro = bt.Cerebro(stdstats=False, runonce=True)
        for symbol, frame in bars.items():
            cerebro.adddata(bars_to_feed(symbol, frame), name=symbol)
        cerebro.addstrategy(strategy, **kwargs)
        cerebro.run()

    empty = best_of(3, lambda: run(Empty))
    reading = best_of(3, lambda: run(ReadFeatures, engine=engine))
    panel = engine.batch(bars)
    precomputed = best_of(3, lambda: run(ReadFeatures, engine=engine, panel=panel))
    print(f"backtest, {len(bars)} stocks x {n_bars // len(bars)} bars: empty strategy {n_bars / empty:,.0f} bars/s; "
          f"reading every feature row {n_bars / reading:,.0f} bars/s = {empty / reading:.2f} of empty "
          f"(features computed in the run); {n_bars / precomputed:,.0f} bars/s = {empty / precomputed:.2f} "
          f"(panel computed beforehand, as training does)")


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bars = fifty_stocks()
    sectors = sectors_for(list(bars))
    registry = build_registry()
    print(f"data: {len(bars)} stocks from {SP500 if SP500.is_dir() else 'data/sample'}; "
          f"{len(registry)} features (default registry)")
    batch_speed(bars, registry, sectors)
    live_speed(bars, registry, sectors)
    backtest_speed(bars, registry, sectors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
