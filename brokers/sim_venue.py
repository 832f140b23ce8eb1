"""A venue on the local matching engine: the broker of ``run.py live --replay`` (no keys, no network).

The bar clock hands it each timestamp's bars (``on_bars``, a ``BarClock`` listener) before the live
broker and the strategy see them, which is where BackBroker matches orders too; its trade updates then
reach the strategy through the same live broker as Alpaca's do.
"""
from __future__ import annotations

import datetime as dt
import queue
import threading

from brokers.alpaca.capabilities import ALPACA_CAPABILITIES
from brokers.simulator import MatchingEngine
from brokers.venue import (Account, MarketClock, OrderRequest, TradeUpdate, VenueOrder, VenuePosition,
                           select_orders)
from feeds.live_feed import BarGroup


class SimulatedVenue:
    """:class:`brokers.venue.Venue` over :class:`MatchingEngine` (thread-safe). It stands in for Alpaca in
    a replay, so it declares Alpaca's rules: the live broker then sends the same orders as live."""

    capabilities = ALPACA_CAPABILITIES

    def __init__(self, cash: float, *, commission_bps: float, slippage_bps: float):
        self.engine = MatchingEngine(cash, commission_bps=commission_bps, slippage_bps=slippage_bps)
        self.commission_bps = commission_bps
        self.updates: "queue.Queue[TradeUpdate]" = queue.Queue()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> "SimulatedVenue":
        """Cash and costs as the backtest uses them (``[backtest] cash``, ``[costs]``)."""
        return cls(cfg.backtest.cash, commission_bps=cfg.costs.commission_bps, slippage_bps=cfg.costs.slippage_bps)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def on_bars(self, group: BarGroup) -> None:
        with self._lock:
            events = self.engine.on_bars(group.datetime, group.bars)
        self._publish(events)

    def _publish(self, events) -> None:
        for event in events:
            self.updates.put(event)

    def submit(self, request: OrderRequest) -> VenueOrder:
        with self._lock:
            order = self.engine.submit(request)
            view = self.engine.view(order)
            events = self.engine.take_events()
        self._publish(events)
        return view

    def cancel(self, order_id: str) -> None:
        with self._lock:
            self.engine.cancel(order_id)
            events = self.engine.take_events()
        self._publish(events)

    def replace(self, order_id: str, *, qty=None, limit_price=None, stop_price=None, trail=None) -> VenueOrder:
        with self._lock:
            order = self.engine.replace(order_id, qty=qty, limit_price=limit_price, stop_price=stop_price,
                                        trail=trail)
            view = self.engine.view(order)
            events = self.engine.take_events()
        self._publish(events)
        return view

    def order_by_client_id(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            order = self.engine.by_client_id.get(client_order_id)
            return self.engine.view(order) if order is not None else None

    def get_order(self, order_id: str) -> VenueOrder | None:
        with self._lock:
            order = self.engine.orders.get(order_id)
            return self.engine.view(order) if order is not None else None

    def open_orders(self) -> list[VenueOrder]:
        with self._lock:
            return [self.engine.view(o) for o in self.engine.open_orders()]

    def closed_orders(self, after: dt.datetime) -> list[VenueOrder]:
        """Every closed entry submitted after ``after`` (no page limit here), oldest first."""
        with self._lock:
            entries = [self.engine.view(o) for o in self.engine.orders.values() if o.parent_id is None]
        return select_orders(entries, status="closed", after=after, direction="asc")

    def positions(self) -> dict[str, VenuePosition]:
        with self._lock:
            return self.engine.venue_positions()

    def account(self) -> Account:
        with self._lock:
            return self.engine.account()

    def clock(self) -> MarketClock:
        with self._lock:
            now = self.engine.now
        # a replay's market is open while bars come
        return MarketClock(timestamp=now, is_open=True, next_open=now, next_close=now)
