"""What a live session (or a replay) does after each bar, once the strategy has decided.

Analyzers run right after the strategy's ``next``, by which time every order it placed carries its
client order id; :class:`LiveSessionRecorder` is added before the recording analyzers, so that the
bar's orders leave first and every record comes after them, off the path from bar to order.
With observers (metrics, alerts), the bar's :class:`ops.observer.BarSnapshot` is built and handed
to them last, once the orders are sent and the bar journaled.
"""
from __future__ import annotations

import gc
import itertools
import time

from engine.compat import bt
from ops.observer import BarSnapshot


class LiveSessionRecorder(bt.Analyzer):
    """After each bar, in this order: send the orders the strategy placed that are not sent yet (the
    broker's outbox), then the strategy's work no order waits for (``after_orders``), then in one
    journal transaction the bar's predictions (``strategy.bar_predictions()``), equity, cash,
    positions and bars, and the strategy's state (``strategy.save_state``) once the session saves it;
    then the journal's and the heap's housekeeping; then the observers' snapshot of the bar.

    ``session``: the ``engine.live.LiveSession`` (its ``journal``, ``name`` and ``saves_state``)."""

    params = (("session", None),)

    def start(self):
        self._collected = False

    def next(self):
        strategy, broker, session = self.strategy, self.strategy.broker, self.p.session
        sent = broker.flush()
        sent_at = time.perf_counter()
        broker.bar_in_progress = False
        strategy.after_orders()
        journal = session.journal
        predictions = strategy.bar_predictions()
        now = strategy.now
        with journal.batch():
            if predictions is not None:
                journal.record_predictions(strategy.datetime.datetime(0), *predictions)
            if now is not None:
                holdings = [(d._name, p.size, p.price, d.close[0]) for d, p in broker.positions.items() if p.size]
                journal.record_bar(now, equity_value=broker.getvalue(), cash=broker.getcash(), holdings=holdings,
                                   bars=_bars_of(strategy))
                if session.saves_state:
                    journal.save_state(session.name, now, strategy.save_state(broker.in_flight()))
        if now is None:
            return
        # housekeeping now, with the bar's orders sent, rather than in the middle of the next bar's
        journal.checkpoint()
        self._tidy_heap()
        if session.observers is not None:
            latency = sent_at - session.released_at if sent and session.released_at else None
            session.observers.bar_decided(bar_snapshot(session, strategy, broker, now, latency))

    def _tidy_heap(self) -> None:
        """Collect the young generations, then freeze what survived (``gc.freeze``). What lives on
        (bars, indicator buffers, orders, records) then never enters the collector's full passes,
        which otherwise grow with the session and pause whatever runs when one falls due, a bar's
        orders included, for 50-200 ms. Only garbage cycles that outlive a bar are kept until the
        session ends (``LiveSession.run`` unfreezes)."""
        if not self._collected:
            self._collected = True
            gc.collect()  # once: what imports and set-up left behind
        gc.collect(1)
        gc.freeze()


def _bars_of(strategy) -> list[tuple]:
    """The bars of this timestamp (symbol, datetime, open, high, low, close, volume), for the journal."""
    clock = strategy._now_num  # the latest timestamp among the symbols (PortfolioStrategy.next)
    return [(d._name, d.datetime.datetime(0), d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0])
            for d in strategy.datas if len(d) and d.datetime[0] == clock]


def bar_snapshot(session, strategy, broker, now, bar_to_order_seconds: float | None) -> BarSnapshot:
    """The account and the strategy after the bar of ``now``: the broker's book, the session's
    daily P&L (from the equity after the day's first bar), the strategy's ``monitoring()`` and
    ``risk_figures()``, and an operator's pause."""
    equity, cash = broker.getvalue(), broker.getcash()
    if session.day != now.date():
        session.day, session.day_start_equity = now.date(), equity
    gross = sum(abs(p.size) * d.close[0] for d, p in broker.positions.items() if p.size)
    gate = broker.p.entry_gate
    halt = broker.halts.reason()
    stale = gate() if gate is not None and halt is None else None
    controls = getattr(session, "controls", None)
    hub = getattr(strategy, "features", None)  # a FeatureHub: its update time, taken once per bar
    feature_seconds = getattr(hub, "update_seconds", None)
    if feature_seconds is not None:
        hub.update_seconds = None
    return BarSnapshot(
        session=session.name, bar_datetime=now, wall_time=time.time(), equity=equity, cash=cash,
        daily_pnl=equity - session.day_start_equity, exposure=gross / equity if equity > 0 else 0.0,
        open_positions=sum(1 for p in broker.positions.values() if p.size),
        open_orders=_open_orders(session, broker.tracked),
        trading=session.trading, bar_to_order_seconds=bar_to_order_seconds,
        feature_seconds=feature_seconds,
        entries_halted=halt or stale, entries_halted_by="broker" if halt else "feed" if stale else None,
        entries_paused=controls.paused if controls is not None else None,
        risk_figures=strategy.risk_figures() if hasattr(strategy, "risk_figures") else {},
        **(strategy.monitoring() if hasattr(strategy, "monitoring") else {}))  # a bare bt.Strategy has none


def _open_orders(session, tracked: dict) -> int:
    """Orders sent and not final. The broker follows every order of the session (thousands by the
    close): the records added since the last bar join those still open then, and a bar reads those
    few (a final record never reopens: ``OrderTracker.set_status``)."""
    open_ids = session.open_order_ids
    if len(tracked) > session.orders_seen:
        open_ids.update(itertools.islice(tracked, session.orders_seen, None))
        session.orders_seen = len(tracked)
    for cid in [cid for cid in open_ids if tracked[cid].final]:
        open_ids.discard(cid)
    return sum(1 for cid in open_ids if tracked[cid].status != "intent")
