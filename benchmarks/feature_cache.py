"""The feature cache: time to compute a universe's batch panel, to compute and store it (a miss), and to
read it back (a hit, best of two), in float64 and float32, with the size of an entry on disk.

Data: ``data/sample`` (the config's row policy), and ``../shared/data/sp500_5yr`` when it exists (bad
rows dropped, symbols under 61 bars skipped, as ``benchmarks/scale.py`` loads it). The cache is a
temporary folder, deleted at the end. Run: ``python benchmarks/feature_cache.py [--no-sp500]``.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import load_config  # noqa: E402
from features.cache import FeatureCache  # noqa: E402
from features.from_config import engine_from_config  # noqa: E402
from feeds.loader import load_universe  # noqa: E402

SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def measure(name: str, bars: dict, cfg) -> None:
    engine = engine_from_config(cfg, list(bars))
    arrays = engine.bar_arrays(bars)
    fresh, compute = timed(lambda: engine.batch_arrays(*arrays))
    F, T, N = fresh.data.shape
    print(f"{name}: {N} symbols x {T} bars x {F} features; computed in {compute:.2f} s")
    del fresh
    for dtype in ("float64", "float32"):
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache(Path(folder), dtype)
            panel, miss = timed(lambda: cache.panel(engine, arrays))
            del panel
            gc.collect()
            hits = []
            for _ in range(2):
                panel, seconds = timed(lambda: cache.panel(engine, arrays))
                hits.append(seconds)
                del panel
                gc.collect()
            size = sum(p.stat().st_size for p in Path(folder).iterdir())
            _, key = timed(lambda: cache.key(engine, arrays))
        print(f"  {dtype}: miss (compute + store) {miss:.2f} s, hit {min(hits):.2f} s (key {key:.2f} s), "
              f"entry {size / 1e6:,.0f} MB, hit {compute / min(hits):.1f}x faster than computing")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-sp500", action="store_true", help="the sample only")
    args = parser.parse_args(argv)
    cfg = load_config(overrides={"backtest.progress": False})
    sample = load_universe(cfg.data.paths, drop_missing_prices=cfg.data.drop_missing_prices,
                           invalid_rows=cfg.data.invalid_rows)
    measure("data/sample", sample, cfg)
    if SP500.exists() and not args.no_sp500:
        cfg = load_config(overrides={"backtest.progress": False, "data.invalid_rows": "drop"})
        bars, loading = timed(lambda: load_universe([SP500], invalid_rows="drop", min_bars=61))
        print(f"(sp500_5yr loaded in {loading:.1f} s)")
        measure("sp500_5yr", bars, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
