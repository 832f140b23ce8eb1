"""What a live session (or a replay) does after each bar, once the strategy has decided.

Analyzers run right after the strategy's ``next``, by which time every order it placed carries its
client order id; :class:`LiveSessionRecorder` is added before the recording analyzers, so that the
bar's orders leave first and every record comes after them, off the path from bar to order.
"""
from __future__ import annotations

import gc

from engine.compat import bt


class LiveSessionRecorder(bt.Analyzer):
    """After each bar, in this order: send the orders the strategy placed (the broker's outbox), then
    in one journal transaction the bar's predictions (``strategy.bar_predictions()``), equity, cash
    and positions, and the strategy's state (``strategy.save_state``) once the session saves it;
    then the journal's and the heap's housekeeping.

    ``session``: the ``engine.live.LiveSession`` (its ``journal``, ``name`` and ``saves_state``)."""

    params = (("session", None),)

    def start(self):
        self._collected = False

    def next(self):
        strategy, broker, session = self.strategy, self.strategy.broker, self.p.session
        broker.flush()
        broker.bar_in_progress = False
        journal = session.journal
        predictions = strategy.bar_predictions()
        now = strategy.now
        with journal.batch():
            if predictions is not None:
                journal.record_predictions(strategy.datetime.datetime(0), *predictions)
            if now is not None:
                holdings = [(d._name, p.size, p.price, d.close[0]) for d, p in broker.positions.items() if p.size]
                journal.record_bar(now, equity_value=broker.getvalue(), cash=broker.getcash(), holdings=holdings)
                if session.saves_state:
                    journal.save_state(session.name, now, strategy.save_state(broker.in_flight()))
        if now is None:
            return
        # housekeeping now, with the bar's orders sent, rather than in the middle of the next bar's
        journal.checkpoint()
        self._tidy_heap()

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
