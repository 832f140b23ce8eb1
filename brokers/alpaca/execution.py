"""Alpaca as a :class:`brokers.venue.Venue`: REST through :class:`brokers.alpaca.store.AlpacaStore`,
trade updates from its websocket stream.

Orders map one to one: market (``cls`` time in force for market-on-close), limit, stop, stop-limit,
trailing stop (``trail_percent`` or ``trail_price``); an entry with legs is a ``bracket`` (stop-loss and
take-profit) or ``oto`` (one of them) order, whose legs Alpaca activates when the entry fills and
cancels one with the other. Prices are rounded to Alpaca's ticks (a cent, or 1/100 cent below $1).
Timestamps become naive exchange time like the bars.

OCO (``OrderRequest.order_class == "oco"``). Documented (Alpaca's orders documentation, "OCO orders",
and its OCO announcement; alpaca-py 0.44's ``LimitOrderRequest`` with ``OrderClass.OCO``,
``TakeProfitRequest``, ``StopLossRequest``): one ``POST /v2/orders`` with ``order_class=oco``,
``type=limit``, the exit's ``side`` and ``qty``, ``take_profit.limit_price`` and ``stop_loss.stop_price``
(``stop_loss.limit_price`` for a stop-limit), no top-level ``limit_price`` (the documented example has
none; alpaca-py requires none for oco only); it only exits a position held, both legs of that one side,
and when one fills Alpaca cancels the other. Observed, not documented (QuantConnect's Alpaca adapter):
the answer is the take-profit limit order, named by the request's ``client_order_id``, with the stop in
``legs`` (its own id and client id); the stop leg may show ``held`` and get no ``new`` event; each leg's
fills and cancel come as trade updates of that leg. Assumed, as Alpaca documents for a bracket's legs:
time in force day or gtc, a sell's take-profit above its stop. Not documented, so left to the updates as
they come: what happens to the other leg while one is only partly filled, whether canceling one leg
cancels the other (the live broker cancels both), and replacing a leg (the broker never does: it cancels
and places a new pair).

Cancels go out on a worker thread (with their own HTTP session), in order: the strategy does not wait
for Alpaca's answer, which arrives as a ``canceled`` trade update, or as ``order_cancel_rejected``
(Alpaca's event name) when the cancel fails. The live broker holds back an exit until the cancel of
the orders holding its shares is answered.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pandas as pd
from alpaca.common.enums import Sort
from alpaca.trading import requests as alpaca_requests
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce

from brokers.alpaca.capabilities import ALPACA_CAPABILITIES
from brokers.alpaca.store import AlpacaStore, NotFound
from brokers.venue import Account, MarketClock, OrderRequest, TradeUpdate, VenueError, VenueOrder, VenuePosition

log = logging.getLogger("live.alpaca")

PAGE_LIMIT = 500  # the most orders Alpaca returns in one GET /v2/orders


def tick(price: float | None) -> float | None:
    """Alpaca's price increments: $0.01 at $1 and above, $0.0001 below."""
    if price is None:
        return None
    return round(price, 2) if price >= 1.0 else round(price, 4)


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


class AlpacaVenue:
    capabilities = ALPACA_CAPABILITIES

    def __init__(self, store: AlpacaStore, tz: str):
        self.store = store
        self.tz = tz
        self._zone = tz if isinstance(tz, dt.tzinfo) else ZoneInfo(tz)
        self.commission_bps = store.cfg.commission_bps
        self.updates: "queue.Queue[TradeUpdate]" = queue.Queue()
        self.wakeup = None  # called after each update (the live session wakes its loop with it)
        self._cancels = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alpaca-cancel")

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.store.trading_stream(self._on_message)

    def stop(self) -> None:
        self._cancels.shutdown(wait=True)
        self.store.stop()

    async def _on_message(self, message: dict) -> None:
        data = message.get("data", message)
        try:
            update = self.parse_update(data)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("unreadable trade update ignored: %s", exc)
            return
        self._publish(update)

    def _publish(self, update: TradeUpdate) -> None:
        self.updates.put(update)
        if self.wakeup is not None:
            self.wakeup()

    # ---- conversions -------------------------------------------------------------------------
    def _time(self, text):
        """Alpaca's RFC 3339 time (UTC, up to nanoseconds) -> naive exchange time. The standard library
        reads it 15 times faster than pandas (an update carries 3-6 of them); digits past the
        microsecond are dropped, as ``to_pydatetime`` drops them."""
        if not text:
            return None
        when = dt.datetime.fromisoformat(text)
        if when.tzinfo is None:
            raise ValueError(f"{text}: a time without an offset")
        return when.astimezone(self._zone).replace(tzinfo=None)

    def _utc(self, when: dt.datetime) -> dt.datetime:
        """Naive exchange time -> aware UTC (alpaca-py would take a naive time for UTC). In the autumn's
        repeated hour the earlier instant: a listing bound then starts early, never late."""
        stamp = pd.Timestamp(when).tz_localize(self.tz, ambiguous=True, nonexistent="shift_backward")
        return stamp.tz_convert("UTC").to_pydatetime()

    def parse_order(self, raw: dict) -> VenueOrder:
        return VenueOrder(
            id=str(raw["id"]), client_order_id=raw["client_order_id"], symbol=raw.get("symbol") or "",
            side=raw.get("side") or "", qty=_float(raw.get("qty")) or 0.0,
            type=raw.get("type") or raw.get("order_type") or "", status=raw["status"],
            time_in_force=raw.get("time_in_force") or "day", filled_qty=_float(raw.get("filled_qty")) or 0.0,
            filled_avg_price=_float(raw.get("filled_avg_price")), limit_price=_float(raw.get("limit_price")),
            stop_price=_float(raw.get("stop_price")), order_class=raw.get("order_class") or "simple",
            legs=tuple(self.parse_order(leg) for leg in raw.get("legs") or ()),
            submitted_at=self._time(raw.get("submitted_at")), filled_at=self._time(raw.get("filled_at")))

    def parse_update(self, data: dict) -> TradeUpdate:
        order = data["order"]
        return TradeUpdate(
            event=data["event"], order=self.parse_order(order), timestamp=self._time(data.get("timestamp")),
            qty=_float(data.get("qty")), price=_float(data.get("price")),
            position_qty=_float(data.get("position_qty")), execution_id=data.get("execution_id"),
            reason=data.get("reason") or (order.get("status") == "rejected" and "rejected by Alpaca") or None)

    @staticmethod
    def order_request(request: OrderRequest):
        """The alpaca-py request object for an order."""
        r = alpaca_requests
        common = dict(symbol=request.symbol, qty=request.qty, side=OrderSide(request.side),
                      time_in_force=TimeInForce(request.time_in_force), client_order_id=request.client_order_id)
        if request.order_class == "oco":  # an exit pair: the take-profit's price is the only limit price sent
            take_profit, stop_loss = request.leg("take_profit"), request.leg("stop_loss")
            return r.LimitOrderRequest(
                order_class=OrderClass.OCO, take_profit=r.TakeProfitRequest(limit_price=tick(take_profit.limit_price)),
                stop_loss=r.StopLossRequest(stop_price=tick(stop_loss.stop_price),
                                            limit_price=tick(stop_loss.limit_price)), **common)
        if request.legs:
            common["order_class"] = OrderClass(request.order_class)
            take_profit, stop_loss = request.leg("take_profit"), request.leg("stop_loss")
            if take_profit is not None:
                common["take_profit"] = r.TakeProfitRequest(limit_price=tick(take_profit.limit_price))
            if stop_loss is not None:
                common["stop_loss"] = r.StopLossRequest(stop_price=tick(stop_loss.stop_price),
                                                        limit_price=tick(stop_loss.limit_price))
        kind = request.type
        if kind == "market":
            return r.MarketOrderRequest(**common)
        if kind == "limit":
            return r.LimitOrderRequest(limit_price=tick(request.limit_price), **common)
        if kind == "stop":
            return r.StopOrderRequest(stop_price=tick(request.stop_price), **common)
        if kind == "stop_limit":
            return r.StopLimitOrderRequest(stop_price=tick(request.stop_price), limit_price=tick(request.limit_price),
                                           **common)
        return r.TrailingStopOrderRequest(trail_percent=request.trail_percent, trail_price=tick(request.trail_price),
                                          **common)

    # ---- the venue interface -----------------------------------------------------------------
    def submit(self, request: OrderRequest) -> VenueOrder:
        try:
            alpaca_request = self.order_request(request)
        except ValueError as exc:  # alpaca-py's own validation (e.g. a bracket with time in force cls)
            from brokers.venue import OrderRejected

            raise OrderRejected(str(exc).splitlines()[0]) from None
        raw = self.store.call("submit order", self.store.trading.submit_order, alpaca_request)
        return self.parse_order(raw)

    def cancel(self, order_id: str) -> None:
        self._cancels.submit(self._cancel_now, order_id)

    def _cancel_now(self, order_id: str) -> None:
        try:
            self.store.call("cancel order", self.store.cancel_client.cancel_order_by_id, order_id)
        except VenueError as exc:  # not cancelable (filled meanwhile), unreachable, refused
            now = pd.Timestamp.now(tz="UTC").tz_convert(self.tz).tz_localize(None).to_pydatetime()
            order = VenueOrder(id=str(order_id), client_order_id="", symbol="", side="", qty=0.0, type="",
                               status="unknown")
            self._publish(TradeUpdate(event="order_cancel_rejected", order=order, timestamp=now, reason=exc.reason))

    def replace(self, order_id: str, *, qty=None, limit_price=None, stop_price=None, trail=None) -> VenueOrder:
        change = alpaca_requests.ReplaceOrderRequest(qty=int(qty) if qty is not None else None,
                                                     limit_price=tick(limit_price), stop_price=tick(stop_price),
                                                     trail=trail)
        return self.parse_order(self.store.call("replace order", self.store.trading.replace_order_by_id,
                                                order_id, change))

    def order_by_client_id(self, client_order_id: str) -> VenueOrder | None:
        try:
            raw = self.store.call("find order", self.store.trading.get_order_by_client_id, client_order_id)
        except NotFound:
            return None
        return self.parse_order(raw)

    def get_order(self, order_id: str) -> VenueOrder | None:
        try:
            raw = self.store.call("get order", self.store.trading.get_order_by_id, order_id,
                                  alpaca_requests.GetOrderByIdRequest(nested=True))
        except NotFound:
            return None
        return self.parse_order(raw)

    def open_orders(self) -> list[VenueOrder]:
        raw = self.store.call("open orders", self.store.trading.get_orders,
                              alpaca_requests.GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True,
                                                               limit=PAGE_LIMIT))
        return [self.parse_order(o) for o in raw]

    def closed_orders(self, after: dt.datetime) -> list[VenueOrder]:
        raw = self.store.call("closed orders", self.store.trading.get_orders,
                              alpaca_requests.GetOrdersRequest(status=QueryOrderStatus.CLOSED, after=self._utc(after),
                                                               direction=Sort.ASC, nested=True, limit=PAGE_LIMIT))
        return [self.parse_order(o) for o in raw]

    def positions(self) -> dict[str, VenuePosition]:
        raw = self.store.call("positions", self.store.trading.get_all_positions)
        held = {}
        for p in raw:
            qty = float(p["qty"])
            held[p["symbol"]] = VenuePosition(p["symbol"], qty if p.get("side", "long") == "long" else -abs(qty),
                                              float(p["avg_entry_price"]))
        return held

    def account(self) -> Account:
        raw = self.store.call("account", self.store.trading.get_account)
        return Account(cash=float(raw["cash"]), equity=float(raw.get("equity") or raw["cash"]),
                       buying_power=float(raw.get("buying_power") or raw["cash"]))

    def clock(self) -> MarketClock:
        raw = self.store.call("clock", self.store.trading.get_clock)
        return MarketClock(timestamp=self._time(raw["timestamp"]), is_open=bool(raw["is_open"]),
                           next_open=self._time(raw["next_open"]), next_close=self._time(raw["next_close"]))
