"""Assemble and run a backtest: feeds, broker costs, the strategy, recording analyzers, metrics.

Every run, backtest, replay and live, is assembled by ``build_cerebro`` (a backtest's feeds and broker:
``backtest_cerebro``; live: ``engine.live.LiveSession``), and every run on recorded bars ends in
``run_result``: the strategy code, the recorders and the metrics are the same objects in all.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzers import records, stats
from analyzers.live_session import LiveSessionRecorder
from config import Config, config_hash, results_config
from engine.compat import bt
from feeds.pandas_feed import bars_to_feed
from observers.stops import StopTargetLevels
from strategies import get_strategy

log = logging.getLogger("backtest")


@dataclass
class RunRecords:
    orders: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    equity: pd.DataFrame


@dataclass
class BacktestResult:
    cfg: Config
    symbols: list[str]
    records: RunRecords
    buy_and_hold: pd.DataFrame
    metrics: dict
    cerebro: bt.Cerebro = field(repr=False)
    strategy: bt.Strategy = field(repr=False)


def configure_broker(broker, cfg: Config) -> None:
    """Cash, commission and slippage: costs are on by default (see ``[costs]``)."""
    broker.setcash(cfg.backtest.cash)
    broker.setcommission(commission=cfg.costs.commission_bps / 1e4, commtype=bt.CommInfoBase.COMM_PERC,
                         stocklike=True, percabs=True)
    if cfg.costs.slippage_bps > 0:
        # slip_open: market orders at the open pay slippage too; slip_out: charge it even when the
        # slipped price falls outside the bar's range (capping it there would understate costs)
        broker.set_slippage_perc(cfg.costs.slippage_bps / 1e4, slip_open=True, slip_limit=True,
                                 slip_match=True, slip_out=True)


def trading_calendar(bars: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The union of every symbol's timestamps: the run's clock."""
    index = pd.DatetimeIndex([])
    for frame in bars.values():
        index = index.union(frame.index)
    return index


def build_cerebro(cfg: Config, feeds: list, broker, strategy_cls, *, session=None, runonce: bool = False,
                  progress_total: int | None = None, **strategy_kwargs) -> bt.Cerebro:
    """The Cerebro of every run, backtest, replay and live alike: the feeds, the broker, the strategy,
    and what every run draws and records (buy/sell marks, stop and target levels, and the orders,
    trades, positions and equity analyzers ``collect_records`` reads). ``session``: a live session or
    replay (``engine.live.LiveSession``): its feeds come bar by bar from its clock, and after each bar
    its recorder sends the bar's orders, then journals (``analyzers.live_session``), before the
    records. ``progress_total``: show a progress bar over that many bars."""
    live = session is not None
    cerebro = bt.Cerebro(stdstats=False, preload=not live, runonce=runonce and not live, optreturn=False, maxcpus=1)
    for feed in feeds:
        cerebro.adddata(feed)
    if live:
        cerebro.addstore(session.clock)
    cerebro.broker = broker
    cerebro.addstrategy(strategy_cls, cfg=cfg, **strategy_kwargs)
    if live:
        cerebro.addanalyzer(LiveSessionRecorder, _name="live_session", session=session)
    cerebro.addobservermulti(bt.observers.BuySell, barplot=True)
    cerebro.addobservermulti(StopTargetLevels)
    cerebro.addanalyzer(records.OrderLog, _name="orders")
    cerebro.addanalyzer(records.TradeLog, _name="trades")
    cerebro.addanalyzer(records.PositionLog, _name="positions")
    cerebro.addanalyzer(records.EquityLog, _name="equity")
    if progress_total is not None:
        cerebro.addanalyzer(records.Progress, _name="progress", total=progress_total)
    return cerebro


def backtest_cerebro(cfg: Config, bars: dict[str, pd.DataFrame], *, strategy_cls=None, progress: bool = False,
                     runonce: bool | None = None, **strategy_kwargs) -> bt.Cerebro:
    """:func:`build_cerebro` for a backtest: the bars preloaded, Backtrader's broker with the costs."""
    broker = bt.brokers.BackBroker()
    configure_broker(broker, cfg)
    return build_cerebro(cfg, [bars_to_feed(symbol, frame) for symbol, frame in bars.items()], broker,
                         strategy_cls or get_strategy(cfg.backtest.strategy),
                         runonce=cfg.backtest.runonce if runonce is None else runonce,
                         progress_total=len(trading_calendar(bars)) if progress else None,
                         **{"data_ends": data_ends(bars), **strategy_kwargs})


def data_ends(bars: dict[str, pd.DataFrame]) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """{symbol: (its second-to-last bar, its last bar)} for each symbol whose bars end before the
    run's last bar (a delisting): the strategy's ``data_ends``."""
    if not bars:
        return {}
    run_end = max(frame.index[-1] for frame in bars.values() if len(frame))
    return {symbol: (frame.index[-2].to_pydatetime(), frame.index[-1].to_pydatetime())
            for symbol, frame in bars.items() if len(frame) >= 2 and frame.index[-1] < run_end}


def collect_records(strategy, start: dt.date | None = None) -> RunRecords:
    a = strategy.analyzers
    orders = pd.DataFrame(a.orders.get_analysis(), columns=records.ORDER_COLUMNS)
    trades = pd.DataFrame(a.trades.get_analysis(), columns=records.TRADE_COLUMNS)
    positions = pd.DataFrame(a.positions.get_analysis(), columns=records.POSITION_COLUMNS)
    equity = pd.DataFrame(a.equity.get_analysis(), columns=["datetime", "equity", "cash"])
    if start is not None:
        # bars before --start only warm indicators up: nothing is traded there, nothing reported
        first = pd.Timestamp(start)
        positions = positions[pd.to_datetime(positions["datetime"]) >= first]
        equity = equity[pd.to_datetime(equity["datetime"]) >= first]
    equity = equity.reset_index(drop=True)
    equity["drawdown"] = stats.drawdown(equity["equity"]).to_numpy() if len(equity) else []
    orders = orders.sort_values(["datetime", "client_order_id"], kind="stable").reset_index(drop=True)
    trades = trades.sort_values(["entry_datetime", "symbol"], kind="stable").reset_index(drop=True)
    return RunRecords(orders=orders, trades=trades, positions=positions.reset_index(drop=True), equity=equity)


def walk_forward_section(cfg: Config, strategy, top_features: int = 25) -> dict | None:
    """The ``walk_forward`` section of metrics.json for a strategy that trains models walk-forward
    (its ``walk_forward()`` returns what it fitted): out-of-sample scores per fold and in all at the decision horizon
    beside the always-up and last-return baselines (``models.evaluation.evaluate``), the accuracy at
    every horizon, the cross-sectional evaluation at every horizon beside the momentum and reversal
    baselines (``cross_section``, with each fold's rank IC: ``models.factor_evaluation``), the mean
    feature importance and the configurations the searches tried."""
    got = strategy.walk_forward()
    if got is None:
        return None
    from common.jsonable import to_jsonable
    from models.evaluation import evaluate
    from models.factor_evaluation import cross_section

    result, data = got
    m = cfg.models
    section = evaluate(result.predictions, data.labels, data.close, m.decision_horizon, result.folds,
                       cfg.report.leak_alarm_accuracy, time_of=data.time_of)
    section["by_horizon"] = {}
    for h in m.horizons:
        scores = section if h == m.decision_horizon else evaluate(result.predictions, data.labels, data.close, h)
        section["by_horizon"][str(h)] = {key: scores[key] for key in
                                         ("directional_accuracy", "directional_accuracy_ci95", "auc", "ic", "samples")}
    section["cross_section"], fold_ics = cross_section(result.predictions, data.close, m.horizons, m.decision_horizon,
                                                       result.folds, cfg.report.quantiles, time_of=data.time_of)
    fold_ics = {f["fold"]: f for f in fold_ics}
    for row in section["folds"]:
        row.update(rank_ic=fold_ics[row["fold"]]["rank_ic"], rank_ic_t=fold_ics[row["fold"]]["rank_ic_t"])
    gains = [f.feature_importance for f in result.folds if f.feature_importance is not None]
    if gains:
        mean = np.mean(gains, axis=0)
        order = np.argsort(-mean, kind="stable")
        section["feature_importance"] = {data.feature_names[i]: float(mean[i]) for i in order[:top_features]}
        # the sentiment features' importance and rank among all, whether or not they made the top
        engine = getattr(getattr(strategy, "features", None), "engine", None)  # a registry model: no engine
        groups = engine.registry.groups if engine is not None else {}
        rank = {int(i): r for r, i in enumerate(order, start=1)}
        sentiment = {data.feature_names[i]: {"importance": float(mean[i]), "rank": rank[i]}
                     for i in range(len(mean)) if groups.get(data.feature_names[i]) == "sentiment"}
        if sentiment:
            section["sentiment_importance"] = {"features": sentiment, "of": int(len(mean))}
    section.update(models=list(result.base_names), retrains=len(result.folds),
                   n_configurations=int(result.n_configurations))
    return to_jsonable(section)


def compute_metrics(cfg: Config, bars: dict[str, pd.DataFrame], rec: RunRecords,
                    bh: pd.DataFrame, walk_forward: dict | None = None) -> dict:
    """Every figure of metrics.json: the strategy's at the top level, buy-and-hold's beside them,
    the active-return figures against buy-and-hold over the same bars (``excess_return``,
    ``tracking_error``, ``information_ratio`` with its bootstrap interval), and the models'
    out-of-sample evaluation (``walk_forward``) when the strategy trains models. The Sharpe ratio is
    deflated by every configuration tried (``n_trials``): the searches' configurations, the one finally
    used and ``report.configurations_tried`` (tried by hand on the reported period); for a strategy
    without models, only when that key counts any."""
    equity = rec.equity.set_index(pd.to_datetime(rec.equity["datetime"]))["equity"]
    strategy_figures = stats.return_metrics(equity)
    strategy_figures.update(stats.trade_metrics(rec.trades, n_days=strategy_figures["n_days"] + 1))
    strategy_figures.update(stats.exposure_and_turnover(rec.equity, rec.positions, rec.orders))
    strategy_figures["stops_and_targets"] = stats.stop_target_metrics(rec.trades)
    strategy_figures["slippage_paid"] = stats.slippage_paid(strategy_figures["traded_value"], cfg.costs.slippage_bps)
    strategy_figures["costs_paid"] = strategy_figures["commission_paid"] + strategy_figures["slippage_paid"]
    searched = 0 if walk_forward is None else walk_forward["n_configurations"]
    by_hand = cfg.report.configurations_tried
    n_trials = None if walk_forward is None and by_hand == 0 else searched + 1 + by_hand
    strategy_figures.update(stats.sharpe_uncertainty(equity, n_samples=cfg.report.bootstrap_samples,
                                                     seed=cfg.backtest.seed, n_trials=n_trials))
    strategy_figures.update(stats.active_return_metrics(equity, bh["equity"], n_samples=cfg.report.bootstrap_samples,
                                                        seed=cfg.backtest.seed))
    bh_figures = stats.return_metrics(bh["equity"])
    bh_figures.update(stats.sharpe_uncertainty(bh["equity"], n_samples=cfg.report.bootstrap_samples,
                                               seed=cfg.backtest.seed))
    return {
        "strategy": cfg.backtest.strategy,
        **strategy_figures,
        "buy_and_hold": bh_figures,
        **({"walk_forward": walk_forward} if walk_forward is not None else {}),
        "symbols": sorted(bars),
        "data_range": {"start": str(equity.index[0]), "end": str(equity.index[-1]), "bars": int(len(equity))},
        "seed": cfg.backtest.seed,
        "config_hash": config_hash(cfg),
        "config": results_config(cfg),
    }


def strategy_metrics(cfg: Config, bars: dict[str, pd.DataFrame], strategy, rec: RunRecords, bh: pd.DataFrame) -> dict:
    """metrics.json of a finished run (backtest or replay): ``compute_metrics`` with the models'
    walk-forward evaluation when the strategy trained any, and the kill switch's verdict if it tripped."""
    metrics = compute_metrics(cfg, bars, rec, bh, walk_forward_section(cfg, strategy))
    if strategy.halted:
        metrics["kill_switch"] = dict(strategy.halted)
    news = news_counts(strategy, metrics["data_range"])
    if news is not None:
        metrics["news"] = news
    return metrics


def news_counts(strategy, data_range: dict) -> dict | None:
    """How many headlines each symbol had over the run's bars (its features' news: ``data.news``);
    None when its features read no news."""
    engine = getattr(getattr(strategy, "features", None), "engine", None)
    book = getattr(engine, "news", None)
    if book is None:
        return None
    start, end = (pd.Timestamp(data_range[k]).as_unit("ns").value for k in ("start", "end"))
    end += pd.Timedelta(days=1).value  # the last day's headlines up to its close
    counts = {symbol: int(np.sum((times >= start) & (times < end))) for symbol, times in zip(engine.symbols, book.times)}
    return {"headlines": counts, "total": int(sum(counts.values())),
            "symbols_without": sorted(s for s, n in counts.items() if n == 0)}


def run_backtest(cfg: Config, bars: dict[str, pd.DataFrame], *, strategy_cls=None,
                 runonce: bool | None = None, **strategy_kwargs) -> BacktestResult:
    """Run the configured strategy on validated bars; records and metrics, nothing written."""
    show_progress = cfg.backtest.progress and sys.stderr.isatty()
    cerebro = backtest_cerebro(cfg, bars, strategy_cls=strategy_cls, progress=show_progress, runonce=runonce,
                               **strategy_kwargs)
    return run_result(cfg, bars, cerebro, cerebro.run()[0])


def run_result(cfg: Config, bars: dict[str, pd.DataFrame], cerebro: bt.Cerebro, strategy) -> BacktestResult:
    """What every finished run on recorded bars returns (a backtest, a replay): its records from
    ``backtest.start`` on, buy-and-hold over the same bars, and its metrics."""
    rec = collect_records(strategy, cfg.backtest.start)
    calendar = pd.DatetimeIndex(pd.to_datetime(rec.equity["datetime"]))
    bh = stats.buy_and_hold(bars, cfg.backtest.cash, commission_bps=cfg.costs.commission_bps,
                            slippage_bps=cfg.costs.slippage_bps, calendar=calendar)
    metrics = strategy_metrics(cfg, bars, strategy, rec, bh)
    return BacktestResult(cfg=cfg, symbols=sorted(bars), records=rec, buy_and_hold=bh, metrics=metrics,
                          cerebro=cerebro, strategy=strategy)
