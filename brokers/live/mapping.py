"""Backtrader orders <-> venue requests and journal rows: pure translations, no state but the fallback ids.

A family is what the strategy transmitted together: an entry with its bracket children (``parent=``),
or an OCO pair (a stop and a take-profit without a parent, see ``brokers.live.outbox``).
"""
from __future__ import annotations

from typing import Callable

from brokers.venue import Leg, OrderRequest, VenueOrder
from engine.compat import bt

EPS = 1e-9


def whole(qty: float):
    """Share counts as Backtrader keeps them: int when whole (venues report floats)."""
    return int(qty) if float(qty).is_integer() else qty


def request_for(family: list, *, opens_position: Callable[[object], bool], venue_name: str) -> OrderRequest:
    """The venue request for a family (ValueError: not expressible): an entry and its bracket legs,
    or an OCO pair (two orders without a parent: a stop and a take-profit), which the venue takes as a
    limit order named by its take-profit, the stop its leg. ``opens_position(order)``: whether an
    order would open a position rather than exit one (an OCO only exits)."""
    oco = len(family) == 2 and family[1].parent is None
    if oco:  # the order the request names: the take-profit
        head = next(order for order in family if order.exectype == bt.Order.Limit)
        if opens_position(head):
            raise ValueError(f"{venue_name}'s OCO orders only exit a position held")
        legs = family
    else:  # the entry
        head, legs = family[0], family[1:]
        if any(child.isbuy() == head.isbuy() or abs(child.created.size) != abs(head.created.size)
               for child in legs):
            raise ValueError("bracket children must exit the entry's whole size")
    spec = order_spec(head, bracket=bool(legs) and not oco)
    data = head.data
    bar = getattr(data, "last_bar", None)
    valid = head.valid
    return OrderRequest(
        client_order_id=head.info["client_order_id"], symbol=data._name,
        side="buy" if head.isbuy() else "sell", qty=abs(head.created.size),
        legs=tuple(leg_of(order) for order in legs), order_class="oco" if oco else "",
        expires_at=bt.num2date(valid) if valid else None,
        bar_datetime=bar.datetime if bar is not None else bt.num2date(head.created.dt),
        reference_price=head.created.price, **spec)


def order_spec(order, *, bracket: bool) -> dict:
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


def venue_type(order) -> str:
    """The venue's order type of a Backtrader order (its ``order_spec`` type)."""
    return order_spec(order, bracket=False)["type"]


def leg_of(order) -> Leg:
    """A bracket's or an OCO's exit: a take-profit limit, or a stop-loss stop (or stop-limit)."""
    o, cid = bt.Order, order.info["client_order_id"]
    if order.exectype == o.Limit:
        return Leg("take_profit", cid, limit_price=order.created.price)
    if order.exectype in (o.Stop, o.StopLimit):
        return Leg("stop_loss", cid, stop_price=order.created.price,
                   limit_price=order.created.pricelimit if order.exectype == o.StopLimit else None)
    raise ValueError(f"a bracket's or OCO's exit must be a stop, stop-limit or limit order, not {order.getordername()}")


def members(request: OrderRequest, family: list) -> list[tuple]:
    """(Backtrader order, client order id, its parent's client order id, leg kind) for each order of a
    family as ``request`` sends it: an entry (no parent, no kind) and its legs, or an OCO's two legs in
    the strategy's order, the take-profit the parent."""
    if request.order_class == "oco":
        return [(order, leg.client_order_id,
                 None if leg.client_order_id == request.client_order_id else request.client_order_id, leg.kind)
                for order, leg in zip(family, request.legs)]
    return [(family[0], request.client_order_id, None, None)] + [
        (order, leg.client_order_id, request.client_order_id, leg.kind) for order, leg in zip(family[1:], request.legs)]


def legs_by_kind(view: VenueOrder) -> dict[str, VenueOrder]:
    return {("take_profit" if leg.type == "limit" else "stop_loss"): leg for leg in view.legs}


def intent_rows(request: OrderRequest, family: list) -> list[dict]:
    """Journal rows of an entry and its legs, or of an OCO pair's two legs (its take-profit the
    parent, as the venue has it), with the strategy's reasons and plan (``order.info``)."""
    rows = []
    for order, cid, parent, kind in members(request, family):
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


def exectype_of(row) -> tuple:
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


def row_of(view: VenueOrder, *, reason: str, parent: str | None = None) -> dict:
    """The journal row of a venue order the broker adopts (it did not place it)."""
    kind = None
    if parent is not None:
        kind = "take_profit" if view.type == "limit" else "stop_loss"
    return dict(client_order_id=view.client_order_id, venue_order_id=view.id, parent_client_order_id=parent,
                leg=kind, symbol=view.symbol, side=view.side, qty=view.qty, order_type=view.type,
                time_in_force=view.time_in_force, limit_price=view.limit_price, stop_price=view.stop_price,
                bar_datetime=None, reason=reason, info={"reason": reason}, status=view.status,
                filled_qty=view.filled_qty, filled_avg_price=view.filled_avg_price)


class FallbackIds:
    """Deterministic client order ids for orders the strategy did not tag: symbol, bar, type, count in bar."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._counts: dict = {}

    def next_for(self, order) -> str:
        data = order.data
        bar = getattr(data, "last_bar", None)
        when = bar.datetime if bar is not None else bt.num2date(order.created.dt)
        key = (data._name, when, order.getordername())
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        return f"{self.prefix}{data._name}-{when:%Y%m%d%H%M%S}-{order.getordername().lower()}-{n}"
