"""ML speed: training time per walk-forward fold per model, and inference time per bar for 50 symbols.

    python benchmarks/ml_speed.py [--config FILE] [--models xgboost,lightgbm,...] [--folds N]

Training: the whole purged walk-forward (``models.walkforward``) with the config's models over the
sample universe in data/ (28 symbols, 1259 daily bars) and the project's feature registry
(``features.build_registry`` + ``FeatureEngine``), timed per fold and per model; ``--folds`` stops
early. Inference: a predictor fitted once on a 50-symbol panel (the first 50 full-history tickers
of ../shared/data/sp500_5yr when that folder exists, else the sample's symbols repeated to 50
columns), then ``predict`` for all symbols of one bar, the best of 20 bars, as the strategy calls it
live; and the same bar's rows through each model alone.
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

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from common.errors import DataError  # noqa: E402
from config import load_config  # noqa: E402
from features import FeatureEngine, build_registry  # noqa: E402
from feeds.loader import load_universe  # noqa: E402
from models.dataset import PanelData, flat, panel_data_from_bars, valid_rows  # noqa: E402
from models.evaluation import evaluate  # noqa: E402
from models.walkforward import WalkForward  # noqa: E402


def universe(n: int) -> tuple[dict, str]:
    """The first n full-history tickers of ../shared/data/sp500_5yr that load cleanly (a few vendor
    files have a high below the low), else the sample's symbols repeated to n columns."""
    shared = ROOT.parent / "shared" / "data" / "sp500_5yr"
    bars = {}
    if shared.is_dir():
        for path in sorted(shared.glob("*_data.csv")):
            if len(bars) == n:
                break
            if sum(1 for _ in open(path)) == 1260:
                try:
                    bars.update(load_universe([str(path)]))
                except DataError:
                    continue
        return bars, f"{shared} (first {n} clean full-history tickers)"
    return widen(load_universe([str(ROOT / "data" / "sample")]), n), "data/sample (repeated)"


def panel_data(bars: dict, cfg, sectors: dict | None) -> PanelData:
    symbols = list(bars)
    registry = build_registry(has_sectors=bool(sectors))
    engine = FeatureEngine(registry, symbols, sectors=sectors, config=cfg.features)
    return panel_data_from_bars(engine, bars, cfg.models)[1]


def widen(bars: dict, n: int) -> dict:
    """The sample's symbols repeated (renamed) until there are n: inference cost depends on the count."""
    names = list(bars)
    return {f"{names[k % len(names)]}_{k // len(names)}": bars[names[k % len(names)]] for k in range(n)}


def sectors_of(symbols) -> dict:
    table = pd.read_csv(ROOT / "data" / "sectors.csv")
    known = dict(zip(table.iloc[:, 0].str.upper(), table.iloc[:, 1]))
    return {s: known.get(s.split("_")[0], "Unknown") for s in symbols}


def training(cfg, folds: int | None) -> None:
    bars = load_universe([str(ROOT / "data" / "sample")])
    start = time.perf_counter()
    data = panel_data(bars, cfg, sectors_of(bars))
    print(f"data: {len(bars)} symbols x {data.n_bars} bars, {data.values.shape[2]} features "
          f"(features + labels {time.perf_counter() - start:.1f} s)")
    walk = WalkForward(cfg.models, cfg.backtest.seed, progress=True)
    first = walk.first_retrain(data)
    end = None if folds is None else min(data.n_bars - 1, first + folds * cfg.models.retrain_every - 1)
    start = time.perf_counter()
    result = walk.run(data, first=first, end=end)
    wall = time.perf_counter() - start
    table = pd.DataFrame([f.seconds for f in result.folds]).fillna(0.0)
    samples = np.mean([f.n_train for f in result.folds])
    print(f"\nwalk-forward: {len(result.folds)} folds, {samples:.0f} training samples per fold on average, "
          f"{result.n_configurations} search configurations, wall {wall:.1f} s")
    print("seconds per fold (the first includes the one-off search and out-of-fold fits, and the first Keras "
          "fit TensorFlow's import):")
    summary = pd.DataFrame({"first": table.iloc[0], "mean": table.mean(), "median": table.median(),
                            "max": table.max(), "all folds": table.sum()})
    print(summary.round(3).to_string())
    report = evaluate(result.predictions, data.labels, data.close, cfg.models.decision_horizon, result.folds,
                      cfg.report.leak_alarm_accuracy)
    up = report["baselines"]["always_up"]["accuracy"]
    print(f"out-of-sample {cfg.models.decision_horizon}-bar directional accuracy {report['directional_accuracy']:.4f} "
          f"(always-up {up:.4f}), AUC {report['auc']:.4f}, IC {report['ic']:.4f}")


def inference(cfg, n_symbols: int, repeat: int) -> None:
    bars, source = universe(n_symbols)
    data = panel_data(bars, cfg, sectors_of(bars))
    no_search = cfg.models.model_copy(update={"search": cfg.models.search.model_copy(update={"schedule": "off"})})
    walk = WalkForward(no_search, cfg.backtest.seed)    # inference cost does not depend on the search
    t = data.n_bars - repeat - 1
    start = time.perf_counter()
    walk.retrain(data, t)
    predictor = walk.predictor
    print(f"\ninference: {len(bars)} symbols from {source}, one fit ({time.perf_counter() - start:.1f} s)")
    timings: dict[str, list[float]] = {}
    for bar in range(t, t + repeat):
        ok = valid_rows(data, cfg.models.min_feature_fraction, [bar])[0]
        symbols = np.flatnonzero(ok)
        rows = np.full(len(symbols), bar)
        X = flat(data.values, rows, symbols)
        for name in predictor.base_names:
            plugin = predictor.plugins[name]
            inputs = predictor.inputs(plugin, data, rows, symbols, X)
            start = time.perf_counter()
            plugin.predict(inputs)
            timings.setdefault(name, []).append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.volatility.predict(data.close, rows, symbols)
        timings.setdefault("volatility (GARCH)", []).append(time.perf_counter() - start)
        start = time.perf_counter()
        walk.predict(data, [bar])
        timings.setdefault("whole predictor", []).append(time.perf_counter() - start)
    print(f"milliseconds per bar ({len(symbols)} symbols, best of {repeat} bars):")
    for name, values in timings.items():
        print(f"  {name:20s} {1000 * min(values):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML merged over config/default.toml (e.g. config/blueprint.toml)")
    parser.add_argument("--models", help="comma-separated base models (default: the config's)")
    parser.add_argument("--folds", type=int, help="stop after this many folds")
    parser.add_argument("--symbols", type=int, default=50, help="symbols of the inference measurement")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    overrides = {"models.base_models": args.models.split(",")} if args.models else {}
    cfg = load_config(args.config, overrides)
    print(f"models: {', '.join(cfg.models.base_models)}; timing: {cfg.models.timing.model}; "
          f"search: {cfg.models.search.schedule}; threads: {cfg.models.threads}; CPUs: {os.cpu_count()}")
    if not args.skip_training:
        training(cfg, args.folds)
    inference(cfg, args.symbols, args.repeat)


if __name__ == "__main__":
    main()
