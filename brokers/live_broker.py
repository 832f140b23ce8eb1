"""One Backtrader broker for live trading and replay: Backtrader orders in, venue orders out.

:class:`LiveBroker` talks to any :class:`brokers.venue.Venue` (Alpaca, or the simulated venue of a
replay):

- **orders**: market, market-on-close (Backtrader's Close), limit, stop, stop-limit and trailing stop;
  an entry with stop and/or take-profit children (``parent=``/``transmit=``) goes out as one bracket
  (OTO with one child), whose legs the venue activates when the entry fills and cancels one with the
  other. Orders are sent right after the strategy's ``next`` (the :class:`OrderFlush` analyzer), when
  the strategy has tagged them with their deterministic client order id;
- **one-cancels-other**: a take-profit limit placed with ``oco=`` a stop (or stop-limit) of the same
  symbol, side and size placed just before it in the same ``next`` joins it as one OCO order (Alpaca's
  exit of a position held, see ``brokers.alpaca_venue``), followed like a bracket's legs. A trailing stop
  cannot be in an OCO at Alpaca, nor rest beside a take-profit for the same shares (Alpaca holds the
  shares of an open sell): the trailing stop goes alone and the take-profit is refused
  (:data:`TRAILING_TARGET_DROPPED`, journaled, logged once); so is a take-profit that is not beyond its
  stop. Other ``oco=`` groups are refused with the reason;
- **journal first**: each order (with its legs) is written to the journal as an ``intent`` before it
  is sent, then updated with the venue's id, statuses and fills;
- **never twice**: an id the journal has seen is never sent again; a duplicate-id refusal from the
  venue means "already sent" and the venue's order is adopted;
- **updates -> notifications**: the venue's trade updates become Backtrader's Accepted, Partial,
  Completed, Canceled, Expired, Rejected (Margin when the venue reports insufficient buying power)
  notifications, with fills accounted exactly as BackBroker does (``brokers.accounting``);
- **restart**: on start, one consistent view of the venue (cash and positions read before and after its
  orders, again until they agree) becomes the book; the journal's open orders, a filled entry's open
  legs included, are matched with the venue's, and each fill the journal lacks is recorded once (at
  the venue's time); venue orders the journal does not know are adopted; trade updates that came
  meanwhile are applied after, a fill already in the view recognised by its order's filled quantity.
  The venue's positions must be what the journal's fills explain, else new entries halt
  (:meth:`_check_book`). A restored strategy reclaims its orders by id (:meth:`claim`), exits in
  flight too, and hears what happened while it was down, at the times it happened;
- **long-only**: a sell beyond the long position held is refused for a ``long_only`` strategy;
- **rejections** are logged with the venue's reason and reach the strategy; nothing is retried blindly.

``entry_gate``: a callable returning a reason (str) while new entries must not be sent (the stale-data
watchdog); exits are always sent.

Test hook: the environment variable ``LIVE_TEST_CRASH_AT=<point>:<n>`` kills the process (SIGKILL) the
n-th time it reaches ``after_intent`` (journal written, order not sent), ``after_submit`` (sent, the
journal not yet updated) or ``reconcile`` (a read of the venue at start). The kill-and-restart tests
use it; it does nothing when unset.
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from brokers.accounting import account_fill, portfolio_value, stock_commission
from brokers.venue import (DuplicateClientOrderId, Leg, NotCancelable, OrderRejected, OrderRequest, TradeUpdate,
                           VenueOrder, VenuePosition, VenueUnavailable, drain)
from engine.compat import bt

log = logging.getLogger("live.broker")

CRASH_ENV = "LIVE_TEST_CRASH_AT"
FILL_EVENTS = ("fill", "partial_fill")
ACCEPTED_STATUSES = ("new", "accepted", "held", "pending_cancel", "pending_replace", "done_for_day",
                     "accepted_for_bidding", "calculated", "stopped", "partially_filled")
_EPS = 1e-9
TRAILING_TARGET_DROPPED = ("Alpaca's OCO orders take no trailing stop: the take-profit is dropped while the "
                           "stop trails")
# subtracted from the earliest submission time a sync's closed-orders list must cover (see
# LiveBroker._closed_listing_start): more than any rounding of a venue's timestamp
CLOSED_LIST_MARGIN = dt.timedelta(seconds=1)
RECONCILE_READS = 5  # reads of the venue a restart makes at most for one consistent view
BASELINE_KEY = "positions_baseline"  # journal meta: the positions the account held when the journal began


@dataclass
class Tracked:
    """One venue order as the broker follows it."""

    client_order_id: str
    symbol: str
    side: str
    qty: float
    status: str = "intent"
    venue_id: str | None = None
    parent: str | None = None
    leg: str | None = None
    venue_filled: float = 0.0  # filled at the venue, as far as the broker knows
    filled_value: float = 0.0  # sum of qty x price of those fills
    accounted: float = 0.0  # of which booked into positions and cash (the rest was there at start)
    notified: float = 0.0  # of which given to the Backtrader order
    order: object | None = None
    info: dict = field(default_factory=dict)
    reason: str | None = None  # the venue's words for a rejection
    cancel_requested: bool = False
    submitted_at: dt.datetime | None = None  # the venue's submission time (where its order lists sort)
    filled_at: dt.datetime | None = None  # the venue's time of its last fill
    synced: int = 0  # the last periodic sync that read it from the venue (0: none)

    @property
    def avg_price(self) -> float | None:
        return self.filled_value / self.venue_filled if self.venue_filled > _EPS else None

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1

    @property
    def final(self) -> bool:
        return self.status in ("filled", "canceled", "expired", "rejected", "replaced", "abandoned")


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
    )

    def __init__(self):
        super().__init__()
        self.venue = self.p.venue
        self.journal = self.p.journal
        self.notifs: collections.deque = collections.deque()
        self.positions = collections.defaultdict(bt.Position)
        self.cash = 0.0
        self.startingcash = 0.0
        self._value = 0.0
        self.tracked: dict[str, Tracked] = {}
        self.by_venue_id: dict[str, Tracked] = {}
        self.by_ref: dict[int, Tracked] = {}
        self.data_by_symbol: dict = {}
        self.foreign_positions: dict = {}
        self.unsent_at_start: list[str] = []
        self._families: dict[int, list] = {}
        self._outbox: list[list] = []
        self._deferred: list[Callable[[], None]] = []  # see defer()
        self._parked: list[list] = []  # exits waiting for the cancel of the orders holding their shares
        self._canceling: dict[str, set[str]] = {}  # symbol -> ids of orders asked to cancel, not yet done
        self._journal_ids: set[str] = set()
        self._logged_refusals: set[str] = set()  # take-profit refusals logged once
        self._trailing: dict[int, object] = {}  # ref -> open trailing stop (see _trail_stops)
        self.bar_in_progress = False  # set by the live session from a bar's release to its end
        self._differences: dict = {}  # cash or symbol -> (here, at the venue) at the last sync
        self._fills_since_sync = False
        self._unconfirmed: list[list] = []
        self._fallback_ids: dict = {}
        self._last_sync = time.monotonic()
        self._syncs = 0  # periodic syncs started
        self._sync_in_progress = None  # the steps of a sync paused for a bar (see _sync_steps)
        self.halted: dict[str, str] = {}  # why new entries are held back (see halt), by cause
        self._crash = _crash_plan(os.environ.get(CRASH_ENV, ""))

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

    def in_flight(self) -> list[str]:
        """Client ids of the orders the strategy placed whose end it has not heard of: still working
        at the venue, or final with the notification waiting for the next bar."""
        waiting = {order.ref for order in self.notifs}
        return [cid for cid, rec in self.tracked.items()
                if rec.order is not None and (rec.order.alive() or rec.order.ref in waiting)]

    def reconcile(self) -> None:
        """Take one consistent view of the venue and make it the book (see :meth:`_read_venue`): cash
        and positions from the venue; the journal's open orders (a filled entry's open legs too) matched
        with the venue's by client order id, their fills recorded once each; the venue's open orders the
        journal does not know adopted. Trade updates that arrived meanwhile wait in the venue's queue
        and are applied after this (a fill already in the view is recognised by its order's filled
        quantity and not booked again). Then :meth:`_check_book`."""
        rows = self.journal.orders()
        self._journal_ids = {row.client_order_id for row in rows}
        families = _open_families(rows)
        account, held, views, listed = self._read_venue(families)
        self.cash = self.startingcash = account.cash
        for symbol, position in held.items():
            data = self.data_by_symbol.get(symbol)
            if data is None:
                self.foreign_positions[symbol] = position
                log.warning("the account holds %g %s, a symbol this strategy does not trade: kept, not managed",
                            position.qty, symbol)
            else:
                self.positions[data] = bt.Position(_whole(position.qty), position.avg_entry_price)
                log.info("adopted position %s %g @ %.4f", symbol, position.qty, position.avg_entry_price)
        for root, members in families.values():
            view = views[root.client_order_id]
            if view is not None:
                log.info("order %s reached the broker before the restart: adopted (%s)", root.client_order_id,
                         view.status)
                self._track_view(view, root, members)
            elif root.status == "intent":
                self._track_unsent(root, members)
            else:
                log.warning("order %s (%s in the journal) is unknown to the broker: marked rejected",
                            root.client_order_id, root.status)
                for row in [root, *members]:
                    if row.open:
                        self._journal_status(row.client_order_id, "rejected", "unknown to the broker on restart")
        for view in listed:
            if view.client_order_id not in self.tracked and view.id not in self.by_venue_id:
                log.warning("adopting %s order %s (%s %g %s) not in the journal", view.status,
                            view.client_order_id, view.side, view.qty, view.symbol)
                self._adopt(view, already_booked=True)
        self._value = self._compute_value()
        self._check_book(held)

    def _read_venue(self, families: dict) -> tuple:
        """(account, positions, {root client id: venue order or None}, open orders) as one consistent
        view: the account and positions are read before and after the orders, and the whole read again
        while they differ (a fill happened in between: the orders read may hold it and the positions not,
        or the reverse). After ``RECONCILE_READS`` reads that never agree, the last one is taken and new
        entries are halted until a sync finds the book and the venue agree."""
        before = self._account_view()
        for attempt in range(1, RECONCILE_READS + 1):
            self._crash_point("reconcile")
            views = {cid: self._venue_order(root, members) for cid, (root, members) in families.items()}
            listed = self.venue.open_orders()
            after = self._account_view()
            if _same_account(before, after):
                break
            log.info("reconcile: the broker's cash or positions changed while its orders were read (a fill): "
                     "reading again (%d of %d)", attempt, RECONCILE_READS)
            before = after
        else:
            self.halt("reconcile", f"the broker's cash and positions kept changing over {RECONCILE_READS} reads "
                                   f"of its orders: no consistent view to start from")
        return (*after, views, listed)

    def _account_view(self) -> tuple:
        return self.venue.account(), self.venue.positions()

    def _venue_order(self, root, members) -> VenueOrder | None:
        """The venue's order for a journal family, legs nested (by the venue's id when the journal has it)."""
        if root.venue_order_id is not None:
            view = self.venue.get_order(root.venue_order_id)
            if view is not None:
                return view
        view = self.venue.order_by_client_id(root.client_order_id)
        if view is not None and members and not view.legs:  # a listing without its legs
            view = self.venue.get_order(view.id) or view
        return view

    def _check_book(self, held: dict) -> None:
        """The venue's positions must be what the journal explains: the positions the account held when
        this journal started (its baseline) plus every fill recorded since. A difference is a trade this
        deployment does not know of, or a fill lost or booked twice: new entries halt (exits still go
        out) until the positions are adopted (``python run.py live --adopt-positions``)."""
        fills = self.journal.fills()
        if self.journal.get_meta(BASELINE_KEY) is None:
            # a new journal (or one from before baselines were kept): what the account holds now is right
            adopt_venue_positions(self.venue, self.journal, held=held, quiet=not fills)
        expected = collections.defaultdict(float, self.journal.get_meta(BASELINE_KEY))
        for symbol, qty in _net_fills(fills).items():
            expected[symbol] += qty
        differences = {}
        for symbol in self.data_by_symbol:
            there = held[symbol].qty if symbol in held else 0.0
            if abs(expected[symbol] - there) > _EPS:
                differences[symbol] = (expected[symbol], there)
        if differences:
            words = ", ".join(f"{symbol} {there:g} at the broker, {here:g} by the journal"
                              for symbol, (here, there) in sorted(differences.items()))
            self.halt("positions", f"the broker's positions differ from what the journal's fills explain ({words}): "
                                   f"new entries halted; if the broker is right (a trade made outside this "
                                   f"deployment), restart with --adopt-positions")

    def halt(self, key: str, reason: str) -> None:
        """Hold back new entries (exits still go out) for ``reason``; logged and journaled once."""
        if self.halted.get(key) == reason:
            return
        self.halted[key] = reason
        log.error("new entries halted: %s", reason)
        self.journal.record_event("halt", reason)

    def resume(self, key: str, why: str) -> None:
        if self.halted.pop(key, None) is not None:
            log.warning("new entries resume: %s", why)
            self.journal.record_event("resume", why)

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
        return self.notifs.popleft() if self.notifs else None

    def notify(self, order) -> None:
        self.notifs.append(order.clone())

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
        """Queue an order (BackBroker's parent/children rules); a family goes out when its last member
        is transmitted, and is sent by :meth:`flush` once the strategy's ``next`` is over."""
        order.addcomminfo(self.getcommissioninfo(order.data))
        if oco is not None:
            pair, refusal = self._oco_pair(order, oco)
            if pair is not None:  # sent with its stop, as one OCO order
                pair.append(order)
                order.submit(self)
                self.notify(order)
                return order
            order.addinfo(**refusal)
        root = order.parent.ref if order.parent is not None else order.ref
        if order.parent is not None and root not in self._families:
            order.reject(self)  # its entry was already sent or refused: Backtrader rejects it too
            self.notify(order)
            return order
        family = self._families.setdefault(root, [])
        family.append(order)
        if order.transmit:
            for member in self._families.pop(root):
                member.submit(self)
                self.notify(member)
            self._outbox.append(family)
        return order

    def _oco_pair(self, order, oco) -> tuple[list | None, dict]:
        """The unsent family of ``oco`` that ``order`` joins as an OCO pair; else (None, the info that
        refuses ``order``). A take-profit that cannot be in an OCO with its (trailing) stop is marked
        ``_dropped``: refused and journaled when sent, while the stop goes alone."""
        family = next((f for f in self._outbox if any(member.ref == oco.ref for member in f)), None)
        o = bt.Order
        if family is None or len(family) != 1 or order.parent is not None or not order.transmit:
            return None, {"_refused": "one-cancels-other is supported live only between a stop and a take-profit "
                                      "placed together in one bar, outside a bracket"}
        if order.data is not oco.data or order.isbuy() != oco.isbuy() or order.valid != oco.valid \
                or abs(order.created.size) != abs(oco.created.size):
            return None, {"_refused": "a one-cancels-other pair live is two orders of one symbol, side, size "
                                      "and validity"}
        kinds = {order.exectype, oco.exectype}
        if kinds not in ({o.Stop, o.Limit}, {o.StopLimit, o.Limit}, {o.StopTrail, o.Limit}):
            return None, {"_refused": "one-cancels-other pairs live are a stop (or stop-limit) with a take-profit "
                                      "limit order"}
        target, stop = (order, oco) if order.exectype == o.Limit else (oco, order)
        if stop.exectype == o.StopTrail:
            target.addinfo(_dropped=TRAILING_TARGET_DROPPED)
            return None, {}
        if (target.created.price > stop.created.price) != stop.issell():
            target.addinfo(_dropped=f"the take-profit ({target.created.price:.4f}) is not "
                                    f"{'above' if stop.issell() else 'below'} the stop ({stop.created.price:.4f}), "
                                    f"which Alpaca's OCO orders require: the stop goes alone")
            return None, {}
        return family, {}

    def cancel(self, order):
        rec = self.by_ref.get(order.ref)
        if rec is None:
            for waiting in (self._outbox, self._parked):  # not sent yet: drop it here
                for family in waiting:
                    if order in family:
                        for member in family:
                            member.cancel()
                            self.notify(member)
                        waiting.remove(family)
                        return True
            return False
        if rec.venue_id is None:
            return False
        rec.cancel_requested = True
        self._canceling.setdefault(rec.symbol, set()).add(rec.client_order_id)
        try:
            self.venue.cancel(rec.venue_id)
        except NotCancelable as exc:
            (log.debug if self._group_canceling(rec) else log.info)("cancel %s: %s", rec.client_order_id, exc.reason)
            self._canceling[rec.symbol].discard(rec.client_order_id)
            return False
        except VenueUnavailable as exc:
            log.error("cancel %s not sent: %s", rec.client_order_id, exc.reason)
            self._canceling[rec.symbol].discard(rec.client_order_id)
            return False
        return True

    def next(self):
        with self.journal.batch():
            self._take_updates()
            self._trail_stops()
            if not self.bar_in_progress:  # never between a bar and the orders it causes
                self._continue_sync()
            self._release_parked()
        self._value = self._compute_value()

    def _continue_sync(self) -> None:
        """Start a sync when one is due, or go on with one a bar paused: a bar that arrives while the
        sync waits for the venue is handled after that one request, not after the whole sync."""
        if self._sync_in_progress is None:
            if self.p.sync_seconds is None:
                return
            # a difference between the book and the venue is looked at again soon, not a whole interval later
            every = min(self.p.sync_seconds, self.p.sync_recheck_seconds) if self._differences else self.p.sync_seconds
            if time.monotonic() - self._last_sync < every:
                return
            self._sync_in_progress = self._sync_steps()
        for _ in self._sync_in_progress:
            if self.p.bar_waiting is not None and self.p.bar_waiting():
                return
        self._sync_in_progress = None

    def _take_updates(self) -> None:
        for update in drain(self.venue.updates):
            self._on_update(update)

    def _trail_stops(self) -> None:
        """Move each open trailing stop's level (``order.created.price``, which strategies read) as
        BackBroker does after trying it on a bar: Backtrader's ``Order.trailadjust`` on the close. The
        simulated venue trails the same way, without a trade update. A venue that trails on its own
        (Alpaca follows the high-water mark) reports its level in updates and order lists, taken as they
        come (:meth:`_see_trail`); this rule raises it in between (a sell's; lowers a buy's)."""
        for ref, order in list(self._trailing.items()):
            if not order.alive():
                del self._trailing[ref]
            elif order.status in (order.Accepted, order.Partial) and len(order.data):
                order.trailadjust(order.data.close[0])

    def _see_trail(self, order, view: VenueOrder) -> None:
        """Where the venue has trailed a trailing stop to."""
        if order is not None and order.exectype == bt.Order.StopTrail and view.stop_price is not None:
            order.created.price = view.stop_price

    # ---- sending ---------------------------------------------------------------------------
    def defer(self, work: Callable[[], None]) -> None:
        """Work of the strategy's bar that can wait until the bar's orders are sent (a record, not a
        decision: its predictions' journal rows): done at the end of the next :meth:`flush`."""
        self._deferred.append(work)

    def flush(self) -> None:
        """Send the orders the strategy transmitted during its ``next`` (after taking in the venue's
        answers to its cancels: an exit waits until the orders holding its shares are canceled); then
        the deferred work, in the same journal transaction."""
        if not self._outbox and not self._deferred:
            return
        outbox, self._outbox = self._outbox, []
        deferred, self._deferred = self._deferred, []
        with self.journal.batch():
            self._send_outbox(outbox)
            for work in deferred:
                work()

    def _send_outbox(self, outbox: list) -> None:
        if not outbox:
            return
        self._take_updates()
        held = []
        for family in outbox:  # in the strategy's order, except exits waiting for cancels: after
            if self._held_by_cancels(family[0]):
                held.append(family)
            else:
                self._send(family)
        for family in held:
            self._await_cancels(family[0])
            if self._held_by_cancels(family[0]):
                self._parked.append(family)
            else:
                self._send(family)

    def _await_cancels(self, entry) -> None:
        """Take trade updates until the cancels holding ``entry``'s shares are answered (a venue answers
        in milliseconds), or ``cancel_wait_seconds`` pass; then the exit waits parked."""
        deadline = time.monotonic() + self.p.cancel_wait_seconds
        while self._held_by_cancels(entry):
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("exit %s waits for the cancel of %s", entry.info.get("client_order_id"),
                         ", ".join(sorted(self._canceling.get(entry.data._name, ()))))
                return
            try:
                update = self.venue.updates.get(timeout=left)
            except queue.Empty:
                return
            self._on_update(update)

    def _held_by_cancels(self, entry) -> bool:
        """Alpaca holds shares for open orders: a sell must wait for the canceled stop to be gone."""
        side = "buy" if entry.isbuy() else "sell"
        return any(self.tracked[cid].side == side for cid in self._canceling.get(entry.data._name, ()))

    def _release_parked(self) -> None:
        parked, self._parked = self._parked, []
        for family in parked:
            entry = family[0]
            if self._held_by_cancels(entry):
                self._parked.append(family)
            elif entry.issell() and self.positions[entry.data].size <= 0 < abs(entry.created.size):
                reason = "the position was closed meanwhile (by the order being canceled)"
                log.warning("exit %s not sent: %s", entry.info.get("client_order_id"), reason)
                self._refuse(family, reason)
            else:
                self._send(family)

    def _send(self, family: list) -> None:
        entry = family[0]
        for order in family:
            if not order.info.get("client_order_id"):
                order.addinfo(client_order_id=self._fallback_id(order))
        problem = next((o.info.get("_refused") for o in family if o.info.get("_refused")), None)
        request = None
        if problem is None:
            try:
                request = self._request(family)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            log.warning("order %s refused: %s", entry.info["client_order_id"], problem)
            self._refuse(family, problem)
            return
        cid = request.client_order_id
        known = self.journal.order(cid) if cid in self._journal_ids else None
        if known is not None and known.venue_order_id is None and known.status in ("rejected", "abandoned"):
            self._refuse(family, known.status_reason or known.status)  # decided again: same answer
            return
        if known is not None and known.status != "intent":
            self._bind(family, request, self.venue.order_by_client_id(cid))
            return
        reason = self._held_back(entry, cid)
        if reason:
            if known is None:
                self._record_intents(request, family)
            self._journal_family(request, "rejected", reason)
            self._refuse(family, reason)
            return
        if known is None:
            self._record_intents(request, family)
        self._crash_point("after_intent")
        try:
            view = self.venue.submit(request)
        except DuplicateClientOrderId:
            view = self.venue.order_by_client_id(cid)
            log.info("order %s was already at the broker: adopted, not sent again", cid)
        except OrderRejected as exc:
            log.warning("broker rejected order %s (%s %g %s): %s", cid, request.side, request.qty,
                        request.symbol, exc.reason)
            self._journal_family(request, "rejected", exc.reason)
            self._refuse(family, exc.reason)
            return
        except VenueUnavailable as exc:
            log.error("order %s: %s; its fate is checked at the next sync, it is not sent again blindly",
                      cid, exc.reason)
            self._unconfirmed.append([family, request])
            return
        self._crash_point("after_submit")
        self._bind(family, request, view)

    def _held_back(self, entry, cid: str) -> str | None:
        """Why a family is journaled and refused rather than sent: a take-profit dropped from its pair
        (logged once per reason); a long-only strategy's sell of more than the long position held (the
        book is the broker's, reconciled at start); or, for an entry, a halt (:meth:`halt`) or the
        entry gate's reason."""
        dropped = entry.info.get("_dropped")
        if dropped:
            if dropped not in self._logged_refusals:
                self._logged_refusals.add(dropped)
                log.warning("take-profit %s not sent: %s", cid, dropped)
            else:
                log.debug("take-profit %s not sent: %s", cid, dropped)
            return dropped
        held = self.positions[entry.data].size
        if entry.issell() and getattr(entry.owner, "long_only", False) and abs(entry.created.size) > held + _EPS:
            reason = (f"a sell of {abs(entry.created.size):g} {entry.data._name} with {held:g} held would leave a "
                      f"long-only strategy short")
            log.error("order %s not sent: %s", cid, reason)
            return reason
        if self._opens_position(entry):
            reason = next(iter(self.halted.values()), None) or (self.p.entry_gate() if self.p.entry_gate else None)
            if reason:
                log.warning("entry %s not sent: %s", cid, reason)
                return reason
        return None

    def _bind(self, family: list, request: OrderRequest, view: VenueOrder | None) -> None:
        """Follow the venue's order (and legs) as these Backtrader orders; tell them what it did so far."""
        if view is None:
            reason = "the broker does not know this order"
            self._journal_family(request, "rejected", reason)
            self._refuse(family, reason)
            return
        views = _legs_by_kind(view)
        for order, cid, parent, kind in _members(request, family):
            if parent is None:  # the order itself: an entry, or an oco's take-profit
                self._follow(cid, view, order, leg=kind)
                continue
            leg_view = views.get(kind)
            rec = self._follow(cid, leg_view, order, parent=parent, leg=kind)
            if leg_view is None:
                rec.status = view.status if view.final else "held"
        for order in family:
            self._catch_up(self.by_ref[order.ref])

    def _follow(self, cid: str, view: VenueOrder | None, order, parent=None, leg=None) -> Tracked:
        rec = self.tracked.get(cid)
        if rec is None:
            rec = Tracked(cid, order.data._name, "buy" if order.isbuy() else "sell", _whole(abs(order.created.size)),
                          parent=parent, leg=leg, info=dict(order.info))
            self.tracked[cid] = rec
        if view is not None:
            self._see_view(rec, view)
        rec.order = order
        self.by_ref[order.ref] = rec
        if order.exectype == bt.Order.StopTrail:
            self._trailing[order.ref] = order
        return rec

    def _see_view(self, rec: Tracked, view: VenueOrder) -> None:
        if rec.venue_id is None:
            rec.venue_id = view.id
            self.by_venue_id[view.id] = rec
        rec.submitted_at = view.submitted_at or rec.submitted_at
        rec.status = view.status
        self.journal.update_order(rec.client_order_id, venue_order_id=view.id, status=view.status)

    # ---- venue updates -> Backtrader notifications -----------------------------------------------
    def _on_update(self, update: TradeUpdate) -> None:
        view = update.order
        if update.event == "order_cancel_rejected":
            rec = self.by_venue_id.get(view.id)
            if rec is not None:
                (log.debug if self._group_canceling(rec) else log.warning)(
                    "cancel of %s refused: %s", rec.client_order_id, update.reason)
                rec.cancel_requested = False
                self._canceling.get(rec.symbol, set()).discard(rec.client_order_id)
            return
        rec = self.by_venue_id.get(view.id) or self.tracked.get(view.client_order_id) or self._unmapped_leg(view)
        if rec is None:
            log.warning("update for %s order %s (%s %s) not placed by this strategy: adopted",
                        update.event, view.client_order_id, view.side, view.symbol)
            rec = self._adopt(view, already_booked=False)
        if rec.venue_id is None:
            rec.venue_id = view.id
            self.by_venue_id[view.id] = rec
        rec.submitted_at = rec.submitted_at or view.submitted_at
        self._see_trail(rec.order, view)
        if update.event in FILL_EVENTS:
            cumulative = view.filled_qty if view.filled_qty else rec.venue_filled + (update.qty or 0.0)
            self._fill(rec, cumulative, update.price if update.price is not None else view.filled_avg_price,
                       update.timestamp, execution_id=update.execution_id, position_qty=update.position_qty)
            if update.event == "fill":
                self._set_status(rec, "filled")
        elif update.event in ("new", "accepted", "pending_new"):
            self._set_status(rec, view.status if update.event == "new" else update.event)
        else:
            self._set_status(rec, update.event, update.reason)

    def _group_canceling(self, rec: Tracked) -> bool:
        """Another order of ``rec``'s bracket or OCO was asked to cancel: the venue cancels the group
        together, so ``rec`` may be gone already when its own cancel arrives (a refusal to expect)."""
        group = rec.parent or rec.client_order_id
        return any(other is not rec and other.cancel_requested and (other.parent or other.client_order_id) == group
                   for other in self.tracked.values())

    def _unmapped_leg(self, view: VenueOrder) -> Tracked | None:
        """A bracket leg whose venue id the entry's answer did not give (Alpaca names legs with its own
        client ids): the leg of that symbol, kind and size still waiting for one."""
        kind = "take_profit" if view.type == "limit" else "stop_loss"
        return next((r for r in self.tracked.values() if r.venue_id is None and r.parent is not None
                     and r.leg == kind and r.symbol == view.symbol and r.qty == view.qty and not r.final), None)

    def _set_status(self, rec: Tracked, status: str, reason: str | None = None) -> None:
        if rec.final and status != rec.status:
            return
        rec.status = status
        rec.reason = reason or rec.reason
        if rec.final and rec.cancel_requested:
            self._canceling.get(rec.symbol, set()).discard(rec.client_order_id)
        self.journal.update_order(rec.client_order_id, status=status, status_reason=reason,
                                  filled_qty=rec.venue_filled)
        if status == "rejected":
            log.warning("broker rejected order %s (%s %g %s): %s", rec.client_order_id, rec.side, rec.qty,
                        rec.symbol, reason or "no reason given")
        self._catch_up(rec)

    def _catch_up(self, rec: Tracked) -> None:
        """Bring the Backtrader order to the venue's state, notifying each step."""
        order = rec.order
        if order is None or not order.alive():
            return
        if rec.status in ACCEPTED_STATUSES or rec.status == "filled":
            if order.status in (order.Created, order.Submitted):
                order.accept(self)
                self.notify(order)
        if rec.venue_filled > rec.notified + _EPS:  # at the venue's time of the fill (a restart's catch-up)
            self._give_fill(rec, _whole(rec.venue_filled - rec.notified), rec.avg_price, rec.filled_at)
        if rec.status == "filled" and order.alive():
            order.completed()
            self.notify(order)
        elif rec.status in ("canceled", "expired", "rejected", "replaced", "abandoned"):
            if rec.status == "rejected" and _is_margin(rec.reason):
                order.margin()
            elif rec.status == "rejected":
                order.reject(self)
            elif rec.status == "expired":
                order.status = order.Expired
                order.executed.dt = order.data.datetime[0]
            else:
                order.cancel()
            self.notify(order)

    def _fill(self, rec: Tracked, cumulative: float, price: float, when: dt.datetime, *,
              execution_id: str | None, position_qty: float | None) -> None:
        new_qty = cumulative - rec.venue_filled
        if new_qty <= _EPS:
            return  # seen already (a repeated update, or one a sync got first)
        new_qty = _whole(new_qty)
        self._fills_since_sync = True
        book_qty = _whole(max(0.0, cumulative - max(rec.venue_filled, rec.accounted)))
        rec.venue_filled = cumulative
        rec.filled_at = when
        rec.filled_value += new_qty * price
        rec.accounted = max(rec.accounted, cumulative)
        data = self.data_by_symbol.get(rec.symbol)
        comminfo = self.getcommissioninfo(data) if data is not None else self.comminfo[None]
        fill = None
        if data is not None and book_qty > _EPS:
            position = self.positions[data]
            fill = account_fill(position, self.cash, rec.sign * book_qty, price, comminfo)
            self.cash = fill.cash
            position.update(rec.sign * book_qty, price, when)
        elif data is None and book_qty > _EPS:
            self._book_foreign(rec, book_qty, price, comminfo)
        commission = fill.commission if fill is not None else comminfo.getcommission(new_qty, price)
        self.journal.record_fill(
            execution_id=execution_id or f"{rec.venue_id}-{cumulative:g}", client_order_id=rec.client_order_id,
            symbol=rec.symbol, side=rec.side, qty=new_qty, price=price, commission=commission,
            filled_datetime=when, position_qty=position_qty)
        self.journal.update_order(rec.client_order_id, filled_qty=rec.venue_filled, filled_avg_price=rec.avg_price)
        order = rec.order
        if order is not None and order.alive():
            if order.status in (order.Created, order.Submitted):
                order.accept(self)
                self.notify(order)
            self._give_fill(rec, new_qty, price, when, fill if fill is not None and book_qty == new_qty else None)

    def _give_fill(self, rec: Tracked, qty: float, price: float, when, fill=None) -> None:
        """Record ``qty`` at ``price`` in the Backtrader order's execution and notify it. ``fill``: the
        accounting of this very fill; without it (fills that happened before a restart, already in the
        adopted position) the split into closing/opening parts is reconstructed for Backtrader's trades."""
        order = rec.order
        data = order.data
        comminfo = self.getcommissioninfo(data)
        size = rec.sign * qty
        if fill is None:
            position = self.positions[data]
            before = bt.Position(position.size - size, position.price if position.size else price)
            fill = account_fill(before, 0.0, size, price, comminfo)
        when_num = bt.date2num(when) if when is not None else data.datetime[0]
        order.execute(when_num, size, price, fill.closed, fill.closedvalue, fill.closedcomm, fill.opened,
                      fill.openedvalue, fill.openedcomm, comminfo.margin, fill.pnl, fill.psize, fill.pprice)
        order.addcomminfo(comminfo)
        rec.notified += qty
        self.notify(order)

    def _book_foreign(self, rec: Tracked, qty: float, price: float, comminfo) -> None:
        held = self.foreign_positions.get(rec.symbol)
        position = bt.Position(held.qty, held.avg_entry_price) if held is not None else bt.Position()
        fill = account_fill(position, self.cash, rec.sign * qty, price, comminfo)
        self.cash = fill.cash
        position.update(rec.sign * qty, price)
        self.foreign_positions[rec.symbol] = VenuePosition(rec.symbol, position.size, position.price)

    # ---- restart -------------------------------------------------------------------------------
    def claim(self, client_order_id: str, owner):
        """The Backtrader order for a venue order placed before a restart (a restored strategy's plan
        refers to it by id): built as the strategy last knew it (accepted), then told what the venue
        did since (fills, cancels) through ordinary notifications. None if the broker has no such order."""
        rec = self.tracked.get(client_order_id)
        row = self.journal.order(client_order_id)
        if rec is None and row is not None and row.venue_order_id is not None:
            # final before the restart (filled, canceled...), so not reconciled: in the positions already
            fills = self.journal.fills(client_order_id)
            rec = Tracked(client_order_id, row.symbol, row.side, _whole(row.qty), status=row.status,
                          venue_id=row.venue_order_id, parent=row.parent_client_order_id, leg=row.leg,
                          venue_filled=row.filled_qty, accounted=row.filled_qty,
                          filled_value=row.filled_qty * (row.filled_avg_price or 0.0), info=row.info,
                          reason=row.status_reason,
                          filled_at=max((f["filled_datetime"] for f in fills), default=None))
            self.tracked[client_order_id] = rec
            self.by_venue_id.setdefault(rec.venue_id, rec)
        if rec is None or rec.status == "intent":
            return None
        if rec.order is not None:
            return rec.order
        data = self.data_by_symbol.get(rec.symbol)
        if data is None or row is None:
            return None
        order_cls = bt.BuyOrder if rec.side == "buy" else bt.SellOrder
        exectype, price, plimit, trail = _exectype(row)
        order = order_cls(owner=owner, data=data, size=rec.qty, price=price, pricelimit=plimit, exectype=exectype,
                          trailpercent=trail)
        if exectype == bt.Order.StopTrail:
            order.created.price = price  # the stop as sent (Backtrader would trail it once more from there)
            self._trailing[order.ref] = order
        order.addinfo(**{k: v for k, v in row.info.items() if not k.startswith("_")})
        order.addinfo(client_order_id=client_order_id)
        order.addcomminfo(self.getcommissioninfo(data))
        order.submit(self)
        order.accept(self)
        rec.order = order
        self.by_ref[order.ref] = rec
        self._catch_up(rec)
        return order

    def abandon_unsent(self) -> list[str]:
        """Intents found unsent at start that the strategy did not decide again: never sent, marked."""
        abandoned = []
        for cid in self.unsent_at_start:
            rec = self.tracked.get(cid)
            if rec is not None and rec.status == "intent" and rec.order is None:
                rec.status = "abandoned"
                self._journal_status(cid, "abandoned", "not sent before a restart; not decided again")
                abandoned.append(cid)
        if abandoned:
            log.warning("%d order(s) written but never sent before the restart, and not decided again: %s",
                        len(abandoned), ", ".join(abandoned))
        self.unsent_at_start = []
        return abandoned

    def _track_unsent(self, root, members) -> None:
        for row in [root, *members]:
            self.tracked[row.client_order_id] = Tracked(row.client_order_id, row.symbol, row.side, row.qty,
                                                        status="intent", parent=row.parent_client_order_id,
                                                        leg=row.leg, info=row.info)
        self.unsent_at_start.append(root.client_order_id)

    def _track_view(self, view: VenueOrder, root, members) -> None:
        """Follow a journal family the venue knows as the venue shows it, legs by kind; fills the journal
        lacks are recorded, not booked (they are in the positions read with it)."""
        rec = Tracked(root.client_order_id, view.symbol, view.side, view.qty, leg=root.leg, info=root.info)
        self.tracked[rec.client_order_id] = rec
        self._see_view(rec, view)
        self._sync_fills(rec, view, already_booked=True)
        views = _legs_by_kind(view)
        for row in members:
            leg_view = views.get(row.leg)
            leg = Tracked(row.client_order_id, row.symbol, row.side, row.qty, parent=root.client_order_id,
                          leg=row.leg, info=row.info)
            self.tracked[leg.client_order_id] = leg
            if leg_view is not None:
                self._see_view(leg, leg_view)
                self._sync_fills(leg, leg_view, already_booked=True)
                continue
            if view.final and view.status != "filled":  # the entry's end ended its legs
                leg.status = view.status
            else:
                leg.status = "held"
                if view.status == "filled":
                    log.warning("the broker shows %s filled without its %s leg %s", root.client_order_id, row.leg,
                                row.client_order_id)
            self._journal_status(leg.client_order_id, leg.status, None)

    def _adopt(self, view: VenueOrder, *, already_booked: bool) -> Tracked:
        self.journal.adopt(_row_of(view, reason="adopted"))
        self._journal_ids.add(view.client_order_id)
        rec = Tracked(view.client_order_id, view.symbol, view.side, view.qty, info={"reason": "adopted"})
        self.tracked[rec.client_order_id] = rec
        self._see_view(rec, view)
        self._sync_fills(rec, view, already_booked)
        for leg in view.legs:
            if leg.client_order_id not in self.tracked and leg.id not in self.by_venue_id:
                self.journal.adopt(_row_of(leg, reason="adopted", parent=view.client_order_id))
                self._journal_ids.add(leg.client_order_id)
                leg_rec = Tracked(leg.client_order_id, leg.symbol, leg.side, leg.qty, parent=view.client_order_id,
                                  info={"reason": "adopted"})
                self.tracked[leg.client_order_id] = leg_rec
                self._see_view(leg_rec, leg)
                self._sync_fills(leg_rec, leg, already_booked)
        return rec

    def _sync_fills(self, rec: Tracked, view: VenueOrder, already_booked: bool) -> None:
        """Fills the venue reports for an order the broker starts following: recorded in the journal
        (if missing), booked only if they are not already in the positions taken from the venue."""
        if view.filled_qty <= rec.venue_filled + _EPS:
            return
        price = view.filled_avg_price
        if already_booked:
            recorded = sum(f["qty"] for f in self.journal.fills(rec.client_order_id))
            missing = view.filled_qty - recorded
            if missing > _EPS:
                data = self.data_by_symbol.get(rec.symbol)
                comminfo = self.getcommissioninfo(data) if data is not None else self.comminfo[None]
                self.journal.record_fill(
                    execution_id=f"reconciled-{view.id}-{view.filled_qty:g}", client_order_id=rec.client_order_id,
                    symbol=rec.symbol, side=rec.side, qty=missing, price=price,
                    commission=comminfo.getcommission(missing, price), filled_datetime=self._fill_time(rec, view),
                    position_qty=None)
            rec.venue_filled = rec.accounted = view.filled_qty
            rec.filled_value = view.filled_qty * (price or 0.0)
            rec.filled_at = self._fill_time(rec, view)
            self.journal.update_order(rec.client_order_id, filled_qty=view.filled_qty, filled_avg_price=price)
        else:
            self._fill(rec, view.filled_qty, price, self._fill_time(rec, view), execution_id=None, position_qty=None)

    # ---- periodic sync -------------------------------------------------------------------------
    def sync(self) -> None:
        """Catch what a dropped stream missed, in a number of venue requests that does not grow with the
        orders followed (Alpaca allows 200 a minute): open orders' fills and statuses from the list of
        open orders; those of orders that left it (finished while the stream was down, or a filled
        bracket's legs, which Alpaca lists with their entry) from one list of recently closed orders;
        the few found in neither one by one, at most ``sync_order_lookups`` per sync. Then it settles
        unconfirmed sends and compares cash and positions with the venue's (see :meth:`_sync_account`)."""
        for _ in self._sync_steps():
            pass

    def _sync_steps(self):
        """:meth:`sync` as a generator that pauses after each venue request. Each answer is applied
        as soon as it comes, so a pause (a bar, trade updates) never leaves a stale answer to apply."""
        self._last_sync = time.monotonic()
        self._syncs += 1
        try:
            unlisted = self._sync_from(self.venue.open_orders(),
                                       [r for r in self.tracked.values() if not r.final and r.venue_id])
            yield
            unlisted = [rec for rec in unlisted if not rec.final]  # updates may have settled some meanwhile
            after = self._closed_listing_start(unlisted)
            if after is not None:
                unlisted = self._sync_from(self.venue.closed_orders(after), unlisted)
                yield
            for rec in self._lookups(unlisted):
                if not rec.final:
                    rec.synced = self._syncs
                    self._see_synced(rec, self.venue.get_order(rec.venue_id))
                    yield
            unconfirmed, self._unconfirmed = self._unconfirmed, []
            for family, request in unconfirmed:
                view = self.venue.order_by_client_id(request.client_order_id)
                if view is not None:
                    self._bind(family, request, view)
                else:
                    reason = "not sent: the broker was unreachable"
                    self._journal_family(request, "rejected", reason)
                    self._refuse(family, reason)
                yield
            self._sync_account()
        except VenueUnavailable as exc:
            log.error("sync with the broker failed: %s (retried at the next sync)", exc.reason)

    def _sync_from(self, views: list[VenueOrder], records: list[Tracked]) -> list[Tracked]:
        """Apply a venue order list (legs included) to ``records``; returns those it does not hold."""
        listed = {}
        for view in views:
            listed[view.id] = view
            listed.update((leg.id, leg) for leg in view.legs)
        missing = []
        for rec in records:
            view = listed.get(rec.venue_id)
            if view is None:
                missing.append(rec)
            else:
                rec.synced = self._syncs
                self._see_synced(rec, view)
        return missing

    def _closed_listing_start(self, records: list[Tracked]) -> dt.datetime | None:
        """Where the list of closed orders must start to hold every one of ``records``, or None when no
        submission time is known (those orders are looked up one by one).

        Alpaca filters that list on submission time, ``after`` exclusive, and nests a bracket's legs
        under their entry, so a leg counts from its entry's submission: the earliest of these times,
        less :data:`CLOSED_LIST_MARGIN`, misses none of them. The margin only covers rounding on the
        way (Alpaca stamps in nanoseconds, a Python datetime holds microseconds): the time is the
        venue's own, so no clock difference enters. Listing from the earliest (oldest first) is what
        lets a long-lived order, such as a stop held for weeks, settle even when more than a page of
        orders closed since: what a page leaves out is looked up, and the next sync starts later."""
        times = []
        for rec in records:
            entry = self.tracked.get(rec.parent) if rec.parent is not None else None
            known = [t for t in (rec.submitted_at, entry.submitted_at if entry is not None else None) if t is not None]
            if known:
                times.append(min(known))
        return min(times) - CLOSED_LIST_MARGIN if times else None

    def _lookups(self, records: list[Tracked]) -> list[Tracked]:
        """The orders of ``records`` (in neither list) this sync asks about one by one: at most
        ``sync_order_lookups``, those read from the venue longest ago first (never read: first of
        all), so every order's turn comes; the rest wait for the next sync."""
        cap = self.p.sync_order_lookups
        if cap is None or len(records) <= cap:
            return records
        waiting = sorted(records, key=lambda rec: rec.synced)  # stable: in the order they were sent
        log.debug("sync: %d order(s) in neither order list wait for a later sync", len(waiting) - cap)
        return waiting[:cap]

    def _see_synced(self, rec: Tracked, view: VenueOrder | None) -> None:
        if view is None or rec.final:
            return
        rec.submitted_at = rec.submitted_at or view.submitted_at
        self._see_trail(rec.order, view)
        if view.filled_qty > rec.venue_filled + _EPS:
            self._fill(rec, view.filled_qty, view.filled_avg_price, self._fill_time(rec, view),
                       execution_id=None, position_qty=None)
        if view.status != rec.status:
            self._set_status(rec, view.status)

    def _sync_account(self) -> None:
        """The venue's cash and positions win, but only over a difference seen at two syncs in a row
        with no fill in between: a fill on its way explains a passing difference (and would be counted
        twice if the snapshot were taken), while a trade made elsewhere, a fee or a dividend stays. The
        second look comes ``sync_recheck_seconds`` after the first. A sync that finds no difference
        lifts a halt for a restart that found no consistent view."""
        seen, self._differences = self._differences, {}
        account = self.venue.account()
        if abs(account.cash - self.cash) > 0.005:
            self._differences["cash"] = (self.cash, account.cash)
        held = self.venue.positions()
        for symbol, data in self.data_by_symbol.items():
            venue_qty = held[symbol].qty if symbol in held else 0.0
            if abs(self.positions[data].size - venue_qty) > _EPS:
                self._differences[symbol] = (self.positions[data].size, venue_qty)
        for key, (here, there) in self._differences.items():
            if seen.get(key) != (here, there) or self._fills_since_sync:
                continue
            log.error("%s %g here, %g at the broker at two syncs: taking the broker's", key, here, there)
            self.journal.record_event("book_corrected", f"{key} {here:g} in the book, {there:g} at the broker at "
                                                        f"two syncs: the broker's taken")
            if key == "cash":
                self.cash = account.cash
            else:
                self.positions[self.data_by_symbol[key]] = bt.Position(
                    _whole(there), held[key].avg_entry_price if key in held else 0.0)
        self._fills_since_sync = False
        if not self._differences:
            self.resume("reconcile", "a sync found the book and the broker in agreement")

    # ---- helpers -------------------------------------------------------------------------------
    def _compute_value(self) -> float:
        holdings = []
        for data, position in self.positions.items():
            if position.size:
                holdings.append((position, data.close[0] if len(data) else position.price))
        for held in self.foreign_positions.values():
            holdings.append((bt.Position(held.qty, held.avg_entry_price), held.avg_entry_price))
        return portfolio_value(self.cash, holdings, self.comminfo[None])

    def _fill_time(self, rec: Tracked, view: VenueOrder) -> dt.datetime:
        """The venue's fill time, else the symbol's latest bar (exchange time, like every time here)."""
        if view.filled_at is not None:
            return view.filled_at
        bar = getattr(self.data_by_symbol.get(rec.symbol), "last_bar", None)
        return bar.datetime if bar is not None else view.submitted_at or dt.datetime.now()

    def _opens_position(self, order) -> bool:
        size = self.positions[order.data].size
        return (order.isbuy() and size >= 0) or (order.issell() and size <= 0)

    def _refuse(self, family: list, reason: str) -> None:
        for order in family:
            if order.alive():
                if _is_margin(reason):
                    order.margin()
                else:
                    order.reject(self)
                self.notify(order)

    def _journal_family(self, request: OrderRequest, status: str, reason: str) -> None:
        for cid in request.client_order_ids:
            self._journal_status(cid, status, reason)
            if cid in self.tracked:
                self.tracked[cid].status, self.tracked[cid].reason = status, reason

    def _journal_status(self, cid: str, status: str, reason: str | None) -> None:
        self.journal.update_order(cid, status=status, status_reason=reason)

    def _fallback_id(self, order) -> str:
        """A deterministic id for an order the strategy did not tag (symbol, bar, type, count in bar)."""
        data = order.data
        bar = getattr(data, "last_bar", None)
        when = bar.datetime if bar is not None else bt.num2date(order.created.dt)
        key = (data._name, when, order.getordername())
        n = self._fallback_ids.get(key, 0) + 1
        self._fallback_ids[key] = n
        return f"{self.p.order_id_prefix}{data._name}-{when:%Y%m%d%H%M%S}-{order.getordername().lower()}-{n}"

    def _request(self, family: list) -> OrderRequest:
        """The venue request for a family (ValueError: not expressible): an entry and its bracket legs,
        or an OCO pair (two orders without a parent: a stop and a take-profit, see :meth:`_oco_pair`),
        which Alpaca takes as a limit order named by its take-profit, the stop its leg."""
        oco = len(family) == 2 and family[1].parent is None
        if oco:  # the order the request names: the take-profit
            head = next(order for order in family if order.exectype == bt.Order.Limit)
            if self._opens_position(head):
                raise ValueError("Alpaca's OCO orders only exit a position held")
            legs = family
        else:  # the entry
            head, legs = family[0], family[1:]
            if any(child.isbuy() == head.isbuy() or abs(child.created.size) != abs(head.created.size)
                   for child in legs):
                raise ValueError("bracket children must exit the entry's whole size")
        spec = _order_spec(head, bracket=bool(legs) and not oco)
        data = head.data
        bar = getattr(data, "last_bar", None)
        valid = head.valid
        return OrderRequest(
            client_order_id=head.info["client_order_id"], symbol=data._name,
            side="buy" if head.isbuy() else "sell", qty=abs(head.created.size),
            legs=tuple(_leg(order) for order in legs), order_class="oco" if oco else "",
            expires_at=bt.num2date(valid) if valid else None,
            bar_datetime=bar.datetime if bar is not None else bt.num2date(head.created.dt),
            reference_price=head.created.price, **spec)

    def _record_intents(self, request: OrderRequest, family: list) -> None:
        rows = self._intent_rows(request, family)
        self.journal.record_intents(rows)
        self._journal_ids.update(row["client_order_id"] for row in rows)

    @staticmethod
    def _intent_rows(request: OrderRequest, family: list) -> list[dict]:
        """Journal rows of an entry and its legs, or of an OCO pair's two legs (its take-profit the
        parent, as at Alpaca), with the strategy's reasons and plan (``order.info``)."""
        rows = []
        for order, cid, parent, kind in _members(request, family):
            leg = request.leg(kind) if kind is not None else None
            if leg is None:
                fields = dict(side=request.side, order_type=request.type, limit_price=request.limit_price,
                              stop_price=request.stop_price, trail_percent=request.trail_percent,
                              trail_price=request.trail_price)
            else:
                fields = dict(side=request.exit_side, order_type=leg.type, limit_price=leg.limit_price,
                              stop_price=leg.stop_price, trail_percent=None, trail_price=None)
            rows.append(dict(client_order_id=cid, symbol=request.symbol, qty=request.qty,
                             time_in_force=request.time_in_force, bar_datetime=request.bar_datetime,
                             reason=order.info.get("reason"), info=dict(order.info), parent_client_order_id=parent,
                             leg=kind, **fields))
        return rows

    def _crash_point(self, name: str) -> None:
        if self._crash and self._crash[0] == name:
            self._crash[1] -= 1
            if self._crash[1] <= 0:
                log.warning("test hook %s: killing the process at %s", CRASH_ENV, name)
                logging.shutdown()
                os.kill(os.getpid(), signal.SIGKILL)


class OrderFlush(bt.Analyzer):
    """Sends the orders the strategy placed in ``next`` as soon as it returns (analyzers run right
    after the strategy, by which time every order carries its client order id)."""

    def next(self):
        self.strategy.broker.flush()


# ---- module helpers ----------------------------------------------------------------------------
def _crash_plan(text: str) -> list | None:
    if not text:
        return None
    name, _, count = text.partition(":")
    return [name, int(count or 1)]


def adopt_venue_positions(venue, journal, *, held: dict | None = None, quiet: bool = False) -> None:
    """The operator's answer to a positions halt (``run.py live --adopt-positions``), and a new
    journal's start: the venue's positions (``held``, else read now) are right, so the journal's
    baseline becomes them less the fills it recorded."""
    held = venue.positions() if held is None else held
    baseline = collections.defaultdict(float, {symbol: position.qty for symbol, position in held.items()})
    for symbol, qty in _net_fills(journal.fills()).items():
        baseline[symbol] -= qty
    journal.set_meta(BASELINE_KEY, {s: q for s, q in baseline.items() if abs(q) > _EPS})
    words = ", ".join(f"{s} {p.qty:g}" for s, p in sorted(held.items())) or "flat"
    journal.record_event("positions_adopted", f"the broker's positions taken as right: {words}")
    (log.debug if quiet else log.warning)("the broker's positions taken as right: %s", words)


def _net_fills(fills: list[dict]) -> dict[str, float]:
    """Shares bought less shares sold, per symbol, over journal fill rows."""
    net = collections.defaultdict(float)
    for fill in fills:
        net[fill["symbol"]] += fill["qty"] if fill["side"] == "buy" else -fill["qty"]
    return net


def _open_families(rows) -> dict[str, tuple]:
    """{root client id: (root row, its legs' rows)} for each journal family (an entry and its legs, or an
    OCO pair) with an open member: a filled entry's open stop is reconciled with it."""
    by_id = {row.client_order_id: row for row in rows}
    legs = collections.defaultdict(list)
    for row in rows:
        if row.parent_client_order_id is not None:
            legs[row.parent_client_order_id].append(row)
    families = {}
    for row in rows:
        if row.open:
            root = by_id.get(row.parent_client_order_id, row)
            families.setdefault(root.client_order_id, (root, legs[root.client_order_id]))
    return families


def _same_account(before: tuple, after: tuple) -> bool:
    """Whether two (account, positions) reads show the same cash and position sizes (equity moves with
    prices; only a fill, a fee or a transfer moves these)."""
    (account_a, held_a), (account_b, held_b) = before, after
    return abs(account_a.cash - account_b.cash) <= 0.005 and \
        {s: p.qty for s, p in held_a.items()} == {s: p.qty for s, p in held_b.items()}


def _whole(qty: float):
    """Share counts as Backtrader keeps them: int when whole (venues report floats)."""
    return int(qty) if float(qty).is_integer() else qty


def _is_margin(reason: str | None) -> bool:
    """Alpaca's "insufficient buying power" (not its "insufficient qty available")."""
    return bool(reason) and "insufficient" in reason.lower() and "buying power" in reason.lower()


def _legs_by_kind(view: VenueOrder) -> dict[str, VenueOrder]:
    return {("take_profit" if leg.type == "limit" else "stop_loss"): leg for leg in view.legs}


def _members(request: OrderRequest, family: list) -> list[tuple]:
    """(Backtrader order, client order id, its parent's client order id, leg kind) for each order of a
    family as ``request`` sends it: an entry (no parent, no kind) and its legs, or an OCO's two legs in
    the strategy's order, the take-profit the parent."""
    if request.order_class == "oco":
        return [(order, leg.client_order_id,
                 None if leg.client_order_id == request.client_order_id else request.client_order_id, leg.kind)
                for order, leg in zip(family, request.legs)]
    return [(family[0], request.client_order_id, None, None)] + [
        (order, leg.client_order_id, request.client_order_id, leg.kind) for order, leg in zip(family[1:], request.legs)]


def _leg(order) -> Leg:
    """A bracket's or an OCO's exit: a take-profit limit, or a stop-loss stop (or stop-limit)."""
    o, cid = bt.Order, order.info["client_order_id"]
    if order.exectype == o.Limit:
        return Leg("take_profit", cid, limit_price=order.created.price)
    if order.exectype in (o.Stop, o.StopLimit):
        return Leg("stop_loss", cid, stop_price=order.created.price,
                   limit_price=order.created.pricelimit if order.exectype == o.StopLimit else None)
    raise ValueError(f"a bracket's or OCO's exit must be a stop, stop-limit or limit order, not {order.getordername()}")


def _order_spec(order, *, bracket: bool) -> dict:
    """Backtrader execution type -> venue order type, prices and time in force."""
    o = bt.Order
    lasting = "gtc" if order.valid is None else "day"
    if order.exectype == o.Market:
        return {"type": "market", "time_in_force": "gtc" if bracket and order.valid is None else "day"}
    if order.exectype == o.Close:
        return {"type": "market", "time_in_force": "cls"}
    if order.exectype == o.Limit:
        return {"type": "limit", "time_in_force": lasting, "limit_price": order.created.price}
    if order.exectype == o.Stop:
        return {"type": "stop", "time_in_force": lasting, "stop_price": order.created.price}
    if order.exectype == o.StopLimit:
        return {"type": "stop_limit", "time_in_force": lasting, "stop_price": order.created.price,
                "limit_price": order.created.pricelimit}
    if order.exectype == o.StopTrail:
        trail = ({"trail_percent": order.trailpercent * 100.0} if order.trailpercent
                 else {"trail_price": order.trailamount})
        return {"type": "trailing_stop", "time_in_force": lasting, "stop_price": order.created.price, **trail}
    raise ValueError(f"{order.getordername()} orders are not supported live")


def _exectype(row) -> tuple:
    """A journal row -> (Backtrader exectype, price, price limit, trail percent) to rebuild the order."""
    o = bt.Order
    if row.order_type == "market":
        return (o.Close if row.time_in_force == "cls" else o.Market), None, None, None
    if row.order_type == "limit":
        return o.Limit, row.limit_price, None, None
    if row.order_type == "stop":
        return o.Stop, row.stop_price, None, None
    if row.order_type == "stop_limit":
        return o.StopLimit, row.stop_price, row.limit_price, None
    return o.StopTrail, row.stop_price, None, (row.trail_percent or 0.0) / 100.0 or None


def _row_of(view: VenueOrder, *, reason: str, parent: str | None = None) -> dict:
    kind = None
    if parent is not None:
        kind = "take_profit" if view.type == "limit" else "stop_loss"
    return dict(client_order_id=view.client_order_id, venue_order_id=view.id, parent_client_order_id=parent,
                leg=kind, symbol=view.symbol, side=view.side, qty=view.qty, order_type=view.type,
                time_in_force=view.time_in_force, limit_price=view.limit_price, stop_price=view.stop_price,
                bar_datetime=None, reason=reason, info={"reason": reason}, status=view.status,
                filled_qty=view.filled_qty, filled_avg_price=view.filled_avg_price)
