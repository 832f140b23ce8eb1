#!/usr/bin/env python
"""Cross-sectional research: the walk-forward's out-of-sample predictions for each label kind on a
wide universe, and the factor researcher's view of them (``models.factor_evaluation``).

Stage ``run`` trains the purged walk-forward (``models.walkforward``, the strategy's own code) once per
*variant* and keeps its out-of-sample predictions in ``--store`` (one ``.npz`` each); stage
``report`` evaluates every stored variant on the same days and prints, per horizon, the daily rank
IC with its Newey-West t-statistic, the quantile spread and the top quantile's turnover, beside the
12-1 momentum and 1-month reversal baselines, and writes them as JSON. ``docs/research.md`` holds the
figures of the 505-stock run.

A variant is a label kind, optionally with ``+rank`` (the trees as rankers) or ``+norm`` (the
features ranked across the symbols of each bar): ``forward_return``, ``excess_return``,
``cross_sectional_rank``, ``cross_sectional_rank+rank``, ``excess_return+norm`` ...

Every variant run on the reported period is a configuration tried: count them in the deflated
Sharpe of any plan chosen from them (``report.configurations_tried``).

Stage ``plans`` trains one variant's walk-forward and backtests the ranked plan ``ml_rank`` on it
ranking by the models' score and by 12-1 month momentum (``ml_rank.score``: the same plan, stops,
risk rules and costs), with the kill switch as configured and off, each with its run folder
(metrics.json, report.html), traded and reported from the first out-of-sample bar; it prints them
against the equal-weight buy-and-hold of the same universe over the same bars.

Usage::

    python benchmarks/cross_section.py run --variants forward_return excess_return cross_sectional_rank \\
        [--symbols 505] [--models xgboost lightgbm] [--threads 1]
    python benchmarks/cross_section.py report [--json docs/research.json]
    python benchmarks/cross_section.py plans --variant cross_sectional_rank --out runs/research \\
        [--configurations-tried 3]

Data: the first ``--symbols`` clean files of ``../shared/data/sp500_5yr`` (the sample otherwise),
bad rows dropped, the shared sector map; features from the feature cache (``features.cache``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STORE = ROOT / ".cache" / "research"
SECTORS = ROOT.parent / "shared" / "data" / "sp500_5yr_sectors.csv"


def variant_overrides(variant: str) -> dict:
    kind, *options = variant.split("+")
    overrides = {"models.labels.kind": kind}
    for option in options:
        if option == "rank":
            overrides["models.ranking.objective"] = "rank"
        elif option == "norm":
            overrides["features.normalise"] = "rank"
        else:
            raise SystemExit(f"variant {variant!r}: unknown option {option!r} (rank, norm)")
    return overrides


def config(variant: str, models: list[str] | None, threads: int | None = None, extra: dict | None = None):
    from config import load_config

    overrides = {"backtest.progress": False, "data.invalid_rows": "drop", **variant_overrides(variant)}
    if SECTORS.exists():
        overrides["data.sector_map"] = str(SECTORS)
    if models:
        overrides["models.base_models"] = models
    if threads:
        overrides["models.threads"] = threads
    return load_config(overrides={**overrides, **(extra or {})})


def load(cfg, symbols: int):
    from benchmarks.universe import source_folder
    from feeds.loader import load_universe
    from strategies.ml import MLStrategy

    files = sorted(source_folder().glob("*.csv"))[:symbols]
    return load_universe(files, invalid_rows="drop", min_bars=MLStrategy.required_bars(cfg))


def panel_data(cfg, bars):
    """The features (through the cache) and prices of ``bars`` on one calendar, with the labels of
    ``cfg``: what the strategy's walk-forward sees."""
    from features.from_config import engine_from_config
    from models.dataset import panel_data_from_bars

    return panel_data_from_bars(engine_from_config(cfg, list(bars)), bars, cfg.models, progress=True)


def walk_forward(variant: str, args):
    """(cfg, bars, feature panel, PanelData, WalkForwardResult, seconds of the features) of a variant."""
    from models.walkforward import WalkForward

    cfg = config(variant, args.models, args.threads)
    began = time.perf_counter()
    bars = load(cfg, args.symbols)
    panel, data = panel_data(cfg, bars)
    features_s = time.perf_counter() - began
    return cfg, bars, panel, data, WalkForward(cfg.models, cfg.backtest.seed, progress=True).run(data), features_s


def run(args) -> None:
    args.store.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        cfg, bars, _, data, result, features_s = walk_forward(variant, args)
        p = result.predictions
        np.savez_compressed(
            args.store / f"{variant}.npz", bars=p.bars, symbols=p.symbols, expected_return=p.expected_return,
            prob_up=p.prob_up, close=data.close, times=np.asarray(data.times, dtype="datetime64[ns]"),
            horizons=np.asarray(result.horizons), fold_starts=np.asarray([f.test_start for f in result.folds]),
            fold_ends=np.asarray([f.test_end for f in result.folds]),
            meta=json.dumps({"variant": variant, "symbols": len(bars), "models": result.base_names,
                             "configurations": int(result.n_configurations), "features_s": round(features_s, 1),
                             "training_s": round(result.seconds["total"], 1)}))
        print(f"{variant}: {len(bars)} symbols, {len(result.folds)} folds, {len(p)} predictions; features "
              f"{features_s:.0f} s, walk-forward {result.seconds['total']:.0f} s", flush=True)


def report(args) -> None:
    from types import SimpleNamespace

    from models.factor_evaluation import cross_section
    from models.predictor import Predictions

    out = {}
    for path in sorted(args.store.glob("*.npz")):
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        n = len(z["bars"])
        empty = np.full(n, np.nan)
        p = Predictions(bars=z["bars"], symbols=z["symbols"], expected_return=z["expected_return"],
                        prob_up=z["prob_up"], lower=z["expected_return"], upper=z["expected_return"],
                        volatility=empty, regime=np.full(n, -1), entry_timing=empty, exit_timing=empty,
                        stop_distance=empty, confidence=empty, base=np.zeros((n, 0, len(z["horizons"]))))
        times = [str(t)[:10] for t in z["times"]]
        horizons = [int(h) for h in z["horizons"]]
        folds = [SimpleNamespace(index=i, test_start=int(a), test_end=int(b))
                 for i, (a, b) in enumerate(zip(z["fold_starts"], z["fold_ends"]))]
        section, fold_rows = cross_section(p, z["close"], horizons, args.decision_horizon, folds,
                                           quantiles=args.quantiles, time_of=lambda b: times[b])
        section["folds"] = fold_rows
        out[meta["variant"]] = {"meta": meta, "cross_section": section}
    print_table(out)
    if args.json:
        from common.jsonable import to_jsonable

        args.json.write_text(json.dumps(to_jsonable(out), indent=1) + "\n")
        print(f"written {args.json}")


def plans(args) -> None:
    """ml_rank on the variant's walk-forward, ranked by the models and by momentum."""
    from engine.backtest import run_backtest
    from reports.writer import write_run

    cfg, bars, panel, data, result, _ = walk_forward(args.variant, args)
    # traded and reported from the first out-of-sample bar: before it the plan cannot hold anything,
    # and buy-and-hold would be measured over years the plan sat in cash for want of a model
    first = data.times[result.folds[0].test_start].date().isoformat()
    overrides = {"backtest.strategy": "ml_rank", "backtest.start": first,
                 "report.configurations_tried": args.configurations_tried}
    print(f"trading and reporting from {first}, the first out-of-sample bar", flush=True)
    rows = {}
    # the kill switch as configured, and off (a drawdown of 100% never trips it): a fully invested
    # plan trips a 15% kill switch in a market fall, and then measures the switch, not the ranking
    for kill_switch in ("on", "off"):
        for score in ("model", "momentum_12_1"):
            name = f"{score}, kill switch {kill_switch}"
            extra = {**overrides, "ml_rank.score": score, **({"risk.max_drawdown": 1.0} if kill_switch == "off" else {})}
            run_cfg = config(args.variant, args.models, args.threads, extra)
            began = time.perf_counter()
            backtest = run_backtest(run_cfg, bars, walk_forward=(result, data), feature_panel=panel)
            out = args.out / f"ml_rank-{args.variant}-{score}-kill-switch-{kill_switch}"
            write_run(out, backtest, plot=True)
            rows[name] = backtest.metrics
            print(f"{name}: backtest {time.perf_counter() - began:.0f} s -> {out}", flush=True)
    bh = next(iter(rows.values()))["buy_and_hold"]
    keys = ("total_return", "cagr", "sharpe", "max_drawdown", "exposure", "turnover", "costs_paid",
            "excess_return", "tracking_error", "information_ratio", "information_ratio_ci_95", "deflated_sharpe",
            "n_trials", "n_trades")
    print(f"{'':<24}" + "".join(f"{name:>30}" for name in (*rows, "buy_and_hold")))
    for key in keys:
        cells = [rows[name].get(key) for name in rows] + [bh.get(key)]
        print(f"{key:<24}" + "".join(f"{_cell(v):>30}" for v in cells))
    if args.json:
        from common.jsonable import to_jsonable

        args.json.write_text(json.dumps(to_jsonable({name: {k: m.get(k) for k in keys + ("kill_switch",)}
                                                     for name, m in {**rows, "buy_and_hold": bh}.items()}), indent=1))


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def print_table(out: dict) -> None:
    rows = []
    for variant, got in out.items():
        for h, by_score in got["cross_section"]["horizons"].items():
            for score, s in by_score.items():
                if score != "model" and variant != next(iter(out)):
                    continue                                  # the baselines once, with the first variant
                name = variant if score == "model" else score
                rows.append((h, name, s["rank_ic_mean"], s["rank_ic_t"], s["ic_mean"], s["rank_ic_positive"],
                             s["spread_mean"], s["spread_t"], s["top_turnover"]))
    fmt = lambda v, spec: "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)
    print(f"{'h':>3} {'score':<34} {'rank IC':>8} {'NW t':>6} {'IC':>8} {'IC>0':>6} {'spread':>8} {'t':>6} {'turn':>6}")
    for h, name, ric, t, ic, pos, spread, st, turn in sorted(rows, key=lambda r: (int(r[0]), r[1])):
        print(f"{h:>3} {name:<34} {fmt(ric, '+.4f'):>8} {fmt(t, '+.2f'):>6} {fmt(ic, '+.4f'):>8} {fmt(pos, '.1%'):>6} "
              f"{fmt(spread, '+.4f'):>8} {fmt(st, '+.2f'):>6} {fmt(turn, '.0%'):>6}")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    r = sub.add_parser("run", help="train the walk-forward of each variant and store its predictions")
    r.add_argument("--variants", nargs="+", default=["forward_return", "excess_return", "cross_sectional_rank"])
    r.add_argument("--symbols", type=int, default=505)
    r.add_argument("--models", nargs="+", default=None, help="base models (default: the config's)")
    r.add_argument("--threads", type=int, default=None, help="threads per model fit (default: the config's)")
    r.add_argument("--store", type=Path, default=STORE)
    e = sub.add_parser("report", help="evaluate every stored variant")
    e.add_argument("--store", type=Path, default=STORE)
    e.add_argument("--quantiles", type=int, default=5)
    e.add_argument("--decision-horizon", type=int, default=5)
    e.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("plans", help="ml_rank by the models' score and by momentum on one variant")
    p.add_argument("--variant", default="cross_sectional_rank")
    p.add_argument("--symbols", type=int, default=505)
    p.add_argument("--models", nargs="+", default=None, help="base models (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="threads per model fit (default: the config's)")
    p.add_argument("--configurations-tried", type=int, default=0,
                   help="other configurations tried on the same period (report.configurations_tried)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "research")
    p.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    {"run": run, "report": report, "plans": plans}[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
