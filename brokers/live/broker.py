"""One Backtrader broker for live trading and replay: Backtrader orders in, venue orders out.

:class:`LiveBroker` talks to any :class:`brokers.venue.Venue` (Alpaca, or the simulated venue of a
replay) and is assembled from parts, one job each:

- ``brokers.live.mapping``: Backtrader orders <-> venue requests and journal rows. Market,
  market-on-close (Backtrader's Close), limit, stop, stop-limit and trailing stop; an entry with stop
  and/or take-profit children (``parent=``/``transmit=``) goes out as one bracket (OTO with one child);
  a take-profit placed with ``oco=`` a stop of the same symbol, side and size in the same ``next`` joins
  it as one OCO order (an exit of a position held), as far as the venue's OCO takes that stop
  (``VenueCapabilities.oco_refusal``: else the stop goes alone and the take-profit is refused,
  journaled, logged once);
- ``brokers.live.outbox``: families queued during the strategy's ``next``, sent as each decision is
  complete (:meth:`LiveBroker.send_ready`, called by ``strategies.base.PortfolioStrategy``) and the rest
  right after it (:meth:`LiveBroker.flush`, called by ``analyzers.live_session``), journal first, never
  twice; exits that wait for cancels;
- ``brokers.live.tracker``: the orders followed, the venue's trade updates as Backtrader
  notifications (Margin where ``VenueCapabilities.is_margin``), fills booked as BackBroker does;
- ``brokers.live.reconcile`` (restart: one consistent view of the venue becomes the book, orders
  reclaimed by id) and ``brokers.live.sync`` (the periodic sync; a book that disagrees with the venue);
- ``brokers.live.halts``: why new entries are held back (exits still go out), an operator's pause too.

A long-only strategy's sell beyond the long position held is refused; rejections are logged with the
venue's reason and reach the strategy; nothing is retried blindly. ``entry_gate``: a callable returning
a reason (str) while new entries must not be sent (the stale-data watchdog); exits are always sent.

:attr:`LiveBroker.checkpoint` is called with the name of each point where a process that dies leaves
work half done: ``after_intent`` (journal written, order not sent), ``after_submit`` (sent, the journal
not yet updated) and ``reconcile`` (a read of the venue at start). It does nothing; the kill-and-restart
tests install one that kills the process there (``tests/live/crash_child.py``).
"""
from __future__ import annotations

from typing import Callable

from brokers.accounting import stock_commission
from brokers.live.halts import EntryHalts
from brokers.live.mapping import FallbackIds
from brokers.live.outbox import Outbox
from brokers.live.reconcile import Reconciler
from brokers.live.sync import PeriodicSync
from brokers.live.tracker import OrderTracker
from engine.compat import bt


def _no_checkpoint(point: str) -> None:
    pass


class LiveBroker(bt.BrokerBase):
    params = (
        ("venue", None),
        ("journal", None),
        ("commission_bps", 0.0),
        ("sync_seconds", None),  # poll the venue this often (None: only at start)
        ("sync_order_lookups", None),  # a sync asks about at most this many orders one by one (None: all)
        ("sync_recheck_seconds", 1.0),  # the next sync comes this soon after one that saw a difference
        ("entry_gate", None),
        ("order_id_prefix", ""),  # for orders the strategy did not tag with a client order id
        ("cancel_wait_seconds", 0.0),  # an exit waits this long, at most, for its shares' cancels
        ("bar_waiting", None),  # callable: True while a bar waits to be processed (a sync pauses for it)
        ("on_reconciled", None),  # called once the start's reconciliation is done (the bar stream subscribes)
        ("observers", None),  # ops.observer.Observers told of order statuses and mismatches (None: nobody)
    )

    checkpoint: Callable[[str], None] = staticmethod(_no_checkpoint)  # see the module's docstring

    def __init__(self):
        super().__init__()
        self.venue, self.journal = self.p.venue, self.p.journal
        self.startingcash = 0.0
        self._value = 0.0
        self.bar_in_progress = False  # set by the live session from a bar's release to its end
        self.tracker = OrderTracker(self, self.venue, self.journal)
        self.halts = EntryHalts(self.journal)
        self.outbox = Outbox(self, self.venue, self.journal, self.tracker, self.halts,
                             fallback_ids=FallbackIds(self.p.order_id_prefix), entry_gate=self.p.entry_gate,
                             cancel_wait_seconds=self.p.cancel_wait_seconds, checkpoint=self.checkpoint)
        self.reconciler = Reconciler(self.venue, self.journal, self.tracker, self.halts, checkpoint=self.checkpoint)
        self.periodic_sync = PeriodicSync(self.venue, self.journal, self.tracker, self.halts, self.outbox,
                                          every_seconds=self.p.sync_seconds,
                                          order_lookups=self.p.sync_order_lookups,
                                          recheck_seconds=self.p.sync_recheck_seconds, bar_waiting=self.p.bar_waiting)
        self.tracker.observers = self.halts.observers = self.periodic_sync.observers = self.p.observers

    # ---- the book, as Backtrader and the live session read it -------------------------------------
    @property
    def cash(self) -> float:
        return self.tracker.cash

    @cash.setter
    def cash(self, value: float) -> None:
        self.tracker.cash = value

    @property
    def positions(self):
        return self.tracker.positions

    @property
    def data_by_symbol(self) -> dict:
        return self.tracker.data_by_symbol

    @data_by_symbol.setter
    def data_by_symbol(self, value: dict) -> None:
        self.tracker.data_by_symbol = value

    @property
    def foreign_positions(self) -> dict:
        """Positions in symbols this strategy does not trade: kept in the value, not managed."""
        return self.tracker.foreign_positions

    @property
    def tracked(self) -> dict:
        return self.tracker.tracked

    @property
    def halted(self) -> dict[str, str]:
        """Why new entries are held back, by cause (see ``brokers.live.halts``)."""
        return self.halts.reasons

    @property
    def entries_paused(self) -> str | None:
        """Why an operator paused new entries (``ops.controls``), None when not paused."""
        return self.halts.paused

    @property
    def unsent_at_start(self) -> list[str]:
        return self.reconciler.unsent_at_start

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self):
        super().start()
        self.comminfo = {None: stock_commission(self.p.commission_bps)}
        self.data_by_symbol = {d._name: d for d in self.cerebro.datas}
        for data in self.cerebro.datas:  # BackBroker sums position values in this order
            self.positions[data]
        self.reconcile()
        if self.p.on_reconciled is not None:
            self.p.on_reconciled()

    def stop(self):
        self.flush()

    def reconcile(self) -> None:
        """The start's reconciliation with the venue (``brokers.live.reconcile``)."""
        self.reconciler.reconcile()
        self.startingcash = self.cash
        self._value = self.tracker.value()

    def claim(self, client_order_id: str, owner):
        return self.reconciler.claim(client_order_id, owner)

    def abandon_unsent(self) -> list[str]:
        return self.reconciler.abandon_unsent()

    def in_flight(self) -> list[str]:
        return self.tracker.in_flight()

    def sync(self) -> None:
        self.periodic_sync.sync()

    def next(self):
        with self.journal.batch():
            self.tracker.take_updates()
            self.tracker.trail_stops()
            if not self.bar_in_progress:  # never between a bar and the orders it causes
                self.periodic_sync.continue_sync()
            self.outbox.release_parked()
        self._value = self.tracker.value()

    def send_ready(self) -> int:
        """Send the complete families placed so far that wait for no cancel, during the strategy's
        ``next`` (``Outbox.send_ready``); returns how many went out."""
        return self.outbox.send_ready()

    def flush(self) -> int:
        """Send the orders of the bar; returns how many families (an order with its legs) went out."""
        return self.outbox.flush()

    # ---- Backtrader's broker interface ---------------------------------------------------------
    def getcash(self):
        return self.cash

    get_cash = getcash

    def getvalue(self, datas=None):
        if datas is None:
            return self._value
        return sum(self.positions[d].size * d.close[0] for d in datas if len(d))

    get_value = getvalue

    def getposition(self, data):
        return self.positions[data]

    def get_notification(self):
        notifs = self.tracker.notifs
        return notifs.popleft() if notifs else None

    def notify(self, order) -> None:
        self.tracker.notify(order)

    def orderstatus(self, order):
        return order.status

    def buy(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0, oco=None,
            trailamount=None, trailpercent=None, parent=None, transmit=True, **kwargs):
        order = bt.BuyOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
                            valid=valid, tradeid=tradeid, trailamount=trailamount, trailpercent=trailpercent,
                            parent=parent, transmit=transmit)
        order.addinfo(**kwargs)
        return self.submit(order, oco=oco)

    def sell(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0, oco=None,
             trailamount=None, trailpercent=None, parent=None, transmit=True, **kwargs):
        order = bt.SellOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
                             valid=valid, tradeid=tradeid, trailamount=trailamount, trailpercent=trailpercent,
                             parent=parent, transmit=transmit)
        order.addinfo(**kwargs)
        return self.submit(order, oco=oco)

    def submit(self, order, oco=None):
        order.addcomminfo(self.getcommissioninfo(order.data))
        return self.outbox.queue(order, oco=oco)

    def cancel(self, order):
        rec = self.tracker.by_ref.get(order.ref)
        if rec is None:  # not sent yet: dropped here
            return self.outbox.drop_unsent(order)
        return self.outbox.cancel(rec)

