"""A local Alpaca-compatible server on 127.0.0.1 for tests and benchmarks (never for trading).

It answers the real ``alpaca-py`` clients (``url_override``) with payloads shaped after Alpaca's
documented API:

- REST (``http.server``): ``/v2/account``, ``/v2/clock``, ``/v2/calendar``, ``/v2/assets[/SYMBOL]``,
  ``/v2/orders`` (submit, list, by id, ``:by_client_order_id``, cancel, replace; a client order id
  used before is refused with 422 "client_order_id must be unique"; a buy beyond the cash with 403
  "insufficient buying power"; ``order_class`` bracket, oto and oco, an oco checked as Alpaca does
  (:meth:`AlpacaTestServer._oco_problem`); an oco, and any sell of a long position, refused beyond the
  shares not held by other open orders with 403 "insufficient qty available for order"; the list takes
  Alpaca's ``status``, ``after``, ``until``, ``direction``, ``nested`` and ``limit``), ``/v2/positions``,
  ``/v2/stocks/bars`` (paginated), ``/v1beta1/news`` (paginated; :meth:`AlpacaTestServer._news`);
- websockets (``websockets``): the trading stream ``/stream`` (JSON: authenticate, listen,
  ``trade_updates`` events ``new``, ``partial_fill``, ``fill``, ``canceled``, ``expired``,
  ``rejected``, ``replaced``), the market data stream ``/v2/iex`` (msgpack: connected,
  authenticated, subscription, bars ``T: b``) and the news stream ``/v1beta1/news`` (msgpack, the
  same handshake, ``{"action": "subscribe", "news": [symbols or "*"]}``, articles ``T: n``).

News: :meth:`add_news` stores articles (the REST history), :meth:`push_news` also sends them to the
news stream's subscribers; articles are dicts in Alpaca's JSON shape (``id``, ``headline``,
``summary``, ``author``, ``created_at``/``updated_at`` as UTC ISO strings ending in Z, ``symbols``,
``source``, ``url``, ``content``, ``images``), missing fields filled in. :meth:`rate_limit_next` answers
the next request(s) of a path with 429, as Alpaca does past its rate limit.

Fills come from ``brokers.simulator.MatchingEngine`` when a test pushes a bar (:meth:`push`). Tests
script the rest: :meth:`reject_next` (a refusal with a reason), :meth:`split_next_fill` (partial fills),
:meth:`drop_streams` (a disconnect), :meth:`on_request` (an action at a chosen request, such as killing the
client process or releasing a bar while it reconciles; an action may also return an HTTP status to answer with). :attr:`submissions` lists every client order id POSTed, refused
duplicates included, with its arrival time in :attr:`submitted_at` (and each bar's departure in
:attr:`bars_sent_at`: the latency benchmark's clock); :attr:`requests` every REST request as
(method, path, query), for tests that count them; :attr:`accepted` the client order ids it took;
:attr:`shorts` every (symbol, qty) a fill left short, for tests of a long-only strategy. Times are naive in ``tz`` inside, UTC ISO 8601 on
the wire.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import replace as dataclass_replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import msgpack
import pandas as pd

from brokers.alpaca.calendar import MarketCalendar
from brokers.simulator import MatchingEngine
from brokers.venue import (DuplicateClientOrderId, Leg, NotCancelable, OrderRejected, OrderRequest, TradeUpdate,
                           VenueOrder, select_orders)
from feeds.live_feed import Bar

ACCOUNT_ID = "4c6e2a26-0b3f-4b8e-9d2e-5f3a0c1e7d11"


def _iso(when: dt.datetime | None, tz: str) -> str | None:
    if when is None:
        return None
    return pd.Timestamp(when).tz_localize(tz).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _num(value) -> str | None:
    return None if value is None else f"{value:.10g}"


class AlpacaTestServer:
    def __init__(self, *, key_id: str = "PKTEST00000000000000", secret_key: str = "test-secret-0000",
                 cash: float = 100_000.0, commission_bps: float = 0.0, slippage_bps: float = 0.0,
                 tz: str = "UTC", calendar: str = "24/7"):
        self.key_id, self.secret_key, self.tz = key_id, secret_key, tz
        self.calendar = MarketCalendar(calendar)
        self.engine = MatchingEngine(cash, commission_bps=commission_bps, slippage_bps=slippage_bps)
        self.history: dict[str, list[Bar]] = {}
        self.submissions: list[str] = []
        self.submitted_at: list[float] = []  # time.perf_counter() of each POST /v2/orders, as submissions
        self.bars_sent_at: dict[dt.datetime, float] = {}  # time.perf_counter() when a bar went out
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query) of every REST request
        self.accepted: list[str] = []  # client order ids of the orders it took, in order
        self.shorts: list[tuple[str, float]] = []  # (symbol, qty) each time a fill left a position short
        self._hooks: list[list] = []  # [method, path prefix, when, action, times left] (see on_request)
        self.lock = threading.RLock()
        self._rejects: list[tuple[str | None, str, int]] = []
        self._splits: dict[str, int] = {}
        self._split_orders: dict[str, int] = {}
        self._trade_clients: set = set()
        self._data_clients: dict = {}
        self._news_clients: dict = {}  # news stream connection -> the symbols it subscribed ("*": all)
        self.news: list[dict] = []  # articles in Alpaca's JSON shape (add_news, push_news)
        self._next_news_id = 1
        self.http = self.loop = self.ws_server = None

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> "AlpacaTestServer":
        self.http = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, name="alpaca-test-http", daemon=True).start()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="alpaca-test-ws", daemon=True).start()
        self.ws_server = self._await(self._serve())
        return self

    async def _serve(self):
        from websockets.asyncio.server import serve

        return await serve(self._ws_handler, "127.0.0.1", 0, compression=None)

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.loop is not None:
            self.ws_server.close()
            self._await(self.ws_server.wait_closed())
            self.loop.call_soon_threadsafe(self.loop.stop)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def urls(self) -> dict[str, str]:
        """``[live]`` URL overrides that point alpaca-py here."""
        http = f"http://127.0.0.1:{self.http.server_address[1]}"
        ws = f"ws://127.0.0.1:{self.ws_server.sockets[0].getsockname()[1]}"
        return {"trading_url": http, "data_url": http, "trading_stream_url": f"{ws}/stream",
                "data_stream_url": f"{ws}/v2/iex", "news_stream_url": f"{ws}/v1beta1/news"}

    def _await(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    # ---- what tests do -----------------------------------------------------------------------------
    def add_history(self, symbol: str, bars: list[Bar]) -> None:
        with self.lock:
            self.history.setdefault(symbol, []).extend(bars)
            for bar in bars:
                self.engine.bars[symbol] = bar

    def push(self, bars: dict[str, Bar], settle_seconds: float = 0.05) -> list[TradeUpdate]:
        """A new bar for some symbols: orders match against it, then trade updates go out, and
        ``settle_seconds`` later the bars (on Alpaca a fill at a minute's open reaches the client long
        before that minute's bar; the two streams are separate sockets)."""
        when = max(bar.datetime for bar in bars.values())
        with self.lock:
            for symbol, bar in bars.items():
                self.history.setdefault(symbol, []).append(bar)
            updates = self._expand(self.engine.on_bars(when, bars))
            self._note_shorts()
        self._await(self._send_updates(updates))
        if updates and settle_seconds:
            time.sleep(settle_seconds)
        self._await(self._send_bars(bars))
        return updates

    def add_news(self, items: list[dict]) -> list[dict]:
        """Articles (Alpaca's JSON shape, see the module doc) the REST ``/v1beta1/news`` serves; missing
        fields are filled in (``id`` numbered from 1, ``updated_at`` = ``created_at``, empty text, no
        images, source ``benzinga``). Returns the stored articles."""
        with self.lock:
            stored = [self._news_item(item) for item in items]
            self.news.extend(stored)
        return stored

    def push_news(self, items: list[dict]) -> list[dict]:
        """:meth:`add_news`, and the articles sent to the news stream clients subscribed to one of
        their symbols (or to ``*``)."""
        stored = self.add_news(items)
        self._await(self._send_news(stored))
        return stored

    def rate_limit_next(self, path: str = "/v1beta1/news", times: int = 1) -> None:
        """The next ``times`` GET requests whose path starts with ``path`` are answered 429 (too many
        requests), unhandled."""
        self.on_request("GET", path, lambda: 429, when="before", times=times)

    def _news_item(self, item: dict) -> dict:
        article = dict(item)
        if "id" not in article:
            article["id"] = self._next_news_id
        self._next_news_id = max(self._next_news_id, int(article["id"]) + 1)
        if "created_at" not in article:
            raise ValueError("a news item needs created_at")
        article["created_at"] = _utc_text(article["created_at"])
        article["updated_at"] = _utc_text(article.get("updated_at") or article["created_at"])
        for name, default in (("headline", ""), ("summary", ""), ("author", ""), ("content", ""),
                              ("source", "benzinga"), ("url", "")):
            article.setdefault(name, default)
        article["symbols"] = list(article.get("symbols") or [])
        article["images"] = list(article.get("images") or [])
        return article

    def reject_next(self, reason: str = "insufficient buying power", *, symbol: str | None = None,
                    status: int = 403) -> None:
        """The next order (for ``symbol``) is refused at submission with Alpaca's error body."""
        with self.lock:
            self._rejects.append((symbol, reason, status))

    def split_next_fill(self, symbol: str, parts: int = 2) -> None:
        """The first fill of the next order submitted for ``symbol`` (a bracket's entry, an oco's leg that
        fills) arrives as ``parts`` partial fills."""
        with self.lock:
            self._splits[symbol] = parts

    def on_request(self, method: str, path: str, action, *, when: str = "after", times: int = 1) -> None:
        """Call ``action()`` at the next ``times`` REST requests of ``method`` whose path starts with
        ``path``: ``when="before"`` the server handles it (an action returning True drops the request
        unhandled, answered 503: the client's request never reached the broker), or ``"after"`` it was
        handled, before the answer goes out. An action ``before`` returning an int answers the request
        with that HTTP status, unhandled (429: :meth:`rate_limit_next`). Runs on the request's thread."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be before or after, not {when!r}")
        with self.lock:
            self._hooks.append([method, path, when, action, times])

    def clear_hooks(self) -> None:
        with self.lock:
            self._hooks.clear()

    def _run_hooks(self, when: str, method: str, path: str):
        """The first truthy result of the due actions (True: drop the request; an int: its status)."""
        with self.lock:
            due = []
            for hook in self._hooks:
                if hook[0] == method and path.startswith(hook[1]) and hook[2] == when and hook[4] > 0:
                    hook[4] -= 1
                    due.append(hook[3])
            self._hooks = [hook for hook in self._hooks if hook[4] > 0]
        results = [action() for action in due]
        return next((result for result in results if result), None)

    def drop_streams(self) -> None:
        """Close every websocket connection (the clients reconnect)."""
        async def close_all():
            for conn in list(self._trade_clients) + list(self._data_clients) + list(self._news_clients):
                await conn.close()
        self._await(close_all())

    def connected(self) -> tuple[int, int]:
        """(trade update clients listening, market data clients subscribed to some bars)."""
        return len(self._trade_clients), sum(1 for symbols in self._data_clients.values() if symbols)

    def news_connected(self) -> int:
        """News stream clients subscribed to some symbols."""
        return sum(1 for symbols in self._news_clients.values() if symbols)

    def positions(self) -> dict[str, float]:
        with self.lock:
            return {s: p.qty for s, p in self.engine.venue_positions().items()}

    # ---- REST ----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: dict | None, headers) -> tuple[int, object]:
        self.requests.append((method, path, query))
        if headers.get("APCA-API-KEY-ID") != self.key_id or headers.get("APCA-API-SECRET-KEY") != self.secret_key:
            return 401, {"code": 40110000, "message": "request is not authorized"}
        if self._hooks:
            dropped = self._run_hooks("before", method, path)
            if dropped == 429 and type(dropped) is int:
                return 429, {"code": 42910000, "message": "rate limit exceeded"}
            if type(dropped) is int:
                return dropped, {"code": dropped * 100000, "message": "answered by the test"}
            if dropped:
                return 503, {"code": 50300000, "message": "request dropped by the test"}
        with self.lock:
            answer = self._route(method, path, query, body)
            self._note_shorts()
        if self._hooks:
            self._run_hooks("after", method, path)
        return answer

    def _note_shorts(self) -> None:
        for symbol, held in self.engine.venue_positions().items():
            if held.qty < 0 and (symbol, held.qty) not in self.shorts:
                self.shorts.append((symbol, held.qty))

    def _route(self, method, path, query, body):
        parts = [p for p in path.split("/") if p]
        if parts == ["v1beta1", "news"] and method == "GET":
            return self._news(query)
        if parts[:1] != ["v2"]:
            return 404, {"code": 40410000, "message": "endpoint not found"}
        parts = parts[1:]
        if parts == ["account"]:
            return 200, self._account()
        if parts == ["clock"]:
            return 200, self._clock()
        if parts == ["calendar"]:
            return 200, self._calendar(query)
        if parts[:1] == ["assets"]:
            if len(parts) == 2:
                return 200, self._asset(parts[1])
            return 200, [self._asset(s) for s in sorted(self.history)]
        if parts == ["positions"]:
            return 200, [self._position(s) for s in sorted(self.engine.venue_positions())]
        if parts == ["stocks", "bars"]:
            return 200, self._bars(query)
        if parts == ["orders"] and method == "POST":
            return self._submit(body)
        if parts == ["orders"] and method == "GET":
            return self._orders(query)
        if parts == ["orders:by_client_order_id"]:
            order = self.engine.by_client_id.get(query.get("client_order_id", [""])[0])
            return (200, self._order_json(self.engine.view(order))) if order else \
                (404, {"code": 40410000, "message": "order not found"})
        if parts[:1] == ["orders"] and len(parts) == 2:
            order = self.engine.orders.get(parts[1])
            if order is None:
                return 404, {"code": 40410000, "message": "order not found"}
            if method == "DELETE":
                return self._cancel(order.id)
            if method == "PATCH":
                return self._replace(order.id, body or {})
            return 200, self._order_json(self.engine.view(order))
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _submit(self, body: dict):
        cid = body.get("client_order_id") or str(uuid.uuid4())
        self.submitted_at.append(time.perf_counter())
        self.submissions.append(cid)
        symbol = body["symbol"]
        if cid in self.engine.by_client_id:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        for i, (sym, reason, status) in enumerate(self._rejects):
            if sym is None or sym == symbol:
                del self._rejects[i]
                return status, {"code": 40310000 if status == 403 else 42210000, "message": reason}
        qty = float(body["qty"])
        last = self.engine.bars.get(symbol)
        if last is None:
            return 422, {"code": 42210000, "message": f"asset {symbol} not found"}
        oco = body.get("order_class") == "oco"
        if body["side"] == "buy" and not oco and qty * last.close > self.engine.cash:
            return 403, {"code": 40310000, "message": "insufficient buying power"}
        held = self.engine.position(symbol).size
        if body["side"] == "sell" and not oco and held > 0:
            # Alpaca holds a position's shares for its open exits (an oco's: the engine checks)
            available = held - self.engine.held_qty(symbol, "sell")
            if qty > available:
                return 403, {"code": 40310000, "message": f"insufficient qty available for order (requested: "
                                                          f"{qty:g}, available: {max(available, 0.0):g})"}
        legs = []
        if body.get("stop_loss"):
            sl = body["stop_loss"]
            legs.append(Leg("stop_loss", f"{cid}-sl", stop_price=float(sl["stop_price"]),
                            limit_price=float(sl["limit_price"]) if sl.get("limit_price") else None))
        if body.get("take_profit"):
            # an oco's take-profit is the order itself (Alpaca makes it the parent, the stop its leg)
            legs.append(Leg("take_profit", cid if oco else f"{cid}-tp",
                            limit_price=float(body["take_profit"]["limit_price"])))
        limit_price = _float(body.get("limit_price"))
        if oco:
            problem = self._oco_problem(body, legs, limit_price)
            if problem:
                return 422, {"code": 42210000, "message": problem}
            limit_price = legs[1].limit_price
        try:
            request = OrderRequest(
                client_order_id=cid, symbol=symbol, side=body["side"], qty=qty, type=body["type"],
                time_in_force=body["time_in_force"], limit_price=limit_price,
                stop_price=_float(body.get("stop_price")), trail_percent=_float(body.get("trail_percent")),
                trail_price=_float(body.get("trail_price")), legs=tuple(legs), bar_datetime=last.datetime,
                order_class="oco" if oco else "")
        except ValueError as exc:
            return 422, {"code": 42210000, "message": str(exc)}
        if request.type == "trailing_stop":
            amount = request.trail_price or last.close * request.trail_percent / 100.0
            request = dataclass_replace(request, stop_price=last.close - amount if request.side == "sell"
                                        else last.close + amount)
        try:
            order = self.engine.submit(request, now=last.datetime)
        except DuplicateClientOrderId:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        except OrderRejected as exc:  # an oco beyond the shares available
            return 403, {"code": 40310000, "message": exc.reason}
        self.accepted.append(cid)
        if symbol in self._splits:
            self._split_orders[order.id] = self._splits.pop(symbol)
        updates = self.engine.take_events()
        self._schedule(self._send_updates(updates))
        return 200, self._order_json(self.engine.view(order))

    @staticmethod
    def _oco_problem(body: dict, legs: list[Leg], limit_price: float | None) -> str | None:
        """Alpaca's rules for an oco. Documented ("OCO orders" in its orders documentation, alpaca-py's
        validators): an exit of a position held (checked by the engine, with Alpaca's qty_available), a
        limit order with ``take_profit.limit_price`` and ``stop_loss.stop_price``, the legs of the order's
        one side. Assumed, as Alpaca documents for a bracket's legs: day or gtc; a sell's take-profit
        above its stop, a buy's below (with no entry, the legs are checked against each other)."""
        if body["type"] != "limit":
            return "oco orders must be limit orders"
        if [leg.kind for leg in legs] != ["stop_loss", "take_profit"]:
            return "oco orders require take_profit.limit_price and stop_loss.stop_price"
        if body["time_in_force"] not in ("day", "gtc"):
            return "oco orders must be day or gtc orders"
        if limit_price is not None and limit_price != legs[1].limit_price:
            return "limit_price must equal take_profit.limit_price for an oco order"
        stop, take_profit = legs[0].stop_price, legs[1].limit_price
        if (take_profit > stop) != (body["side"] == "sell"):
            return (f"take_profit.limit_price must be {'above' if body['side'] == 'sell' else 'below'} "
                    f"stop_loss.stop_price for an oco {body['side']} order")
        return None

    def _cancel(self, order_id: str):
        try:
            self.engine.cancel(order_id)
        except NotCancelable:
            return 422, {"code": 42210000, "message": "order is not cancelable"}
        self._schedule(self._send_updates(self.engine.take_events()))
        return 204, None  # the canceled event follows on the stream, as on Alpaca

    def _replace(self, order_id: str, body: dict):
        try:
            new = self.engine.replace(order_id, qty=_float(body.get("qty")),
                                      limit_price=_float(body.get("limit_price")),
                                      stop_price=_float(body.get("stop_price")), trail=_float(body.get("trail")))
        except NotCancelable as exc:
            return 422, {"code": 42210000, "message": exc.reason}
        self._schedule(self._send_updates(self.engine.take_events()))
        return 200, self._order_json(self.engine.view(new))

    def _schedule(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    # ---- payloads ----------------------------------------------------------------------------------
    def _order_json(self, view: VenueOrder) -> dict:
        submitted = _iso(view.submitted_at, self.tz) or _iso(dt.datetime(2000, 1, 1), self.tz)
        return {
            "id": view.id, "client_order_id": view.client_order_id, "created_at": submitted,
            "updated_at": submitted, "submitted_at": submitted,
            "filled_at": _iso(view.filled_at, self.tz), "expired_at": None, "expires_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, view.symbol)), "symbol": view.symbol,
            "asset_class": "us_equity", "notional": None, "qty": _num(view.qty), "filled_qty": _num(view.filled_qty),
            "filled_avg_price": _num(view.filled_avg_price), "order_class": "" if view.order_class == "simple"
            else view.order_class, "order_type": view.type, "type": view.type, "side": view.side,
            "position_intent": "buy_to_open" if view.side == "buy" else "sell_to_close",
            "time_in_force": view.time_in_force, "limit_price": _num(view.limit_price),
            "stop_price": _num(view.stop_price), "status": view.status, "extended_hours": False,
            "legs": [self._order_json(leg) for leg in view.legs] or None, "trail_percent": None,
            "trail_price": None, "hwm": None,
        }

    def _update_json(self, update: TradeUpdate) -> dict:
        data = {"event": update.event, "order": self._order_json(update.order),
                "timestamp": _iso(update.timestamp, self.tz)}
        if update.event in ("fill", "partial_fill"):
            data.update(execution_id=update.execution_id, price=_num(update.price), qty=_num(update.qty),
                        position_qty=_num(update.position_qty))
        return {"stream": "trade_updates", "data": data}

    def _expand(self, updates: list[TradeUpdate]) -> list[TradeUpdate]:
        """Scripted partial fills: one fill becomes several, with the order's progress in each."""
        out = []
        for u in updates:
            family = self.engine.orders[u.order.id].parent_id or u.order.id  # an order, or its entry / oco
            parts = self._split_orders.pop(family, 0) if u.event == "fill" else 0
            if parts < 2:
                out.append(u)
                continue
            base = u.order.filled_qty - u.qty
            chunk = max(1.0, float(int(u.qty // parts)))
            done = 0.0
            for i in range(parts):
                qty = chunk if i < parts - 1 else u.qty - done
                done += qty
                last = i == parts - 1
                view = dataclass_replace(u.order, filled_qty=base + done,
                                         status="filled" if last else "partially_filled")
                sign = 1 if u.order.side == "buy" else -1
                out.append(dataclass_replace(u, event="fill" if last else "partial_fill", order=view, qty=qty,
                                             execution_id=f"{u.execution_id}-{i}",
                                             position_qty=u.position_qty - (u.qty - done) * sign))
        return out

    def _account(self) -> dict:
        account = self.engine.account()
        cash, equity = _num(account.cash), _num(account.equity)
        return {"id": ACCOUNT_ID, "account_number": "PA0000TEST", "status": "ACTIVE", "crypto_status": "INACTIVE",
                "currency": "USD", "buying_power": cash, "regt_buying_power": cash, "daytrading_buying_power": "0",
                "non_marginable_buying_power": cash, "cash": cash, "accrued_fees": "0",
                "pending_transfer_in": "0", "pending_transfer_out": "0", "portfolio_value": equity,
                "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
                "account_blocked": False, "created_at": "2024-01-02T14:30:00Z", "trade_suspended_by_user": False,
                "multiplier": "1", "shorting_enabled": False, "equity": equity, "last_equity": equity,
                "long_market_value": _num(account.equity - account.cash), "short_market_value": "0",
                "initial_margin": "0", "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0",
                "daytrade_count": 0}

    def _clock(self) -> dict:
        now = self.calendar.now()
        return {"timestamp": now.isoformat(), "is_open": self.calendar.is_open(now),
                "next_open": self.calendar.next_open(now).isoformat(),
                "next_close": self.calendar.next_close(now).isoformat()}

    def _calendar(self, query) -> list[dict]:
        cal = self.calendar.calendar
        start = pd.Timestamp(query.get("start", [str(self.calendar.now().date())])[0])
        end = pd.Timestamp(query.get("end", [str(start.date())])[0])
        rows = []
        for session in cal.sessions_in_range(start, end):
            opens = cal.session_open(session).tz_convert(self.calendar.tz)
            closes = cal.session_close(session).tz_convert(self.calendar.tz)
            rows.append({"date": f"{session:%Y-%m-%d}", "open": f"{opens:%H:%M}", "close": f"{closes:%H:%M}",
                         "session_open": f"{opens:%H%M}", "session_close": f"{closes:%H%M}",
                         "settlement_date": f"{session + pd.Timedelta(days=1):%Y-%m-%d}"})
        return rows

    @staticmethod
    def _asset(symbol: str) -> dict:
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "class": "us_equity", "exchange": "NASDAQ",
                "symbol": symbol, "name": symbol, "status": "active", "tradable": True, "marginable": True,
                "shortable": True, "easy_to_borrow": True, "fractionable": True,
                "maintenance_margin_requirement": 30, "attributes": []}

    def _position(self, symbol: str) -> dict:
        held = self.engine.positions[symbol]
        price = self.engine.bars[symbol].close
        value, cost = held.size * price, held.size * held.price
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
                "asset_class": "us_equity", "asset_marginable": True, "avg_entry_price": _num(held.price),
                "qty": _num(abs(held.size)), "side": "long" if held.size > 0 else "short",
                "market_value": _num(value), "cost_basis": _num(cost), "unrealized_pl": _num(value - cost),
                "unrealized_plpc": _num((value - cost) / cost if cost else 0.0), "unrealized_intraday_pl": "0",
                "unrealized_intraday_plpc": "0", "current_price": _num(price), "lastday_price": _num(price),
                "change_today": "0", "qty_available": _num(abs(held.size) - self.engine.held_qty(
                    symbol, "sell" if held.size > 0 else "buy"))}

    def _orders(self, query):
        """Alpaca's order list: ``status`` open (default), closed or all; ``after`` / ``until``: submitted
        strictly after / before (RFC 3339); ``direction``: by submission time, desc (default) or asc;
        ``limit``: 50 by default, 500 at most; ``nested=true``: a bracket's legs under their entry, which
        alone decides whether the family is open or closed (a filled entry's open legs are then listed
        as closed, as Alpaca does); otherwise every order on its own."""
        def one(name, default=None):
            return query.get(name, [default])[0]

        try:
            after, until = (self._query_time(one(name)) for name in ("after", "until"))
            limit = int(one("limit", "50"))
            nested = one("nested", "false").lower() == "true"
            if not 1 <= limit <= 500:
                raise ValueError(f"limit must be between 1 and 500, not {limit}")
            views = [self.engine.view(o) for o in self.engine.orders.values() if not nested or o.parent_id is None]
            if not nested:
                views = [dataclass_replace(v, legs=()) for v in views]
            chosen = select_orders(views, status=one("status", "open"), after=after, until=until,
                                   direction=one("direction", "desc"), limit=limit)
        except ValueError as exc:
            return 422, {"code": 42210000, "message": str(exc)}
        return 200, [self._order_json(v) for v in chosen]

    def _query_time(self, text: str | None) -> dt.datetime | None:
        """An RFC 3339 time of a query (UTC when it names no offset) as naive time in ``tz``."""
        if not text:
            return None
        stamp = pd.Timestamp(text)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return stamp.tz_convert(self.tz).tz_localize(None).to_pydatetime()

    def _bars(self, query) -> dict:
        symbols = query["symbols"][0].split(",")
        start = pd.Timestamp(query["start"][0]) if "start" in query else None
        end = pd.Timestamp(query["end"][0]) if "end" in query else None
        limit = int(query.get("limit", ["1000"])[0])
        offset = int(query.get("page_token", ["0"])[0] or 0)
        rows = []
        for symbol in sorted(symbols):
            for bar in self.history.get(symbol, []):
                stamp = pd.Timestamp(bar.datetime).tz_localize(self.tz).tz_convert("UTC")
                if (start is None or stamp >= start) and (end is None or stamp <= end):
                    rows.append((symbol, {"t": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "o": bar.open, "h": bar.high,
                                          "l": bar.low, "c": bar.close, "v": bar.volume, "n": 1, "vw": bar.close}))
        page = rows[offset:offset + limit]
        bars: dict[str, list] = {}
        for symbol, row in page:
            bars.setdefault(symbol, []).append(row)
        more = offset + limit < len(rows)
        return {"bars": bars, "next_page_token": str(offset + limit) if more else None}

    def _news(self, query):
        """Alpaca's ``GET /v1beta1/news``: ``symbols`` (comma-separated; an article tagged with any),
        ``start``/``end`` (inclusive, on ``created_at``; none: no bound), ``sort`` (``desc``, the
        default, or ``asc``, by ``created_at`` then ``id``), ``limit`` (1-50, default 10),
        ``include_content`` (else ``content`` is empty), ``exclude_contentless``, ``page_token``."""
        def one(name, default=None):
            return query.get(name, [default])[0]

        try:
            limit = int(one("limit") or 10)
            start, end = (pd.Timestamp(one(n)) if one(n) else None for n in ("start", "end"))
        except ValueError as exc:
            return 422, {"code": 42210000, "message": str(exc)}
        if not 1 <= limit <= 50:
            return 422, {"code": 42210000, "message": "invalid limit: must be between 1 and 50"}
        sort = (one("sort") or "desc").lower()
        if sort not in ("asc", "desc"):
            return 422, {"code": 42210000, "message": f"invalid sort {sort!r}"}
        start, end = (None if t is None else (t.tz_localize("UTC") if t.tzinfo is None else t) for t in (start, end))
        wanted = {s.strip().upper() for s in (one("symbols") or "").split(",") if s.strip()}
        include_content = (one("include_content") or "").lower() == "true"
        contentless_out = (one("exclude_contentless") or "").lower() == "true"
        offset = int(one("page_token") or 0)
        chosen = []
        for article in self.news:
            created = pd.Timestamp(article["created_at"])
            if wanted and not wanted.intersection(article["symbols"]):
                continue
            if (start is not None and created < start) or (end is not None and created > end):
                continue
            if contentless_out and not article["content"]:
                continue
            chosen.append((created, int(article["id"]), article))
        chosen.sort(key=lambda row: row[:2], reverse=sort == "desc")
        page = [dict(article, content=article["content"] if include_content else "")
                for _, _, article in chosen[offset:offset + limit]]
        more = offset + limit < len(chosen)
        return 200, {"news": page, "next_page_token": str(offset + limit) if more else None}

    # ---- websockets ------------------------------------------------------------------------------
    async def _ws_handler(self, conn) -> None:
        path = conn.request.path
        try:
            if path == "/stream":
                await self._trading_session(conn)
            elif path.startswith("/v2/"):
                await self._data_session(conn)
            elif path == "/v1beta1/news":
                await self._data_session(conn, self._news_clients, "news")
        except Exception:  # a client gone mid-message: its session simply ends
            pass
        finally:
            self._trade_clients.discard(conn)
            self._data_clients.pop(conn, None)
            self._news_clients.pop(conn, None)

    async def _trading_session(self, conn) -> None:
        async for raw in conn:
            message = json.loads(raw)
            action, data = message.get("action"), message.get("data") or {}
            if action == "authenticate":
                ok = data.get("key_id") == self.key_id and data.get("secret_key") == self.secret_key
                await conn.send(json.dumps({"stream": "authorization", "data": {
                    "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}))
                if not ok:
                    return
            elif action == "listen":
                streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                if streams:
                    self._trade_clients.add(conn)
                else:
                    self._trade_clients.discard(conn)
                await conn.send(json.dumps({"stream": "listening", "data": {"streams": streams}}))

    async def _data_session(self, conn, clients: dict | None = None, channel: str = "bars") -> None:
        """A market data stream (``channel`` bars) or the news stream (``news``): the same handshake."""
        clients = self._data_clients if clients is None else clients
        await conn.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        async for raw in conn:
            message = msgpack.unpackb(raw)
            action = message.get("action")
            if action == "auth":
                if message.get("key") != self.key_id or message.get("secret") != self.secret_key:
                    await conn.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
                    return
                clients[conn] = set()
                await conn.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
            elif action in ("subscribe", "unsubscribe") and conn in clients:
                if action == "subscribe":
                    clients[conn].update(message.get(channel, []))
                else:
                    clients[conn].difference_update(message.get(channel, []))
                if channel == "news":
                    reply = {"T": "subscription", "news": sorted(clients[conn])}
                else:
                    reply = {"T": "subscription", "trades": [], "quotes": [], "bars": sorted(clients[conn]),
                             "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [],
                             "corrections": [], "cancelErrors": []}
                await conn.send(msgpack.packb([reply]))

    async def _send_updates(self, updates: list[TradeUpdate]) -> None:
        for update in updates:
            text = json.dumps(self._update_json(update))
            for conn in list(self._trade_clients):
                try:
                    await conn.send(text)
                except Exception:  # a client gone: the disconnect tests want exactly this
                    self._trade_clients.discard(conn)

    async def _send_bars(self, bars: dict[str, Bar]) -> None:
        messages = []
        for conn, symbols in list(self._data_clients.items()):
            batch = []
            for symbol, bar in sorted(bars.items()):
                if symbol in symbols or "*" in symbols:
                    stamp = pd.Timestamp(bar.datetime).tz_localize(self.tz).tz_convert("UTC").to_pydatetime()
                    batch.append({"T": "b", "S": symbol, "o": bar.open, "h": bar.high, "l": bar.low, "c": bar.close,
                                  "v": bar.volume, "t": msgpack.Timestamp.from_datetime(stamp), "n": 1,
                                  "vw": bar.close})
            if batch:
                messages.append((conn, msgpack.packb(batch)))
        # stamped as the bars leave: encoding them is the server's time, not the client's
        self.bars_sent_at[max(bar.datetime for bar in bars.values())] = time.perf_counter()
        for conn, message in messages:
            try:
                await conn.send(message)
            except Exception:  # a client gone
                self._data_clients.pop(conn, None)


    async def _send_news(self, articles: list[dict]) -> None:
        """Each article as Alpaca's news stream sends it: ``T: n``, times as msgpack timestamps, no images."""
        messages = []
        for conn, symbols in list(self._news_clients.items()):
            batch = []
            for article in articles:
                if "*" in symbols or symbols.intersection(article["symbols"]):
                    message = {"T": "n", **{k: v for k, v in article.items() if k != "images"}}
                    for name in ("created_at", "updated_at"):
                        stamp = pd.Timestamp(article[name]).to_pydatetime()
                        message[name] = msgpack.Timestamp.from_datetime(stamp)
                    batch.append(message)
            if batch:
                messages.append((conn, msgpack.packb(batch)))
        for conn, message in messages:
            try:
                await conn.send(message)
            except Exception:  # a client gone
                self._news_clients.pop(conn, None)


def _utc_text(when) -> str:
    """A time (text with an offset or Z, naive text taken as UTC, a datetime) as Alpaca writes it."""
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp.microsecond == 0 and stamp.nanosecond == 0 \
        else stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client killed mid-request (the crash tests do that) is expected: no traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler_for(server: AlpacaTestServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Alpaca's servers
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def _serve(self, method):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = server.handle(method, url.path, parse_qs(url.query), body, self.headers)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_DELETE(self):
            self._serve("DELETE")

        def do_PATCH(self):
            self._serve("PATCH")

        def log_message(self, *args):
            pass

    return Handler
