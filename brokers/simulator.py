"""A matching engine that fills orders exactly as Backtrader's BackBroker does, without Backtrader orders.

It is the simulated venue of ``run.py live --replay`` and the exchange behind the local Alpaca test
server. One call of :meth:`MatchingEngine.on_bars` is one BackBroker ``next()`` (``bbroker.py``) as
``engine.backtest.configure_broker`` configures it:

- orders submitted since the last bar are checked for cash at their creation price, in submission
  order (BackBroker's ``check_submitted``): a shortfall rejects the order (Backtrader's Margin) and its
  bracket; the others are accepted;
- then every accepted, active order is tried, in the order they were accepted, against its symbol's
  latest bar (a symbol without a new bar keeps its last one, as in Backtrader):
  market: the open, only on a bar after the one it was decided on, slipped against the trader
  (``slip_open``); market-on-close (``time_in_force="cls"``, Backtrader's Close): the close of the first
  bar at or after the end of the decision day's session; limit: the open if it is better than the limit
  (slipped, never beyond the limit), else the limit if the bar reaches it; stop: triggered by the open
  (gap: filled at the slipped open) or by the bar's range (filled at the slipped stop); stop-limit:
  triggered like a stop, then filled like a limit; trailing stop: a stop that follows the close;
- percentage slippage with Backtrader's ``slip_open``/``slip_limit``/``slip_match``/``slip_out`` rules,
  commission in basis points of traded value; cash and positions through ``brokers.accounting``;
- brackets: the legs become active on the bar after the entry fills; a filled leg cancels the other;
- oco (Alpaca's exit pair for a position held, Backtrader's ``oco=``): both legs work at once, tried in
  the order the strategy placed them, as BackBroker tries them; one filled, canceled, refused or
  expired cancels the other. It must exit shares held and not held by other open orders.

Fills are reported as Alpaca-style trade updates (``new``, ``fill``, ``canceled``, ``expired``,
``rejected``), with the fill datetime Backtrader gives (the bar's).
"""
from __future__ import annotations

import collections
import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from brokers.accounting import account_fill, cash_check, portfolio_value, stock_commission
from brokers.venue import (Account, DuplicateClientOrderId, Leg, NotCancelable, OrderRejected, OrderRequest,
                           TradeUpdate, VenueOrder, VenuePosition)
from engine.compat import bt
from feeds.live_feed import Bar

INSUFFICIENT_FUNDS = "insufficient buying power"  # Alpaca's words; the live broker maps it to Margin
_SESSION_END = dt.time(23, 59, 59, 999989)  # Backtrader's default sessionend (a Close order's day end)
# a seeded order is at the venue: statuses the journal holds before the venue acknowledged it are "new" there
_SEEDED_STATUS = {"pending_new": "new", "accepted": "new"}


@dataclass(eq=False)
class SimOrder:
    id: str
    request: OrderRequest
    side: str
    qty: float
    type: str
    time_in_force: str
    limit_price: float | None
    stop_price: float | None
    reference_price: float
    bar_datetime: dt.datetime
    client_order_id: str
    parent_id: str | None = None
    order_class: str = "simple"
    status: str = "pending_new"
    active: bool = True
    triggered: bool = False
    annotated: float | None = None  # a Close order's last seen close (BackBroker's pannotated)
    filled_qty: float = 0.0
    filled_value: float = 0.0
    leg_ids: list[str] = field(default_factory=list)
    submitted_at: dt.datetime | None = None
    filled_at: dt.datetime | None = None

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1

    @property
    def remaining(self) -> float:
        return self.qty - self.filled_qty

    @property
    def alive(self) -> bool:
        return self.status in ("pending_new", "new", "accepted", "partially_filled", "held")

    @property
    def is_close_order(self) -> bool:
        return self.type == "market" and self.time_in_force == "cls"

    @property
    def session_end(self) -> dt.datetime:
        end = dt.datetime.combine(self.bar_datetime.date(), _SESSION_END)
        return end if end >= self.bar_datetime else end + dt.timedelta(days=1)


class MatchingEngine:
    """BackBroker's order handling over plain bars. Not thread-safe: the caller holds a lock."""

    def __init__(self, cash: float, *, commission_bps: float = 0.0, slippage_bps: float = 0.0,
                 slip_open: bool = True, slip_limit: bool = True, slip_match: bool = True, slip_out: bool = True):
        self.cash = float(cash)
        self.comminfo = stock_commission(commission_bps)
        self.commission_bps = commission_bps
        self.slip_perc = slippage_bps / 1e4
        self.slip_open, self.slip_limit, self.slip_match, self.slip_out = slip_open, slip_limit, slip_match, slip_out
        self.orders: dict[str, SimOrder] = {}
        self.by_client_id: dict[str, SimOrder] = {}
        self.positions: dict[str, bt.Position] = {}
        self.bars: dict[str, Bar] = {}
        self.previous_bars: dict[str, Bar] = {}
        self.now: dt.datetime | None = None
        self._pending: collections.deque[SimOrder] = collections.deque()
        self._submitted: collections.deque[SimOrder] = collections.deque()
        self._to_activate: collections.deque[SimOrder] = collections.deque()
        self._brackets: dict[str, collections.deque[SimOrder]] = {}  # parent id -> [parent?, legs...]
        self._events: list[TradeUpdate] = []
        self._ids = 0
        self._executions = 0

    # ---- requests ----------------------------------------------------------------------------
    def submit(self, request: OrderRequest, now: dt.datetime | None = None) -> SimOrder:
        """Take an order (with its legs); it is checked for cash and accepted on the next bar. An oco
        must exit shares held and not held by other open orders (OrderRejected, Alpaca's words)."""
        for cid in request.client_order_ids:
            if cid in self.by_client_id:
                raise DuplicateClientOrderId(f"client_order_id must be unique ({cid})")
        oco = request.order_class == "oco"
        if oco:
            available = self.position(request.symbol).size * (1 if request.side == "sell" else -1) \
                - self.held_qty(request.symbol, request.side)
            if request.qty > available:
                raise OrderRejected(f"insufficient qty available for order (requested: {request.qty:g}, "
                                    f"available: {max(available, 0.0):g})")
        when = now or self.now
        bar_dt = request.bar_datetime or (self.bars[request.symbol].datetime if request.symbol in self.bars else when)
        parent = self._new_order(request, request.client_order_id, request.side, request.type, request.limit_price,
                                 request.stop_price, self._reference(request), bar_dt, when)
        parent.order_class = request.order_class
        family = collections.deque([parent])
        for leg in request.legs:
            if leg.client_order_id == parent.client_order_id:
                continue  # an oco's take-profit: the parent itself
            price = leg.stop_price if leg.kind == "stop_loss" else leg.limit_price
            child = self._new_order(request, leg.client_order_id, request.exit_side, leg.type, leg.limit_price,
                                    leg.stop_price, price, bar_dt, when)
            # an oco's legs work at once; a bracket's wait for the entry's fill
            child.parent_id, child.active, child.order_class = parent.id, oco, request.order_class
            parent.leg_ids.append(child.id)
            family.append(child)
        self._brackets[parent.id] = family
        if oco:  # checked and queued in the order the strategy placed them (its stop may come first)
            self._submitted.extend(self.by_client_id[leg.client_order_id] for leg in request.legs)
        else:
            self._submitted.extend(family)
        return parent

    def cancel(self, order_id: str) -> None:
        order = self.orders.get(order_id)
        if order is None or not self._cancel(order):
            raise NotCancelable(f"order {order_id} is not cancelable")

    def replace(self, order_id: str, *, qty=None, limit_price=None, stop_price=None, trail=None) -> SimOrder:
        """Alpaca's replace: the old order ends ``replaced``; a new order (its id suffixed ``-r<n>``) joins
        the end of the queue."""
        old = self.orders.get(order_id)
        if old is None or old not in self._pending or old.filled_qty or old.parent_id or old.leg_ids:
            raise NotCancelable(f"order {order_id} cannot be replaced")
        if trail is not None:
            raise NotCancelable("the simulated venue replaces no trailing stops")
        self._pending.remove(old)
        old.status = "replaced"
        self._emit("replaced", old)
        number = sum(1 for o in self.orders.values() if o.client_order_id.startswith(old.client_order_id + "-r"))
        new = self._new_order(old.request, f"{old.client_order_id}-r{number + 1}", old.side, old.type,
                              old.limit_price if limit_price is None else limit_price,
                              old.stop_price if stop_price is None else stop_price, old.reference_price,
                              old.bar_datetime, self.now)
        new.qty = float(qty) if qty is not None else old.qty
        new.status = "new"
        self._brackets[new.id] = collections.deque([new])
        self._pending.append(new)
        self._emit("new", new)
        return new

    # ---- the bar loop (BackBroker.next) --------------------------------------------------------
    def on_bars(self, now: dt.datetime, bars: dict[str, Bar]) -> list[TradeUpdate]:
        """Advance to ``now`` with the symbols' new bars; returns the trade updates this produced."""
        self.now = now
        for symbol, bar in bars.items():
            if symbol in self.bars:
                self.previous_bars[symbol] = self.bars[symbol]
            self.bars[symbol] = bar
        while self._to_activate:
            self._to_activate.popleft().active = True
        self._check_submitted()
        self._pending.append(None)
        while True:
            order = self._pending.popleft()
            if order is None:
                break
            if self._expired(order):
                order.status = "expired"
                self._emit("expired", order)
                self._close_bracket(order, cancel=True)
            elif not order.active:
                self._pending.append(order)
            else:
                self._try_exec(order)
                if order.alive:
                    self._pending.append(order)
                elif order.status == "filled":
                    self._close_bracket(order)
        return self.take_events()

    def take_events(self) -> list[TradeUpdate]:
        events, self._events = self._events, []
        return events

    def observe_bars(self, now: dt.datetime, bars: dict[str, Bar]) -> None:
        """Know the bars (prices for the account, references for orders) without trying any order: the
        history a seeded engine's session warms up on, which its orders had already met before the seed."""
        self.now = now
        for symbol, bar in bars.items():
            if symbol in self.bars:
                self.previous_bars[symbol] = self.bars[symbol]
            self.bars[symbol] = bar

    # ---- seeding: an account mid-flight ----------------------------------------------------------
    def seed(self, positions: dict[str, tuple[float, float]], families: list[tuple[dict, list[dict]]]) -> None:
        """Start from an account that holds ``positions`` ({symbol: (shares, average price)}) and open
        orders: ``families``, each (root order, its legs) as the journal rows them (client_order_id,
        venue_order_id, symbol, side, qty, order_type, time_in_force, limit/stop/trail prices,
        bar_datetime, status, filled_qty, filled_avg_price, leg; filled_at, the last fill's time, if
        any). They are already accepted: a filled
        entry's legs work, an oco's both legs work, an unfilled entry waits with its legs held. The
        daily reconciliation's replay of a session that started with positions uses this."""
        for symbol, (size, price) in positions.items():
            self.positions[symbol] = bt.Position(size, price)
        for root, legs in families:
            if root["status"] == "intent":  # never sent: not at the venue (the start's reconciliation decides)
                continue
            oco = bool(legs) and legs[0]["side"] == root["side"]  # an oco's parent is its take-profit leg
            request_legs = tuple(Leg(leg["leg"], leg["client_order_id"], leg["limit_price"], leg["stop_price"])
                                 for leg in legs if leg["leg"] in ("stop_loss", "take_profit"))
            if oco:
                request_legs = (*request_legs, Leg("take_profit", root["client_order_id"], root["limit_price"]))
            request = OrderRequest(
                client_order_id=root["client_order_id"], symbol=root["symbol"], side=root["side"], qty=root["qty"],
                type=root["order_type"], time_in_force=root["time_in_force"], limit_price=root["limit_price"],
                stop_price=root["stop_price"], trail_percent=root["trail_percent"], trail_price=root["trail_price"],
                legs=request_legs, bar_datetime=root["bar_datetime"], order_class="oco" if oco else "")
            parent = self._seeded(request, root, request.order_class or ("bracket" if legs else "simple"))
            family = collections.deque([parent] if parent.alive else [])
            for row in legs:
                leg = self._seeded(request, row, parent.order_class)
                leg.parent_id = parent.id
                leg.active = oco or parent.status == "filled"
                if leg.active and leg.status == "held":  # the journal may not have heard of the activation
                    leg.status = "new"
                parent.leg_ids.append(leg.id)
                if leg.alive:
                    family.append(leg)
            if family:
                self._brackets[parent.id] = family
                self._pending.extend(family)

    def _seeded(self, request: OrderRequest, row: dict, order_class: str) -> SimOrder:
        price = row["stop_price"] if row["stop_price"] is not None else row["limit_price"]
        order = SimOrder(id=row.get("venue_order_id") or str(uuid.uuid4()), request=request, side=row["side"],
                         qty=float(row["qty"]), type=row["order_type"], time_in_force=row["time_in_force"],
                         limit_price=row["limit_price"], stop_price=row["stop_price"],
                         reference_price=price if price is not None else 0.0, bar_datetime=row["bar_datetime"],
                         client_order_id=row["client_order_id"], order_class=order_class,
                         status=_SEEDED_STATUS.get(row["status"], row["status"]),
                         filled_qty=float(row["filled_qty"] or 0.0),
                         filled_value=float(row["filled_qty"] or 0.0) * float(row["filled_avg_price"] or 0.0),
                         submitted_at=row["bar_datetime"], filled_at=row.get("filled_at"))
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order
        return order

    # ---- the account ---------------------------------------------------------------------------
    def position(self, symbol: str) -> bt.Position:
        return self.positions.setdefault(symbol, bt.Position())

    def account(self) -> Account:
        holdings = [(p, self.bars[s].close) for s, p in self.positions.items() if p.size and s in self.bars]
        equity = portfolio_value(self.cash, holdings, self.comminfo)
        return Account(cash=self.cash, equity=equity, buying_power=self.cash)

    def venue_positions(self) -> dict[str, VenuePosition]:
        return {s: VenuePosition(s, p.size, p.price) for s, p in self.positions.items() if p.size}

    def held_qty(self, symbol: str, side: str) -> float:
        """Shares open ``side`` orders hold (Alpaca's qty_available is the position less these): a
        bracket's or an oco's exits hold the same shares, counted once; a bracket's legs before the
        entry fills hold none."""
        groups: dict[str, float] = {}
        for o in self._working():
            bracket_leg = o.parent_id is not None and o.order_class != "oco"
            if o.alive and o.symbol == symbol and o.side == side \
                    and (not bracket_leg or self.orders[o.parent_id].status == "filled"):
                group = o.parent_id or o.id
                groups[group] = max(groups.get(group, 0.0), o.remaining)
        return sum(groups.values())

    def _working(self):
        """Every order still alive (a session's thousands of ended ones left out): those submitted since
        the last bar and those pending (bracket legs held for their entry included)."""
        return itertools.chain(self._submitted, (o for o in self._pending if o is not None))

    def open_orders(self) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.alive and o.parent_id is None]

    def view(self, order: SimOrder) -> VenueOrder:
        """The order as Alpaca shows it (legs nested under their entry)."""
        legs = tuple(self.view(self.orders[i]) for i in order.leg_ids)
        return VenueOrder(
            id=order.id, client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            qty=order.qty, type=order.type, status=order.status, time_in_force=order.time_in_force,
            filled_qty=order.filled_qty,
            filled_avg_price=order.filled_value / order.filled_qty if order.filled_qty else None,
            limit_price=order.limit_price, stop_price=order.stop_price, order_class=order.order_class,
            legs=legs, submitted_at=order.submitted_at, filled_at=order.filled_at)

    # ---- internals ---------------------------------------------------------------------------
    def _new_order(self, request, client_order_id, side, type_, limit_price, stop_price, reference_price,
                   bar_dt, when) -> SimOrder:
        self._ids += 1
        while str(uuid.UUID(int=self._ids)) in self.orders:  # a seeded order's id (``seed``)
            self._ids += 1
        order = SimOrder(id=str(uuid.UUID(int=self._ids)), request=request, side=side, qty=float(request.qty),
                         type=type_, time_in_force=request.time_in_force, limit_price=limit_price,
                         stop_price=stop_price, reference_price=reference_price, bar_datetime=bar_dt,
                         client_order_id=client_order_id, submitted_at=when)
        self.orders[order.id] = order
        self.by_client_id[client_order_id] = order
        return order

    def _reference(self, request: OrderRequest) -> float:
        if request.reference_price is not None:
            return request.reference_price
        if request.type in ("stop", "stop_limit", "trailing_stop"):
            return request.stop_price
        if request.type == "limit":
            return request.limit_price
        return self.bars[request.symbol].close

    def _emit(self, event: str, order: SimOrder, *, qty=None, price=None, when=None, reason=None) -> None:
        execution_id = None
        if event in ("fill", "partial_fill"):
            self._executions += 1
            execution_id = str(uuid.UUID(int=(1 << 64) + self._executions))
        position = self.positions.get(order.symbol)
        self._events.append(TradeUpdate(
            event=event, order=self.view(order), timestamp=when or self.now, qty=qty, price=price,
            position_qty=position.size if position is not None else 0.0, execution_id=execution_id,
            reason=reason))

    def _check_submitted(self) -> None:
        cash = self.cash
        clones: dict[str, bt.Position] = {}
        while self._submitted:
            order = self._submitted.popleft()
            if (order.parent_id or order.id) not in self._brackets:  # its group was closed meanwhile
                if order.order_class == "oco":
                    order.status = "canceled"  # the other leg was refused: one cancels the other
                    self._emit("canceled", order)
                else:
                    order.status = "rejected"  # its entry was refused
                    self._emit("rejected", order, reason="the bracket's entry order was rejected")
                continue
            position = clones.setdefault(order.symbol, self.position(order.symbol).clone())
            cash = cash_check(position, cash, order.sign * order.remaining, order.reference_price, self.comminfo)
            if cash >= 0.0:
                order.annotated = None
                order.status = "new" if order.active else "held"
                self._pending.append(order)
                self._emit("new", order)
                continue
            order.status = "rejected"
            self._emit("rejected", order, reason=INSUFFICIENT_FUNDS)
            self._close_bracket(order, cancel=True)

    def _expired(self, order: SimOrder) -> bool:
        if order.type == "market" and not order.is_close_order:
            return False
        expires = order.request.expires_at if order.parent_id is None or order.order_class == "oco" else None
        return expires is not None and self.bars[order.symbol].datetime > expires

    def _cancel(self, order: SimOrder, bracket: bool = False) -> bool:
        try:
            self._pending.remove(order)
        except ValueError:
            return False
        order.status = "canceled"
        self._emit("canceled", order)
        if not bracket:
            self._close_bracket(order, cancel=True)
        return True

    def _close_bracket(self, order: SimOrder, cancel: bool = False) -> None:
        """BackBroker's ``_bracketize``: a filled entry activates its legs; a filled leg, or any
        cancel, rejection or expiry, cancels the rest of the bracket. An oco is all legs (its
        ``_ococheck``): one filled, canceled, refused or expired cancels the other."""
        root = order.parent_id or order.id
        family = self._brackets.setdefault(root, collections.deque())
        if cancel or order.parent_id is not None or order.order_class == "oco":
            while family:
                self._cancel(family.popleft(), bracket=True)
            del self._brackets[root]
        else:
            family.popleft()
            for leg in family:
                self._to_activate.append(leg)
                leg.status = "new"

    def _try_exec(self, order: SimOrder) -> None:
        bar = self.bars[order.symbol]
        popen, phigh, plow, pclose = bar.open, bar.high, bar.low, bar.close
        if order.type == "market":
            if order.is_close_order:
                self._try_close(order, bar)
            elif bar.datetime > order.bar_datetime:  # only after the bar it was decided on
                if order.side == "buy":
                    self._execute(order, self._slip_up(phigh, popen, doslip=self.slip_open))
                else:
                    self._execute(order, self._slip_down(plow, popen, doslip=self.slip_open))
        elif order.type == "limit":
            self._try_limit(order, popen, phigh, plow, order.limit_price)
        elif order.type == "stop_limit" and order.triggered:
            self._try_limit(order, popen, phigh, plow, order.limit_price)
        elif order.type in ("stop", "trailing_stop"):
            self._try_stop(order, popen, phigh, plow, order.stop_price)
            if order.alive and order.type == "trailing_stop":
                self._trail(order, pclose)
        elif order.type == "stop_limit":
            self._try_stop_limit(order, popen, phigh, plow, pclose, order.stop_price, order.limit_price)

    def _try_close(self, order: SimOrder, bar: Bar) -> None:
        if bar.datetime > order.bar_datetime and bar.datetime >= order.session_end:
            if order.annotated and bar.datetime > order.session_end:
                self._execute(order, order.annotated, when=self.previous_bars[order.symbol].datetime)
            else:
                self._execute(order, bar.close)
            return
        order.annotated = bar.close

    def _try_limit(self, order, popen, phigh, plow, plimit) -> None:
        if order.side == "buy":
            if plimit >= popen:
                self._execute(order, self._slip_up(min(phigh, plimit), popen, doslip=self.slip_open, lim=True))
            elif plimit >= plow:
                self._execute(order, plimit)
        elif plimit <= popen:
            # BackBroker passes the limit (not max(low, limit)) as the floor here; kept for parity
            self._execute(order, self._slip_down(plimit, popen, doslip=self.slip_open, lim=True))
        elif plimit <= phigh:
            self._execute(order, plimit)

    def _try_stop(self, order, popen, phigh, plow, pstop) -> None:
        if order.side == "buy":
            if popen >= pstop:
                self._execute(order, self._slip_up(phigh, popen, doslip=self.slip_open))
            elif phigh >= pstop:
                self._execute(order, self._slip_up(phigh, pstop))
        elif popen <= pstop:
            self._execute(order, self._slip_down(plow, popen, doslip=self.slip_open))
        elif plow <= pstop:
            self._execute(order, self._slip_down(plow, pstop))

    def _try_stop_limit(self, order, popen, phigh, plow, pclose, pstop, plimit) -> None:
        if order.side == "buy":
            if popen >= pstop:
                order.triggered = True
                self._try_limit(order, popen, phigh, plow, plimit)
            elif phigh >= pstop:
                order.triggered = True
                if popen > pclose:
                    if plimit >= pstop:
                        self._execute(order, self._slip_up(phigh, pstop, lim=True))
                    elif plimit >= pclose:
                        self._execute(order, plimit)
                elif plimit >= pstop:
                    self._execute(order, self._slip_up(phigh, pstop, lim=True))
        elif popen <= pstop:
            order.triggered = True
            self._try_limit(order, popen, phigh, plow, plimit)
        elif plow <= pstop:
            order.triggered = True
            if popen <= pclose:
                if plimit <= pstop:
                    self._execute(order, self._slip_down(plow, pstop, lim=True))
                elif plimit <= pclose:
                    self._execute(order, plimit)
            elif plimit <= pstop:
                self._execute(order, self._slip_down(plow, pstop, lim=True))

    def _trail(self, order: SimOrder, close: float) -> None:
        """Backtrader's ``trailadjust``: the stop follows the close, never back."""
        req = order.request
        amount = req.trail_price if req.trail_price else close * (req.trail_percent / 100.0)
        if order.side == "buy":
            price = close + amount
            if price < order.stop_price:
                order.stop_price = price
        else:
            price = close - amount
            if price > order.stop_price:
                order.stop_price = price

    def _slip_up(self, pmax, price, doslip=True, lim=False):
        if not doslip or not self.slip_perc:
            return price
        pslip = price * (1 + self.slip_perc)
        if pslip <= pmax:
            return pslip
        if self.slip_match or (lim and self.slip_limit):
            return pslip if self.slip_out else pmax
        return None

    def _slip_down(self, pmin, price, doslip=True, lim=False):
        if not doslip or not self.slip_perc:
            return price
        pslip = price * (1 - self.slip_perc)
        if pslip >= pmin:
            return pslip
        if self.slip_match or (lim and self.slip_limit):
            return pslip if self.slip_out else pmin
        return None

    def _execute(self, order: SimOrder, price, when: dt.datetime | None = None) -> None:
        if price is None:
            return
        position = self.position(order.symbol)
        fill = account_fill(position, self.cash, order.sign * order.remaining, price, self.comminfo,
                            refuse_negative_cash=True)
        executed = fill.closed + fill.opened
        if executed:
            self.cash = fill.cash
            position.update(executed, price)
            order.filled_qty += abs(executed)
            order.filled_value += abs(executed) * price
            order.filled_at = when or self.bars[order.symbol].datetime
            order.status = "filled" if order.remaining <= 0 else "partially_filled"
            self._emit("fill" if order.status == "filled" else "partial_fill", order, qty=abs(executed),
                       price=price, when=order.filled_at)
        if fill.refused_open:
            order.status = "rejected"
            self._emit("rejected", order, reason=INSUFFICIENT_FUNDS)
            self._close_bracket(order, cancel=True)
