"""Run a strategy live (Alpaca) or in replay (recorded bars, simulated venue): the same Cerebro.

Both build the backtest's strategy, observers and recording analyzers, with live feeds in step
(``feeds.live_feed``), the :class:`brokers.live_broker.LiveBroker` and a journal. A replay's records,
metrics and report are the backtest's, from the same code (``engine.backtest``, ``reports.writer``).

Live, a session is: history bars warm the strategy up (no decisions), then it trades; after each bar
the strategy's state is saved in the journal (:class:`StateKeeper`): its open-position plans with their
orders' client ids, and every other order it has in flight (an exit, a partial sale) (:func:`snapshot`),
plus ``strategy.export_state()`` when the strategy has one (the kill switch, the daily loss limit). On
a restart, the broker reconciles with the venue before any bar is released or the bar stream subscribed
(``LiveBroker.reconcile``); the state is restored before the first bar after the saved one
(:func:`restore`), the broker hands back the orders by id with what they did meanwhile, and the latest
unprocessed bars, if fresh, are decided again: the deterministic client ids make that idempotent.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from analyzers import stats
from brokers.journal import Journal, sqlite_url
from brokers.live_broker import LiveBroker, OrderFlush, adopt_venue_positions
from common.errors import UserError
from config import Config
from engine.backtest import (BacktestResult, add_observers_and_records, collect_records, data_ends,
                             strategy_metrics, trading_calendar)
from engine.compat import bt
from feeds.alpaca_feed import INTERVALS
from feeds.live_feed import BarClock, BarGroup, ReplaySource, make_feeds, timeframe_of
from strategies import get_strategy

log = logging.getLogger("live")

_BLOCKED = dt.datetime.max  # a trade_start no bar reaches: warm-up only


# ---- the strategy's state ------------------------------------------------------------------------
def snapshot(strategy) -> dict:
    """What a restarted process needs to carry on: each open-position plan with its orders' client
    ids, the stop/target levels, and ``strategy.export_state()`` if the strategy defines it."""
    state: dict = {}
    plans = getattr(strategy, "positions_plan", None)
    if plans is not None:
        state["plans"] = [_plan_state(plan) for plan in plans.values()]
        state["stop_levels"] = dict(strategy.stop_levels)
        state["target_levels"] = dict(strategy.target_levels)
        # exits and partial sales: restored, they tell the strategy of their fills like any order
        planned = {cid for plan in state["plans"] for cid in (plan["entry_order"], *plan["children"])}
        state["orders"] = [cid for cid in strategy.broker.in_flight() if cid not in planned]
    if hasattr(strategy, "export_state"):
        state["strategy"] = strategy.export_state()
    return state


def _plan_state(plan) -> dict:
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    fields["entry_order"] = plan.entry_order.info.get("client_order_id")
    fields["children"] = [c.info.get("client_order_id") for c in plan.children]
    fields["entry_datetime"] = plan.entry_datetime.isoformat() if plan.entry_datetime else None
    fields["extra"] = {k: v for k, v in plan.extra.items() if _jsonable(v)}
    return fields


def _jsonable(value) -> bool:
    return value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def restore(strategy, state: dict, broker: LiveBroker) -> None:
    """Put a :func:`snapshot` back into a freshly built strategy; its orders come back from the broker
    by client id, with what happened to them since as ordinary notifications."""
    from strategies.base import OpenPosition

    for fields in state.get("plans", []):
        entry = broker.claim(fields["entry_order"], strategy)
        if entry is None:
            log.warning("plan for %s not restored: the broker has no order %s", fields["symbol"],
                        fields["entry_order"])
            continue
        children = [broker.claim(cid, strategy) for cid in fields["children"]]
        restored = dict(fields, entry_order=entry, children=[c for c in children if c is not None])
        if fields["entry_datetime"]:
            restored["entry_datetime"] = dt.datetime.fromisoformat(fields["entry_datetime"])
        strategy.positions_plan[fields["symbol"]] = OpenPosition(**restored)
    others = [order for order in (broker.claim(cid, strategy) for cid in state.get("orders", [])) if order is not None]
    for symbol, plan in strategy.positions_plan.items():
        if plan.exiting and not any(o.data._name == symbol and o.issell() for o in others):
            # its exit never reached the broker (it waited for a cancel when the process died): decided again
            log.warning("the exit of %s was not sent before the restart: the strategy decides it again", symbol)
            plan.exiting = False
    if "stop_levels" in state:
        strategy.stop_levels.update(state["stop_levels"])
        strategy.target_levels.update(state["target_levels"])
    if "strategy" in state and hasattr(strategy, "import_state"):
        strategy.import_state(state["strategy"])
    log.info("strategy state restored: %d open position plan(s)", len(state.get("plans", [])))


class StateKeeper(bt.Analyzer):
    """After each bar: the journal records equity, positions and the strategy's state."""

    params = (("session", None),)

    def next(self):
        self.p.session.after_bar(self.strategy)


# ---- one run of Cerebro on live feeds --------------------------------------------------------------
@dataclass
class TradePolicy:
    """Which released bars the strategy trades on a live start (the rest only warm it up): live bars,
    and history bars after the last saved state that are fresh (``fresh(bar datetime)``)."""

    last_processed: dt.datetime | None  # the journal's last bar with a saved state
    fresh: Callable[[dt.datetime], bool]

    def trades(self, group: BarGroup) -> bool:
        if group.live:
            return True
        after_saved = self.last_processed is None or group.datetime > self.last_processed
        return after_saved and self.fresh(group.datetime)


class LiveSession:
    """Cerebro with live feeds, the live broker, the strategy and the recorders, for one run."""

    def __init__(self, cfg: Config, strategy_cls, clock: BarClock, venue, journal: Journal, symbols: list[str],
                 timeframe: dict, *, name: str, order_id_prefix: str, commission_bps: float,
                 sync_seconds: float | None = None, entry_gate: Callable[[], str | None] | None = None,
                 policy: TradePolicy | None = None, saved: tuple[dt.datetime, dict] | None = None,
                 strategy_kwargs: dict | None = None):
        self.cfg, self.strategy_cls, self.clock, self.journal = cfg, strategy_cls, clock, journal
        self.name, self.order_id_prefix, self.policy, self.saved = name, order_id_prefix, policy, saved
        self.strategy = None
        self.model: str | None = None  # the registry model this deployment runs (set by the runner)
        self.trading = policy is None
        self.trading_from: dt.datetime | None = None
        self._started = False
        self._restored = saved is None
        self.cerebro = bt.Cerebro(stdstats=False, preload=False, runonce=False, optreturn=False, maxcpus=1)
        for data in make_feeds(clock, symbols, timeframe):
            self.cerebro.adddata(data)
        self.cerebro.addstore(clock)
        if hasattr(venue, "wakeup"):
            venue.wakeup = clock.wake  # a fill is handled at once, not at the next bar or poll
        self.broker = LiveBroker(venue=venue, journal=journal, commission_bps=commission_bps,
                                 sync_seconds=sync_seconds, sync_order_lookups=cfg.live.sync_order_lookups,
                                 sync_recheck_seconds=cfg.live.sync_recheck_seconds,
                                 entry_gate=entry_gate, order_id_prefix=order_id_prefix,
                                 cancel_wait_seconds=cfg.live.cancel_wait_seconds, bar_waiting=clock.bar_waiting,
                                 on_reconciled=clock.go_live)
        self.cerebro.broker = self.broker
        self.cerebro.addstrategy(strategy_cls, cfg=cfg, **(strategy_kwargs or {}))
        # the backtest's observers and recorders (engine.backtest.build_cerebro)
        self.cerebro.addanalyzer(OrderFlush, _name="order_flush")
        add_observers_and_records(self.cerebro)
        self.cerebro.addanalyzer(StateKeeper, _name="state", session=self)
        clock.add_listener(self._on_release)
        self._collected = False

    def run(self):
        switch = sys.getswitchinterval()
        sys.setswitchinterval(self.cfg.live.thread_switch_seconds)
        try:
            self.strategy = self.cerebro.run()[0]
        finally:
            sys.setswitchinterval(switch)
            gc.unfreeze()
        if self.broker.unsent_at_start:
            self.broker.abandon_unsent()
        return self.strategy

    def _on_release(self, group: BarGroup) -> None:
        """Before a timestamp's bars reach the strategy: set it up, restore its state, start trading."""
        strategy = self.strategy or self.cerebro.runningstrats[0]
        self.strategy = strategy
        self.broker.bar_in_progress = True
        if not self._started:
            self._started = True
            strategy.order_id_prefix = self.order_id_prefix
            strategy.live_model = self.model
            if self.policy is not None:
                strategy.trade_start = _BLOCKED
        if not self._restored and group.datetime > self.saved[0]:
            self._restored = True
            restore(strategy, self.saved[1], self.broker)
        if not self.trading and self.policy.trades(group):
            self.trading = True
            self.trading_from = group.datetime
            # Backtrader's float clock can read a hair before the bar's time
            strategy.trade_start = group.datetime - dt.timedelta(milliseconds=1)
            log.info("trading from the bar of %s (%s)", group.datetime, "live" if group.live else "catch-up")
        if group.live and self.broker.unsent_at_start:
            self.broker.abandon_unsent()

    def after_bar(self, strategy) -> None:
        broker = self.broker
        broker.bar_in_progress = False
        now = strategy.now
        if now is None:
            return
        holdings = [(d._name, p.size, p.price, d.close[0]) for d, p in broker.positions.items() if p.size]
        with self.journal.batch():
            self.journal.record_bar(now, equity_value=broker.getvalue(), cash=broker.getcash(), holdings=holdings)
            if self.trading and self._restored:
                self.journal.save_state(self.name, now, snapshot(strategy))
        # housekeeping now, with the bar's orders sent, rather than in the middle of the next bar's
        self.journal.checkpoint()
        self._tidy_heap()

    def _tidy_heap(self) -> None:
        """Collect the young generations, then freeze what survived (``gc.freeze``). What lives on
        (bars, indicator buffers, orders, records) then never enters the collector's full passes,
        which otherwise grow with the session and pause whatever runs when one falls due, a bar's
        orders included, for 50-200 ms. Only garbage cycles that outlive a bar are kept until the
        session ends (``run`` unfreezes)."""
        if not self._collected:
            self._collected = True
            gc.collect()  # once: what imports and set-up left behind
        gc.collect(1)
        gc.freeze()


# ---- replay ------------------------------------------------------------------------------------------
def run_replay(cfg: Config, bars: dict[str, pd.DataFrame], *, strategy_cls=None, bars_per_second: float = 0.0,
               journal_url: str | None = None, journal_dir: Path | None = None, model: str | None = None,
               **strategy_kwargs) -> BacktestResult:
    """The live path (live feeds, live broker, journal) on recorded bars against the simulated venue,
    with the backtest's cash and costs. Returns what ``run_backtest`` returns, from the same code.
    model: the registry model the strategy trades ("NAME@id", as ``run.py live --model`` resolves it)."""
    from brokers.sim_venue import SimulatedVenue

    strategy_cls = strategy_cls or get_strategy(cfg.backtest.strategy)
    if journal_url is None:
        path = Path(journal_dir or ".") / "journal.sqlite"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # a replay starts from an empty account: a fresh journal
        journal_url = sqlite_url(path)
    journal = Journal(journal_url, sqlite_synchronous=cfg.live.sqlite_synchronous)
    venue = SimulatedVenue.from_config(cfg)
    clock = BarClock(ReplaySource(bars, bars_per_second), poll_seconds=cfg.live.poll_seconds)
    clock.add_listener(venue.on_bars)
    calendar = trading_calendar(bars)
    session = LiveSession(cfg, strategy_cls, clock, venue, journal, sorted(bars), timeframe_of(calendar),
                          name=f"replay-{cfg.backtest.strategy}", order_id_prefix="",
                          commission_bps=cfg.costs.commission_bps,
                          strategy_kwargs={"data_ends": data_ends(bars), **strategy_kwargs})
    session.model = model
    try:
        strategy = session.run()
    finally:
        journal.close()
    rec = collect_records(strategy, cfg.backtest.start)
    bh = stats.buy_and_hold(bars, cfg.backtest.cash, commission_bps=cfg.costs.commission_bps,
                            slippage_bps=cfg.costs.slippage_bps,
                            calendar=pd.DatetimeIndex(pd.to_datetime(rec.equity["datetime"])))
    metrics = strategy_metrics(cfg, bars, strategy, rec, bh)
    metrics["mode"] = "replay"
    return BacktestResult(cfg=cfg, symbols=sorted(bars), records=rec, buy_and_hold=bh, metrics=metrics,
                          cerebro=session.cerebro, strategy=strategy)


# ---- live on Alpaca ---------------------------------------------------------------------------------
def _warmup_needs(cfg: Config, strategy_cls, model: str | None) -> list[tuple[int, str, bool]]:
    """(history bars, what needs them, whether a registry model spares them) for each warm-up of a
    live start; see :func:`warmup_needed`."""
    from features.registry import build_registry
    from features.sources import macro_name

    registry = build_registry(has_news=bool(cfg.data.news), has_sectors=bool(cfg.data.sector_map),
                              has_macro=sorted(macro_name(path) for path in cfg.data.macro) or False,
                              config=cfg.features)
    longest = max(registry, key=lambda feature: feature.warmup)
    name = cfg.backtest.strategy
    needs = [(longest.warmup, f"the feature {longest.name}", False),
             (strategy_cls.required_bars(cfg), f"the strategy {name}", False)]
    training = getattr(strategy_cls, "bars_before_first_training", None)
    if model is None and training is not None:
        needs.append((training(cfg, registry), f"the strategy {name} (training its own model first: "
                                               f"models.train_bars = {cfg.models.train_bars} bars after its "
                                               f"features' warm-up)", True))
    return needs


def warmup_needed(cfg: Config, strategy_cls, *, model: str | None = None) -> tuple[int, str]:
    """History bars a live start needs for its first live bar to be decided as a backtest decides it,
    and what needs them: the longest warm-up of the feature registry this config builds (its inputs
    as configured; no file is read), the strategy's own warm-up, or, for a strategy that trains its
    own model when no registry ``model`` is given (``strategy_cls.bars_before_first_training``), the
    bars before its first training, whichever is longest."""
    needed, who, _ = max(_warmup_needs(cfg, strategy_cls, model), key=lambda need: need[0])
    return needed, who


def check_warmup_bars(cfg: Config, strategy_cls, *, model: str | None = None) -> None:
    """UserError unless ``live.warmup_bars`` covers :func:`warmup_needed` (``model``: the registry
    model given with ``--model``, if any): with fewer history bars the first live bars are decided on
    features still warming up, unlike the backtest's, or, for a strategy that must first train its
    own model, not decided at all for many bars."""
    needed, who, spared_by_model = max(_warmup_needs(cfg, strategy_cls, model), key=lambda need: need[0])
    if cfg.live.warmup_bars < needed:
        alternative = (", or trade a registry model with --model NAME (trained with `python run.py train --out "
                       "models/registry/NAME`)") if spared_by_model else ""
        raise UserError(f"live.warmup_bars = {cfg.live.warmup_bars} is too short: {who} needs {needed} bars of "
                        f"history before the first live bar; set live.warmup_bars to at least {needed}{alternative}")


_FEED_TIMEFRAMES = {"1Min": {"timeframe": bt.TimeFrame.Minutes, "compression": 1},
                    "1Day": {"timeframe": bt.TimeFrame.Days, "compression": 1}}


class LiveRunner:
    """Sessions of live trading on Alpaca, paced by the market calendar.

    ``1Min``: a session starts ``prewarm_minutes`` before the open (history warm-up, reconciliation)
    and streams bars until the close. ``1Day``: a session runs ``daily_bar_delay_seconds`` after each
    close on history that ends with the day's bar. Between sessions the runner sleeps; after each it
    writes the session's records under ``state_dir/sessions/`` and, every ``retrain_every_days``, calls
    the strategy's ``retrain_now()`` if it has one. Each session starts like a restart: everything
    comes back from the journal and the broker.
    """

    def __init__(self, cfg: Config, *, strategy_cls, symbols: list[str], credentials, paper: bool,
                 journal: Journal, state_dir: Path, model: str | None = None, stop_event=None,
                 adopt_positions: bool = False):
        import threading

        from brokers.alpaca_store import AlpacaStore
        from brokers.alpaca_venue import AlpacaVenue
        from brokers.calendar import MarketCalendar

        check_warmup_bars(cfg, strategy_cls, model=model)
        self.cfg, self.live = cfg, cfg.live
        self.strategy_cls, self.symbols, self.journal, self.state_dir = strategy_cls, symbols, journal, state_dir
        self.model = model
        self.adopt_positions = adopt_positions
        self.stop_event = stop_event or threading.Event()
        self.calendar = MarketCalendar(self.live.calendar)
        self.store = AlpacaStore(credentials, self.live, paper=paper)
        self.venue = AlpacaVenue(self.store, self.calendar.tz)
        self.prefix = self.live.order_id_prefix or f"{cfg.backtest.strategy}-"
        self.name = f"{self.prefix}{cfg.backtest.strategy}"
        self.clock: BarClock | None = None
        self.sessions = 0

    def stop(self) -> None:
        """End the run at the next bar (from a signal handler or another thread)."""
        self.stop_event.set()
        if self.clock is not None:
            self.clock.request_stop()

    def run(self, max_sessions: int | None = None) -> None:
        account = self.venue.account()  # fails fast, after retries, when Alpaca cannot be reached
        log.info("Alpaca %s account: cash %.2f, equity %.2f; %d symbols, %s bars, journal %s",
                 "paper" if self.store.paper else "LIVE-MONEY", account.cash, account.equity, len(self.symbols),
                 self.live.timeframe, self.journal._safe_url())
        if self.model:
            self.journal.set_meta("model", self.model)
        if self.adopt_positions:
            adopt_venue_positions(self.venue, self.journal)
        self.venue.start()
        try:
            while not self.stop_event.is_set():
                due = self._next_session()
                if due is not None:
                    self._sleep_until(due)
                    continue
                self._session()
                self.sessions += 1
                if max_sessions is not None and self.sessions >= max_sessions:
                    break
        finally:
            self.venue.stop()

    def _next_session(self) -> pd.Timestamp | None:
        """None if a session should run now, else when one should."""
        now = self.calendar.now()
        if self.live.timeframe == "1Day":
            close = self.calendar.last_close(now)
            ready = close + pd.Timedelta(seconds=self.live.daily_bar_delay_seconds)
            if now >= ready and self.journal.get_meta("last_daily_close") != close.isoformat():
                return None
            following = self.calendar.next_close(now)
            return ready if now < ready else following + pd.Timedelta(seconds=self.live.daily_bar_delay_seconds)
        prewarm = pd.Timedelta(minutes=self.live.prewarm_minutes)
        if self.calendar.is_open(now) or self.calendar.next_open(now) - now <= prewarm:
            return None
        return self.calendar.next_open(now) - prewarm

    def _sleep_until(self, when: pd.Timestamp) -> None:
        seconds = max(0.0, (when - self.calendar.now()).total_seconds())
        log.info("market closed: sleeping until %s", when.tz_convert(self.calendar.tz))
        self.stop_event.wait(seconds)

    def _session(self) -> None:
        from feeds.alpaca_feed import AlpacaBarSource

        live, calendar = self.live, self.calendar
        now = calendar.now()
        streaming = live.timeframe == "1Min"
        end = calendar.next_close(now) if streaming else None
        source = AlpacaBarSource(self.store, self.symbols, calendar, live,
                                 history_start=calendar.history_start(now, live.warmup_bars, live.timeframe), end=end,
                                 stream=streaming)
        saved = self.journal.load_state(self.name)
        horizon = now - pd.Timedelta(INTERVALS[live.timeframe] * live.max_catchup_bars)

        def fresh(bar_datetime) -> bool:  # completed within the last max_catchup_bars bar lengths
            return live.max_catchup_bars > 0 and calendar.bar_end(bar_datetime, live.timeframe) >= horizon

        policy = TradePolicy(last_processed=saved[0] if saved else None, fresh=fresh)
        self.clock = BarClock(source, poll_seconds=live.poll_seconds)
        if self.stop_event.is_set():
            return
        session = LiveSession(self.cfg, self.strategy_cls, self.clock, self.venue, self.journal, self.symbols,
                              _FEED_TIMEFRAMES[live.timeframe], name=self.name, order_id_prefix=self.prefix,
                              commission_bps=live.commission_bps, sync_seconds=live.order_sync_seconds,
                              entry_gate=source.stale_reason, policy=policy, saved=saved)
        session.model = self.model
        log.info("session: warm-up from %s%s", calendar.local(source.history_start),
                 f", streaming until {calendar.local(end)}" if end is not None else "")
        strategy = session.run()
        if not streaming:
            self.journal.set_meta("last_daily_close", calendar.last_close(now).isoformat())
        self._after_session(strategy, session)

    def _after_session(self, strategy, session: "LiveSession") -> None:
        from reports.writer import write_metrics, write_records

        rec = collect_records(strategy)
        if session.trading_from is not None:
            first = pd.Timestamp(session.trading_from)
            rec.positions = rec.positions[pd.to_datetime(rec.positions["datetime"]) >= first]
            rec.equity = rec.equity[pd.to_datetime(rec.equity["datetime"]) >= first]
        out = self.state_dir / "sessions" / f"{self.calendar.local(self.calendar.now()):%Y%m%d-%H%M%S}"
        out.mkdir(parents=True, exist_ok=True)
        write_records(out, rec)
        equity = rec.equity["equity"]
        summary = {"strategy": self.cfg.backtest.strategy, "traded_from": str(session.trading_from or ""),
                   "bars": int(len(equity)), "start_equity": float(equity.iloc[0]) if len(equity) else None,
                   "end_equity": float(equity.iloc[-1]) if len(equity) else None,
                   "orders": int(len(rec.orders)), "filled": int((rec.orders["status"] == "completed").sum()),
                   "rejected": int(rec.orders["status"].isin(["rejected", "margin"]).sum()),
                   "closed_trades": int((rec.trades["exit_reason"] != "end").sum()) if len(rec.trades) else 0,
                   "cash": session.broker.getcash(), "value": session.broker.getvalue(), "model": self.model}
        write_metrics(out / "summary.json", summary)
        log.info("session over: %d orders, equity %s; records in %s", summary["orders"], summary["end_equity"], out)
        self._maybe_retrain(strategy)

    def _maybe_retrain(self, strategy) -> None:
        every = self.live.retrain_every_days
        if not every or not hasattr(strategy, "retrain_now"):
            return
        today = self.calendar.local(self.calendar.now()).date()
        last = self.journal.get_meta("last_retrain")
        if last is None or (today - dt.date.fromisoformat(last)).days >= every:
            log.info("retraining (every %d days)", every)
            strategy.retrain_now()
            self.journal.set_meta("last_retrain", today.isoformat())
