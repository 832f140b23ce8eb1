"""Run a strategy live (Alpaca) or in replay (recorded bars, simulated venue): the same Cerebro.

Both assemble the backtest's Cerebro (``engine.backtest.build_cerebro``: the strategy, observers and
recording analyzers) with live feeds in step (``feeds.live_feed``), the
:class:`brokers.live.broker.LiveBroker` and a journal. A replay's records, metrics and report are the
backtest's, from the same code (``engine.backtest.run_result``, ``reports.writer``).

Live, a session is: history bars warm the strategy up (no decisions: its ``TradeGate`` is shut),
then it trades; after each bar the broker sends the bar's orders, then the journal records the bar
and the strategy's state (``analyzers.live_session.LiveSessionRecorder``, ``strategy.save_state``).
On a restart, the broker reconciles with the venue before any bar is released or the bar stream
subscribed (``LiveBroker.reconcile``); the state is restored before the first bar after the saved
one (``strategy.restore_state``), the broker hands back the orders by id with what they did
meanwhile, and the latest unprocessed bars, if fresh, are decided again: the deterministic client
ids make that idempotent.

An operator's controls (``ops.controls``: pause, resume, reset_kill_switch, flatten, from the journal)
are applied at the top of each traded bar, before the strategy decides; a pause is restored at start.
"""
from __future__ import annotations

import datetime as dt
import gc
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from brokers.alpaca.data import INTERVALS
from brokers.journal import Journal, journal_options, sqlite_url
from brokers.live.broker import LiveBroker
from brokers.live.reconcile import adopt_venue_positions
from common.errors import UserError
from config import Config
from engine.backtest import BacktestResult, build_cerebro, collect_records, data_ends, run_result, trading_calendar
from engine.compat import bt
from feeds.live_feed import BarClock, BarGroup, ReplaySource, make_feeds, timeframe_of
from ops.controls import ControlDesk
from ops.observer import Observers
from ops.status import JournalStatus
from strategies import get_strategy
from strategies.base import TradeGate

log = logging.getLogger("live")


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
    """One run on live feeds: the run's Cerebro (``build_cerebro``) with the live broker, for a
    strategy that trades from the bar its ``policy`` says (None: every bar, as a replay), after
    restoring the ``saved`` state (the journal's (bar datetime, state), None: a fresh start).
    ``observers``: told of each bar received and decided, and of the broker's orders (metrics, alerts).
    ``news``: the session's ``engine.live_news.LiveNews`` (live, when the features read news): its
    headlines reach the strategy's feature engine at each bar's release, on this thread."""

    def __init__(self, cfg: Config, strategy_cls, clock: BarClock, venue, journal: Journal, symbols: list[str],
                 timeframe: dict, *, name: str, order_id_prefix: str, commission_bps: float,
                 sync_seconds: float | None = None, entry_gate: Callable[[], str | None] | None = None,
                 policy: TradePolicy | None = None, saved: tuple[dt.datetime, dict] | None = None,
                 strategy_kwargs: dict | None = None, observers: Observers | None = None, news=None):
        self.cfg, self.clock, self.journal = cfg, clock, journal
        self.news = news  # engine.live_news.LiveNews when the features read news (live), else None
        # None without observers: then the bar loop builds no snapshot and times nothing
        self.observers = observers if observers is not None and observers.observers else None
        self.released_at = 0.0  # time.perf_counter() when the clock released the current bar
        self.day: dt.date | None = None
        self.day_start_equity: float | None = None  # equity after the day's first bar (daily P&L)
        self.open_order_ids: set[str] = set()  # the broker's orders not final at the last bar (metrics)
        self.orders_seen = 0  # of the broker's tracked orders, those looked at so far
        self.name, self.policy, self.saved = name, policy, saved
        self.strategy = None
        self.trading = policy is None
        self.trading_from: dt.datetime | None = None
        self._restored = saved is None
        self.broker = LiveBroker(venue=venue, journal=journal, commission_bps=commission_bps,
                                 sync_seconds=sync_seconds, sync_order_lookups=cfg.live.sync_order_lookups,
                                 sync_recheck_seconds=cfg.live.sync_recheck_seconds,
                                 entry_gate=entry_gate, order_id_prefix=order_id_prefix,
                                 cancel_wait_seconds=cfg.live.cancel_wait_seconds, bar_waiting=clock.bar_waiting,
                                 on_reconciled=clock.go_live, observers=self.observers)
        # the operator's controls: a pause restored now (before the broker's first order), the rest at traded bars
        self.controls = ControlDesk(journal, self.broker.halts, symbols)
        # shut through the warm-up when a policy decides the first bar traded (_on_release opens it)
        self.trade_gate = TradeGate() if policy is not None else None
        self.cerebro = build_cerebro(cfg, make_feeds(clock, symbols, timeframe), self.broker, strategy_cls,
                                     session=self, order_id_prefix=order_id_prefix, trade_gate=self.trade_gate,
                                     **(strategy_kwargs or {}))
        clock.add_listener(self._on_release)
        if self.observers is not None:
            self.observers.session_started(name, list(symbols))

    @property
    def saves_state(self) -> bool:
        """Whether the bar just decided leaves a state to save: a trading strategy, restored."""
        return self.trading and self._restored

    def run(self):
        switch = sys.getswitchinterval()
        sys.setswitchinterval(self.cfg.live.thread_switch_seconds)
        try:
            self.strategy = self.cerebro.run()[0]
        finally:
            sys.setswitchinterval(switch)
            gc.unfreeze()
            if self.observers is not None:
                self.observers.session_ended(self.name)
        if self.broker.unsent_at_start:
            self.broker.abandon_unsent()
        return self.strategy

    def _on_release(self, group: BarGroup) -> None:
        """Before a timestamp's bars reach the strategy: restore its state, start trading."""
        self.released_at = time.perf_counter()
        if self.observers is not None:
            wall_time = time.time()
            for symbol, bar in group.bars.items():
                self.observers.bar_received(symbol, bar.datetime, wall_time)
        strategy = self.strategy = self.strategy or self.cerebro.runningstrats[0]
        strategy.controls = self.controls  # applied by the strategy once it trades (PortfolioStrategy.next)
        if self.news is not None:  # the headlines that came meanwhile, before the features update
            self.news.release(strategy, group.datetime)
        self.broker.bar_in_progress = True
        if not self._restored and group.datetime > self.saved[0]:
            self._restored = True
            strategy.restore_state(self.saved[1], lambda client_order_id: self.broker.claim(client_order_id, strategy))
        if not self.trading and self.policy.trades(group):
            self.trading = True
            self.trading_from = group.datetime
            self.trade_gate.open_at(group.datetime)
            log.info("trading from the bar of %s (%s)", group.datetime, "live" if group.live else "catch-up")
        if group.live and self.broker.unsent_at_start:
            self.broker.abandon_unsent()


# ---- replay ------------------------------------------------------------------------------------------
def run_replay(cfg: Config, bars: dict[str, pd.DataFrame], *, strategy_cls=None, bars_per_second: float = 0.0,
               journal_url: str | None = None, journal_dir: Path | None = None, model: str | None = None,
               observers: Observers | None = None, **strategy_kwargs) -> BacktestResult:
    """The live path (live feeds, live broker, journal) on recorded bars against the simulated venue,
    with the backtest's cash and costs. Returns what ``run_backtest`` returns, from the same code.
    model: the registry model the strategy trades ("NAME@id", as ``run.py live --model`` resolves it).
    observers: told of each bar and order as live (``ops.observer``)."""
    from brokers.sim_venue import SimulatedVenue

    strategy_cls = strategy_cls or get_strategy(cfg.backtest.strategy)
    if journal_url is None:
        path = Path(journal_dir or ".") / "journal.sqlite"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # a replay starts from an empty account: a fresh journal
        journal_url = sqlite_url(path)
    journal = Journal(journal_url, **journal_options(cfg.live))
    venue = SimulatedVenue.from_config(cfg)
    clock = BarClock(ReplaySource(bars, bars_per_second), poll_seconds=cfg.live.poll_seconds)
    clock.add_listener(venue.on_bars)
    calendar = trading_calendar(bars)
    session = LiveSession(cfg, strategy_cls, clock, venue, journal, sorted(bars), timeframe_of(calendar),
                          name=f"replay-{cfg.backtest.strategy}", order_id_prefix="",
                          commission_bps=cfg.costs.commission_bps,
                          strategy_kwargs={"data_ends": data_ends(bars), **_model_param(model), **strategy_kwargs},
                          observers=observers)
    try:
        strategy = session.run()
    finally:
        journal.close()
    result = run_result(cfg, bars, session.cerebro, strategy)
    result.metrics["mode"] = "replay"
    return result


def _model_param(model: str | None) -> dict:
    """The strategy's ``model`` parameter when a registry model is given (only a strategy that trains
    models has one: ``run.py live --model`` refuses it for the others)."""
    return {} if model is None else {"model": model}


# ---- live on Alpaca ---------------------------------------------------------------------------------
def _warmup_needs(cfg: Config, strategy_cls, model: str | None) -> list[tuple[int, str, bool]]:
    """(history bars, what needs them, whether a registry model spares them) for each warm-up of a
    live start; see :func:`warmup_needed`."""
    from features.from_config import registry_from_config

    registry = registry_from_config(cfg)
    longest = max(registry, key=lambda feature: feature.warmup)
    name = cfg.backtest.strategy
    needs = [(longest.warmup, f"the feature {longest.name}", False),
             (strategy_cls.required_bars(cfg), f"the strategy {name}", False)]
    training = None if model is not None else strategy_cls.bars_before_first_training(cfg, registry)
    if training is not None:
        needs.append((training, f"the strategy {name} (training its own model first: "
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
    the strategy's ``retrain_now()`` if it trains models. Each session starts like a restart: everything
    comes back from the journal and the broker.
    """

    def __init__(self, cfg: Config, *, strategy_cls, symbols: list[str], credentials, paper: bool,
                 journal: Journal, state_dir: Path, model: str | None = None, stop_event=None,
                 adopt_positions: bool = False, observers: Observers | None = None):
        import threading

        from brokers.alpaca.calendar import MarketCalendar
        from brokers.alpaca.execution import AlpacaVenue
        from brokers.alpaca.store import AlpacaStore

        check_warmup_bars(cfg, strategy_cls, model=model)
        self.cfg, self.live = cfg, cfg.live
        self.strategy_cls, self.symbols, self.journal, self.state_dir = strategy_cls, symbols, journal, state_dir
        self.model = model
        self.adopt_positions = adopt_positions
        # the session's state in the journal, for `run.py dashboard`: always, whoever else observes
        self.status = JournalStatus(journal, cfg.dashboard.status_seconds)
        self.observers = observers if observers is not None else Observers()
        self.observers.add(self.status)
        self.stop_event = stop_event or threading.Event()
        self.calendar = MarketCalendar(self.live.calendar)
        self.store = AlpacaStore(credentials, self.live, paper=paper, observers=self.observers)
        self.venue = AlpacaVenue(self.store, self.calendar.tz)
        self.prefix = self.live.order_id_prefix or f"{cfg.backtest.strategy}-"
        self.name = f"{self.prefix}{cfg.backtest.strategy}"
        self.clock: BarClock | None = None
        self.sessions = 0
        from features.from_config import registry_from_config

        # the features read news (data.news configured): the session streams and journals headlines
        self.reads_news = registry_from_config(cfg).context.has_news
        self.news = None  # the current session's engine.live_news.LiveNews

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
            self.status.close()  # its last write (ended), before the caller closes the journal

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
        self.status.market_closed(f"{when.tz_convert(self.calendar.tz):%Y-%m-%d %H:%M %Z}")
        self.stop_event.wait(seconds)

    def _session(self) -> None:
        from brokers.alpaca.data import AlpacaBarSource

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
        self.venue.wakeup = self.clock.wake  # a fill is handled at once, not at the next bar or poll
        news, news_source = self._start_news(source.history_start) if self.reads_news else (None, None)
        try:
            session = LiveSession(self.cfg, self.strategy_cls, self.clock, self.venue, self.journal, self.symbols,
                                  _FEED_TIMEFRAMES[live.timeframe], name=self.name, order_id_prefix=self.prefix,
                                  commission_bps=live.commission_bps, sync_seconds=live.order_sync_seconds,
                                  entry_gate=source.stale_reason, policy=policy, saved=saved,
                                  strategy_kwargs=_model_param(self.model), observers=self.observers, news=news)
            self.news = news
            log.info("session: warm-up from %s%s", calendar.local(source.history_start),
                     f", streaming until {calendar.local(end)}" if end is not None else "")
            strategy = session.run()
        finally:
            if news_source is not None:
                news_source.stop()
        if not streaming:
            self.journal.set_meta("last_daily_close", calendar.last_close(now).isoformat())
        self._after_session(strategy, session)

    def _start_news(self, history_start: pd.Timestamp):
        """The session's news (``engine.live_news``): the stream subscribed first, then what was
        published since the last journaled headline (at the earliest the warm-up's first bar)
        fetched and journaled, so nothing falls between the two (an article both bring is kept once)."""
        from brokers.alpaca.news_stream import AlpacaNews
        from engine.live_news import LiveNews

        calendar = self.calendar
        news = LiveNews(self.journal, self.symbols, daily_close=self.cfg.features.daily_close_time,
                        local=lambda utc: calendar.local(utc.replace(tzinfo=dt.UTC)),
                        to_utc=lambda local: calendar.to_utc(local).tz_localize(None).to_pydatetime())
        source = AlpacaNews(self.store, self.symbols)
        source.subscribe(news.received)
        try:
            start = pd.Timestamp(history_start).tz_convert("UTC").tz_localize(None).to_pydatetime()
            last = self.journal.last_news_created(self.symbols)
            news.backfill(source.since(max(start, last) if last is not None else start))
        except Exception:
            source.stop()
            raise
        return news, source

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
        if self.cfg.reconciliation.enabled:  # before a retrain: the replay trades the model the session traded
            from engine.daily_reconciliation import reconcile_live_session

            reconcile_live_session(self.cfg, strategy, session, out, strategy_cls=self.strategy_cls, name=self.name,
                                   order_id_prefix=self.prefix, model=self.model, state_dir=self.state_dir,
                                   observers=self.observers)
        self._maybe_retrain(strategy)

    def _maybe_retrain(self, strategy) -> None:
        every = self.live.retrain_every_days
        if not every or not strategy.trains_models:
            return
        today = self.calendar.local(self.calendar.now()).date()
        last = self.journal.get_meta("last_retrain")
        if last is None or (today - dt.date.fromisoformat(last)).days >= every:
            log.info("retraining (every %d days)", every)
            strategy.retrain_now()
            self.journal.set_meta("last_retrain", today.isoformat())
