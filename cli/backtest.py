"""``python run.py backtest``: a backtest on historical bars, with records, metrics, plots and a report."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

from cli.common import (add_config_option, add_data_option, add_executor_options, add_strategy_option,
                        config_from_args, executor_overrides, load_data)
from common.errors import UserError

log = logging.getLogger("backtest")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    add_strategy_option(parser)
    parser.add_argument("--start", type=_date, metavar="YYYY-MM-DD",
                        help="first bar traded; earlier bars only warm indicators up")
    parser.add_argument("--end", type=_date, metavar="YYYY-MM-DD", help="last bar used")
    parser.add_argument("--cash", type=float, help="starting cash")
    parser.add_argument("--seed", type=int, help="random seed (models, bootstrap); same seed, same results")
    add_executor_options(parser)
    add_config_option(parser)
    parser.add_argument("--out", metavar="DIR", help="output folder (default: a new folder under runs/)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots (the report keeps its tables)")


def new_run_dir(root: str, strategy: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{strategy}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def run(args: argparse.Namespace) -> int:
    from engine.backtest import run_backtest
    from feeds.loader import DataQuality
    from reports.writer import write_run
    from strategies import get_strategy

    cfg = config_from_args(args, {
        "backtest.strategy": args.strategy, "backtest.start": args.start, "backtest.end": args.end,
        "backtest.cash": args.cash, "backtest.seed": args.seed,
        "backtest.plot": False if args.no_plot else None, **executor_overrides(args),
    })
    strategy_cls = get_strategy(cfg.backtest.strategy)
    quality = DataQuality()
    bars = load_data(cfg, min_bars=strategy_cls.required_bars(cfg), end=cfg.backtest.end, quality=quality)
    if cfg.backtest.start is not None and all(f.index[-1].date() < cfg.backtest.start for f in bars.values()):
        raise UserError(f"--start {cfg.backtest.start} is after the last bar of every symbol")
    log.info("%d symbols, %s bars; strategy %s", len(bars), sum(len(f) for f in bars.values()),
             cfg.backtest.strategy)
    result = run_backtest(cfg, bars, strategy_cls=strategy_cls)
    result.metrics["data_quality"] = quality.to_dict()
    # only now, with a complete result, does anything get written
    out = Path(args.out) if args.out else new_run_dir(cfg.backtest.out_root, cfg.backtest.strategy)
    write_run(out, result, plot=cfg.backtest.plot)
    m = result.metrics
    bh = m["buy_and_hold"]
    cagr = lambda figures: "n/a" if figures["cagr"] is None else f"{figures['cagr']:.2%}"  # None under a day
    print(f"{cfg.backtest.strategy}: total return {m['total_return']:.2%}, CAGR {cagr(m)}, "
          f"Sharpe {m['sharpe'] or 0:.2f}, max drawdown {m['max_drawdown']:.2%}, {m['n_trades']} trades, "
          f"win rate {(m['win_rate'] or 0):.1%}")
    print(f"buy and hold: total return {bh['total_return']:.2%}, CAGR {cagr(bh)}, "
          f"Sharpe {bh['sharpe'] or 0:.2f}, max drawdown {bh['max_drawdown']:.2%}")
    wf = m.get("walk_forward")
    if wf is not None:
        lo, hi = wf["directional_accuracy_ci95"]
        print(f"models, out of sample ({wf['retrains']} walk-forward retrains): {wf['horizon']}-bar directional "
              f"accuracy {wf['directional_accuracy']:.2%} (95% {lo:.2%}..{hi:.2%}), always-up "
              f"{wf['baselines']['always_up']['accuracy']:.2%}, AUC {wf['auc'] or 0:.3f}, IC {wf['ic'] or 0:.3f}; "
              f"deflated Sharpe {m['deflated_sharpe'] or 0:.2f} over {m['n_trials']} configurations")
        if wf["leak_alarm"]:
            print(f"WARNING: accuracy above {wf['leak_alarm_accuracy']:.0%} on daily data is a probable leak: "
                  "see report.html")
    print(f"results in {out}/ (report.html, metrics.json, trades.csv, orders.csv, positions.csv, equity.csv)")
    return 0
