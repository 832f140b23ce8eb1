"""The orders the live broker follows at the venue, and the book their fills move.

:class:`OrderTracker` keeps one :class:`Tracked` record per venue order (bracket legs and OCO legs
included), turns the venue's trade updates into Backtrader's notifications (Accepted, Partial,
Completed, Canceled, Expired, Rejected; Margin when the venue's reason says so, see
``VenueCapabilities.is_margin``), and books each fill once into cash and positions exactly as BackBroker
does (``brokers.accounting``).
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
from dataclasses import dataclass, field

from brokers.accounting import account_fill, portfolio_value
from brokers.live.mapping import EPS, row_of, whole
from brokers.venue import OrderRequest, TradeUpdate, VenueOrder, VenuePosition, drain
from engine.compat import bt

log = logging.getLogger("live.broker")

FILL_EVENTS = ("fill", "partial_fill")
ACCEPTED_STATUSES = ("new", "accepted", "held", "pending_cancel", "pending_replace", "done_for_day",
                     "accepted_for_bidding", "calculated", "stopped", "partially_filled")


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
        return self.filled_value / self.venue_filled if self.venue_filled > EPS else None

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1

    @property
    def final(self) -> bool:
        return self.status in ("filled", "canceled", "expired", "rejected", "replaced", "abandoned")


def group_of(rec: Tracked) -> str:
    """The bracket or OCO ``rec`` belongs to, named by its entry's client id (an entry's own)."""
    return rec.parent or rec.client_order_id


class TrackedOrders(dict):
    """:class:`Tracked` records by client id, in the order first followed: a plain dict to read, written
    by item only (``orders[cid] = rec``), which also files each record under its bracket or OCO
    (:meth:`group`), so that a cancel's answer reads its group, not every order of the session."""

    def __init__(self):
        super().__init__()
        self._groups: dict[str, list[Tracked]] = {}
        self._position: dict[str, int] = {}

    def __setitem__(self, cid: str, rec: Tracked) -> None:
        old = self.get(cid)
        if old is None:
            self._position[cid] = len(self)
        else:  # a restart's record replacing its placeholder
            self._groups[group_of(old)].remove(old)
        super().__setitem__(cid, rec)
        self._groups.setdefault(group_of(rec), []).append(rec)

    def group(self, key: str) -> list[Tracked]:
        return self._groups.get(key, [])

    def position(self, cid: str) -> int:
        """Where ``cid`` stands in the order followed."""
        return self._position[cid]

    def _unsupported(self, *args, **kwargs):
        raise TypeError("tracked orders are added by item (orders[cid] = rec) and never removed")

    update = setdefault = pop = popitem = clear = __delitem__ = _unsupported


class OrderTracker:
    """Tracked orders by client id, venue id and Backtrader ref; the book (cash, positions); the
    notifications waiting for the strategy. ``broker`` is the Backtrader broker the orders belong to
    (their accept/reject calls and commission schemes)."""

    observers = None  # ops.observer.Observers told of each order's status changes (None: nobody)

    def __init__(self, broker, venue, journal):
        self.broker = broker
        self.venue = venue
        self.journal = journal
        self.notifs: collections.deque = collections.deque()
        self.tracked = TrackedOrders()
        self.by_venue_id: dict[str, Tracked] = {}
        self.by_ref: dict[int, Tracked] = {}
        self._attached: dict[str, Tracked] = {}  # records given a Backtrader order, less those known ended
        self.journal_ids: set[str] = set()  # client ids the journal holds
        self.canceling: dict[str, set[str]] = {}  # symbol -> ids of orders asked to cancel, not yet done
        self.trailing: dict[int, object] = {}  # ref -> open trailing stop (see trail_stops)
        self.fills_since_sync = False
        # the book
        self.cash = 0.0
        self.positions = collections.defaultdict(bt.Position)
        self.data_by_symbol: dict = {}
        self.foreign_positions: dict = {}

    # ---- the book --------------------------------------------------------------------------------
    def value(self) -> float:
        holdings = []
        for data, position in self.positions.items():
            if position.size:
                holdings.append((position, data.close[0] if len(data) else position.price))
        for held in self.foreign_positions.values():
            holdings.append((bt.Position(held.qty, held.avg_entry_price), held.avg_entry_price))
        return portfolio_value(self.cash, holdings, self.broker.comminfo[None])

    def opens_position(self, order) -> bool:
        size = self.positions[order.data].size
        return (order.isbuy() and size >= 0) or (order.issell() and size <= 0)

    def _comminfo(self, symbol: str):
        data = self.data_by_symbol.get(symbol)
        return self.broker.getcommissioninfo(data) if data is not None else self.broker.comminfo[None]

    # ---- notifications ---------------------------------------------------------------------------
    def notify(self, order) -> None:
        self.notifs.append(order.clone())

    def in_flight(self) -> list[str]:
        """Client ids of the orders the strategy placed whose end it has not heard of: still working
        at the venue, or final with the notification waiting for the next bar."""
        waiting = {order.ref for order in self.notifs}
        flying = []
        for cid, rec in list(self._attached.items()):
            if self.tracked.get(cid) is rec and (rec.order.alive() or rec.order.ref in waiting):
                flying.append(cid)
            else:  # for good: a dead order is never notified again, and a new order is attached anew
                del self._attached[cid]
        return sorted(flying, key=self.tracked.position)

    def attach(self, rec: Tracked, order) -> None:
        """``order`` is the Backtrader order of ``rec``."""
        rec.order = order
        self.by_ref[order.ref] = rec
        self._attached[rec.client_order_id] = rec

    def refuse(self, family: list, reason: str) -> None:
        for order in family:
            if order.alive():
                if self.venue.capabilities.is_margin(reason):
                    order.margin()
                else:
                    order.reject(self.broker)
                self.notify(order)

    def journal_family(self, request: OrderRequest, status: str, reason: str) -> None:
        for cid in request.client_order_ids:
            self.journal_status(cid, status, reason)
            rec = self.tracked.get(cid)
            if rec is None or rec.status != status:
                self.observe(cid, rec.symbol if rec is not None else request.symbol, status, reason)
            if rec is not None:
                rec.status, rec.reason = status, reason

    def observe(self, cid: str, symbol: str, status: str, reason: str | None = None) -> None:
        """Tell the observers an order reached ``status``."""
        if self.observers is not None:
            self.observers.order_status(cid, symbol, status, reason)

    def journal_status(self, cid: str, status: str, reason: str | None) -> None:
        self.journal.update_order(cid, status=status, status_reason=reason)

    # ---- following venue orders ------------------------------------------------------------------
    def follow(self, cid: str, view: VenueOrder | None, order, parent=None, leg=None) -> Tracked:
        rec = self.tracked.get(cid)
        if rec is None:
            rec = Tracked(cid, order.data._name, "buy" if order.isbuy() else "sell", whole(abs(order.created.size)),
                          parent=parent, leg=leg, info=dict(order.info))
            self.tracked[cid] = rec
        if view is not None:
            self.see_view(rec, view)
        self.attach(rec, order)
        if order.exectype == bt.Order.StopTrail:
            self.trailing[order.ref] = order
        return rec

    def see_view(self, rec: Tracked, view: VenueOrder) -> None:
        if rec.venue_id is None:
            rec.venue_id = view.id
            self.by_venue_id[view.id] = rec
        rec.submitted_at = view.submitted_at or rec.submitted_at
        if rec.status != view.status:
            self.observe(rec.client_order_id, rec.symbol, view.status)
        rec.status = view.status
        self.journal.update_order(rec.client_order_id, venue_order_id=view.id, status=view.status)

    def adopt(self, view: VenueOrder, *, already_booked: bool) -> Tracked:
        """Follow a venue order (and its legs) this broker did not place, journaled as adopted."""
        self.journal.adopt(row_of(view, reason="adopted"))
        self.journal_ids.add(view.client_order_id)
        rec = Tracked(view.client_order_id, view.symbol, view.side, view.qty, info={"reason": "adopted"})
        self.tracked[rec.client_order_id] = rec
        self.see_view(rec, view)
        self.sync_fills(rec, view, already_booked)
        for leg in view.legs:
            if leg.client_order_id not in self.tracked and leg.id not in self.by_venue_id:
                self.journal.adopt(row_of(leg, reason="adopted", parent=view.client_order_id))
                self.journal_ids.add(leg.client_order_id)
                leg_rec = Tracked(leg.client_order_id, leg.symbol, leg.side, leg.qty, parent=view.client_order_id,
                                  info={"reason": "adopted"})
                self.tracked[leg.client_order_id] = leg_rec
                self.see_view(leg_rec, leg)
                self.sync_fills(leg_rec, leg, already_booked)
        return rec

    def trail_stops(self) -> None:
        """Move each open trailing stop's level (``order.created.price``, which strategies read) as
        BackBroker does after trying it on a bar: Backtrader's ``Order.trailadjust`` on the close. The
        simulated venue trails the same way, without a trade update. A venue that trails on its own
        (Alpaca follows the high-water mark) reports its level in updates and order lists, taken as they
        come (:meth:`see_trail`); this rule raises it in between (a sell's; lowers a buy's)."""
        for ref, order in list(self.trailing.items()):
            if not order.alive():
                del self.trailing[ref]
            elif order.status in (order.Accepted, order.Partial) and len(order.data):
                order.trailadjust(order.data.close[0])

    @staticmethod
    def see_trail(order, view: VenueOrder) -> None:
        """Where the venue has trailed a trailing stop to."""
        if order is not None and order.exectype == bt.Order.StopTrail and view.stop_price is not None:
            order.created.price = view.stop_price

    # ---- venue updates -> Backtrader notifications -----------------------------------------------
    def take_updates(self) -> None:
        for update in drain(self.venue.updates):
            self.on_update(update)

    def on_update(self, update: TradeUpdate) -> None:
        view = update.order
        if update.event == "order_cancel_rejected":
            rec = self.by_venue_id.get(view.id)
            if rec is not None:
                (log.debug if self.group_canceling(rec) else log.warning)(
                    "cancel of %s refused: %s", rec.client_order_id, update.reason)
                rec.cancel_requested = False
                self.canceling.get(rec.symbol, set()).discard(rec.client_order_id)
            return
        rec = self.by_venue_id.get(view.id) or self.tracked.get(view.client_order_id) or self._unmapped_leg(view)
        if rec is None:
            log.warning("update for %s order %s (%s %s) not placed by this strategy: adopted",
                        update.event, view.client_order_id, view.side, view.symbol)
            rec = self.adopt(view, already_booked=False)
        if rec.venue_id is None:
            rec.venue_id = view.id
            self.by_venue_id[view.id] = rec
        rec.submitted_at = rec.submitted_at or view.submitted_at
        self.see_trail(rec.order, view)
        if update.event in FILL_EVENTS:
            cumulative = view.filled_qty if view.filled_qty else rec.venue_filled + (update.qty or 0.0)
            self.fill(rec, cumulative, update.price if update.price is not None else view.filled_avg_price,
                      update.timestamp, execution_id=update.execution_id, position_qty=update.position_qty)
            if update.event == "fill":
                self.set_status(rec, "filled")
        elif update.event in ("new", "accepted", "pending_new"):
            self.set_status(rec, view.status if update.event == "new" else update.event)
        else:
            self.set_status(rec, update.event, update.reason)

    def group_canceling(self, rec: Tracked) -> bool:
        """Another order of ``rec``'s bracket or OCO was asked to cancel: the venue cancels the group
        together, so ``rec`` may be gone already when its own cancel arrives (a refusal to expect)."""
        return any(other is not rec and other.cancel_requested for other in self.tracked.group(group_of(rec)))

    def _unmapped_leg(self, view: VenueOrder) -> Tracked | None:
        """A bracket leg whose venue id the entry's answer did not give (Alpaca names legs with its own
        client ids): the leg of that symbol, kind and size still waiting for one."""
        kind = "take_profit" if view.type == "limit" else "stop_loss"
        return next((r for r in self.tracked.values() if r.venue_id is None and r.parent is not None
                     and r.leg == kind and r.symbol == view.symbol and r.qty == view.qty and not r.final), None)

    def set_status(self, rec: Tracked, status: str, reason: str | None = None) -> None:
        if rec.final and status != rec.status:
            return
        if status != rec.status:
            self.observe(rec.client_order_id, rec.symbol, status, reason)
        rec.status = status
        rec.reason = reason or rec.reason
        if rec.final and rec.cancel_requested:
            self.canceling.get(rec.symbol, set()).discard(rec.client_order_id)
        self.journal.update_order(rec.client_order_id, status=status, status_reason=reason,
                                  filled_qty=rec.venue_filled)
        if status == "rejected":
            log.warning("broker rejected order %s (%s %g %s): %s", rec.client_order_id, rec.side, rec.qty,
                        rec.symbol, reason or "no reason given")
        self.catch_up(rec)

    def catch_up(self, rec: Tracked) -> None:
        """Bring the Backtrader order to the venue's state, notifying each step."""
        order = rec.order
        if order is None or not order.alive():
            return
        if rec.status in ACCEPTED_STATUSES or rec.status == "filled":
            if order.status in (order.Created, order.Submitted):
                order.accept(self.broker)
                self.notify(order)
        if rec.venue_filled > rec.notified + EPS:  # at the venue's time of the fill (a restart's catch-up)
            self._give_fill(rec, whole(rec.venue_filled - rec.notified), rec.avg_price, rec.filled_at)
        if rec.status == "filled" and order.alive():
            order.completed()
            self.notify(order)
        elif rec.status in ("canceled", "expired", "rejected", "replaced", "abandoned"):
            if rec.status == "rejected" and self.venue.capabilities.is_margin(rec.reason):
                order.margin()
            elif rec.status == "rejected":
                order.reject(self.broker)
            elif rec.status == "expired":
                order.status = order.Expired
                order.executed.dt = order.data.datetime[0]
            else:
                order.cancel()
            self.notify(order)

    # ---- fills -----------------------------------------------------------------------------------
    def fill(self, rec: Tracked, cumulative: float, price: float, when: dt.datetime, *,
             execution_id: str | None, position_qty: float | None) -> None:
        new_qty = cumulative - rec.venue_filled
        if new_qty <= EPS:
            return  # seen already (a repeated update, or one a sync got first)
        new_qty = whole(new_qty)
        self.fills_since_sync = True
        book_qty = whole(max(0.0, cumulative - max(rec.venue_filled, rec.accounted)))
        rec.venue_filled = cumulative
        rec.filled_at = when
        rec.filled_value += new_qty * price
        rec.accounted = max(rec.accounted, cumulative)
        data = self.data_by_symbol.get(rec.symbol)
        comminfo = self._comminfo(rec.symbol)
        fill = None
        if data is not None and book_qty > EPS:
            position = self.positions[data]
            fill = account_fill(position, self.cash, rec.sign * book_qty, price, comminfo)
            self.cash = fill.cash
            position.update(rec.sign * book_qty, price, when)
        elif data is None and book_qty > EPS:
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
                order.accept(self.broker)
                self.notify(order)
            self._give_fill(rec, new_qty, price, when, fill if fill is not None and book_qty == new_qty else None)

    def _give_fill(self, rec: Tracked, qty: float, price: float, when, fill=None) -> None:
        """Record ``qty`` at ``price`` in the Backtrader order's execution and notify it. ``fill``: the
        accounting of this very fill; without it (fills that happened before a restart, already in the
        adopted position) the split into closing/opening parts is reconstructed for Backtrader's trades."""
        order = rec.order
        data = order.data
        comminfo = self.broker.getcommissioninfo(data)
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

    def sync_fills(self, rec: Tracked, view: VenueOrder, already_booked: bool) -> None:
        """Fills the venue reports for an order the broker starts following: recorded in the journal
        (if missing), booked only if they are not already in the positions taken from the venue."""
        if view.filled_qty <= rec.venue_filled + EPS:
            return
        price = view.filled_avg_price
        if already_booked:
            recorded = sum(f["qty"] for f in self.journal.fills(rec.client_order_id))
            missing = view.filled_qty - recorded
            if missing > EPS:
                self.journal.record_fill(
                    execution_id=f"reconciled-{view.id}-{view.filled_qty:g}", client_order_id=rec.client_order_id,
                    symbol=rec.symbol, side=rec.side, qty=missing, price=price,
                    commission=self._comminfo(rec.symbol).getcommission(missing, price),
                    filled_datetime=self.fill_time(rec, view), position_qty=None)
            rec.venue_filled = rec.accounted = view.filled_qty
            rec.filled_value = view.filled_qty * (price or 0.0)
            rec.filled_at = self.fill_time(rec, view)
            self.journal.update_order(rec.client_order_id, filled_qty=view.filled_qty, filled_avg_price=price)
        else:
            self.fill(rec, view.filled_qty, price, self.fill_time(rec, view), execution_id=None, position_qty=None)

    def fill_time(self, rec: Tracked, view: VenueOrder) -> dt.datetime:
        """The venue's fill time, else the symbol's latest bar (exchange time, like every time here)."""
        if view.filled_at is not None:
            return view.filled_at
        bar = getattr(self.data_by_symbol.get(rec.symbol), "last_bar", None)
        return bar.datetime if bar is not None else view.submitted_at or dt.datetime.now()
