"""``python run.py train``: train the ensemble for live use and save it in the model registry.

The same walk-forward the ``ml`` strategy runs in a backtest goes over the history (its out-of-sample
scores are the model's validation metrics, and its predictions are the history the meta-learner and
the calibration are fitted on); then a last retrain at the final bar gives the model saved, with
its manifest (``models.registry``): feature list and registry hash, config hash, training range,
seed, library versions and validation metrics. ``run.py live --model DIR`` loads it.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.backtest import _date
from cli.common import (add_config_option, add_data_option, add_executor_options, config_from_args,
                        executor_overrides, load_data)
from common.errors import UserError

log = logging.getLogger("train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument("--end", type=_date, metavar="YYYY-MM-DD", help="last bar used for training")
    parser.add_argument("--seed", type=int, help="random seed (default: the config's backtest.seed)")
    add_executor_options(parser)
    add_config_option(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="model folder, e.g. models/registry/NAME (must not hold a model already)")
    parser.add_argument("--force", action="store_true", help="replace a model already in --out")


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from features.from_config import engine_from_config
    from models import registry
    from models.dataset import panel_data_from_bars
    from models.evaluation import evaluate
    from models.executor import executor_from_config
    from models.walkforward import WalkForward
    from config import config_hash

    out = Path(args.out)
    if (out / registry.MANIFEST).exists() and not args.force:
        raise UserError(f"--out {out} holds a model already; give another folder or --force to replace it")
    cfg = config_from_args(args, {"backtest.end": args.end, "backtest.seed": args.seed, **executor_overrides(args)})
    bars = load_data(cfg, end=cfg.backtest.end)
    symbols = list(bars)
    engine = engine_from_config(cfg, symbols)
    panel, data = panel_data_from_bars(engine, bars, cfg.models, progress=True)
    journal = Path(tempfile.mkdtemp(prefix="search-")) / "search.journal"   # into the model folder at the end
    walk = WalkForward(cfg.models, cfg.backtest.seed, progress=True, search_journal=journal)
    try:
        result = walk.run(data, executor=executor_from_config(cfg))
    except ValueError as exc:
        raise UserError(f"cannot train: {exc}; it needs the features' warm-up plus models.train_bars "
                        f"({cfg.models.train_bars}) bars") from None
    scores = evaluate(result.predictions, data.labels, data.close, cfg.models.decision_horizon, result.folds,
                      cfg.report.leak_alarm_accuracy, time_of=data.time_of)
    last = data.n_bars - 1
    if result.folds[-1].fit_bar != last:
        walk.retrain(data, last)          # the model for the next bar: every label known by now
    validation = {key: scores[key] for key in ("horizon", "directional_accuracy", "directional_accuracy_ci95",
                                               "auc", "ic", "log_loss", "samples", "leak_alarm")}
    validation.update(always_up_accuracy=scores["baselines"]["always_up"]["accuracy"],
                      last_return_accuracy=scores["baselines"]["last_return"]["accuracy"],
                      folds=len(result.folds), n_configurations=result.n_configurations,
                      out_of_sample=[data.time_of(result.folds[0].test_start), data.time_of(last)])
    p = walk.predictor
    if out.exists() and args.force:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = registry.save(p, out, feature_names=panel.names, feature_registry_hash=engine.registry.hash(),
                             config_hash=config_hash(cfg), symbols=symbols,
                             training_range=(data.time_of(p.train_bars_range[0]), data.time_of(p.train_bars_range[1])),
                             validation_metrics=validation)
    if journal.exists():
        shutil.move(journal, out / "search.journal")
    print(f"model fitted at {data.time_of(last)} on {p.n_train} samples ({manifest['training_range'][0]} .. "
          f"{manifest['training_range'][1]}), {len(symbols)} symbols, {len(panel.names)} features -> {out}")
    print(f"walk-forward validation ({len(result.folds)} folds): {cfg.models.decision_horizon}-bar directional "
          f"accuracy {scores['directional_accuracy']:.2%} (95% {scores['directional_accuracy_ci95'][0]:.2%}.."
          f"{scores['directional_accuracy_ci95'][1]:.2%}), always-up {validation['always_up_accuracy']:.2%}, "
          f"AUC {scores['auc']:.3f}, IC {scores['ic']:.3f}")
    if scores["leak_alarm"]:
        print(f"WARNING: accuracy above {cfg.report.leak_alarm_accuracy:.0%} on daily data is a probable leak")
    return 0
