"""Alpaca connections on alpaca-py: the clients, the keys, retries and the stream threads.

One :class:`AlpacaStore` per process owns:

- ``trading`` (``TradingClient``) and ``data`` (``StockHistoricalDataClient``), raw JSON (no model
  parsing on the hot path), paper trading unless ``paper=False``; every REST call goes through
  :meth:`AlpacaStore.call`: connection failures, timeouts, 429 and 5xx answers are retried with
  exponential backoff (``live.retry_*``), then :class:`brokers.venue.VenueUnavailable` (one line, no
  traceback, no secret); 4xx answers become the venue errors the broker understands (duplicate client
  order id, rejection with Alpaca's reason, not cancelable, not found);
- the websocket streams (``TradingStream`` trade updates, ``StockDataStream`` bars, ``NewsDataStream``
  headlines when the features read news), each on its own
  thread; alpaca-py reconnects them with exponential backoff, here bounded by ``live.retry_*``.

``observers`` (``ops.observer.Observers``) hear of a request that failed after its retries
(``broker_unreachable``) and of each stream connected again after a drop (``reconnected``).

URL overrides (``live.*_url``) point everything at a proxy or the local test server.

alpaca-py 0.44.0 has no public setting for an HTTP timeout or the streams' backoff bounds: the store
sets the client's ``requests`` session default timeout and the streams' ``_reconnect_*_backoff``
attributes (pinned in requirements.txt; checked by the integration tests).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
from urllib.parse import urlparse

import requests

from brokers.alpaca.credentials import Credentials, redact
from brokers.venue import DuplicateClientOrderId, NotCancelable, OrderRejected, VenueError, VenueUnavailable
from common.errors import UserError

log = logging.getLogger("live.alpaca")

PAPER_URL = "https://paper-api.alpaca.markets"


class NotFound(VenueError):
    """Alpaca answered 404 (no such order or position)."""


def backoff_delays(attempts: int, first: float, longest: float):
    """first, 2 x first, 4 x first ... capped at ``longest``; ``attempts - 1`` waits between attempts."""
    delay = first
    for _ in range(attempts - 1):
        yield min(delay, longest)
        delay *= 2


def _base_url(client) -> str:
    """A client's base URL: alpaca-py keeps the default ones as ``BaseURL`` members."""
    return str(getattr(client._base_url, "value", client._base_url))


class AlpacaStore:
    def __init__(self, credentials: Credentials, live_cfg, *, paper: bool = True, observers=None):
        from alpaca.data.historical.stock import StockHistoricalDataClient
        from alpaca.trading.client import TradingClient

        self.credentials = credentials
        self.cfg = live_cfg
        self.paper = paper
        self.observers = observers
        self.trading = TradingClient(credentials.key_id, credentials.secret_key, paper=paper, raw_data=True,
                                     url_override=live_cfg.trading_url or None)
        self.data = StockHistoricalDataClient(credentials.key_id, credentials.secret_key, raw_data=True,
                                              url_override=live_cfg.data_url or None)
        # the venue's cancel worker thread has its own client: a requests session is not shared by threads
        self.cancel_client = TradingClient(credentials.key_id, credentials.secret_key, paper=paper, raw_data=True,
                                           url_override=live_cfg.trading_url or None)
        for client in (self.trading, self.data, self.cancel_client):
            session = client._session
            session.request = functools.partial(session.request, timeout=live_cfg.request_timeout_seconds)
            # requests reads the proxy, .netrc and CA-bundle variables afresh on every request (a
            # scan of the environment and file checks, a few tenths of a millisecond an order): read
            # them once here. Alpaca authenticates by headers, so .netrc has nothing to add.
            session.proxies.update(requests.utils.get_environ_proxies(_base_url(client)))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            session.trust_env = False
        self.trading_host = urlparse(_base_url(self.trading)).netloc
        self._threads: list[tuple[object, threading.Thread]] = []

    # ---- REST ------------------------------------------------------------------------------
    def call(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with retries; errors as venue errors (see module doc)."""
        cfg = self.cfg
        delays = backoff_delays(cfg.retry_attempts, cfg.retry_min_seconds, cfg.retry_max_seconds)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = "no connection" if isinstance(exc, requests.ConnectionError) else "timed out"
            except Exception as exc:  # alpaca-py's APIError, by status
                status = getattr(exc, "status_code", None)
                if status is None or not (status == 429 or status >= 500):
                    raise self._classify(what, exc) from None
                problem = f"HTTP {status}"
            delay = next(delays, None)
            if delay is None:
                message = f"Alpaca unreachable ({what} at {self.trading_host}): {problem} after {attempt} attempts"
                if self.observers is not None:
                    self.observers.broker_unreachable(message)
                raise VenueUnavailable(message) from None
            log.warning("%s: %s (attempt %d of %d), retrying in %.1f s", what, problem, attempt,
                        cfg.retry_attempts, delay)
            time.sleep(delay)

    def _classify(self, what: str, exc: Exception) -> Exception:
        status = getattr(exc, "status_code", None)
        message = _api_message(exc)
        message = redact(message, self.credentials.secrets)
        if status == 401 or (status == 403 and "not authorized" in message.lower()):
            return UserError(f"Alpaca refused the keys ({what}: {message}); check {'paper' if self.paper else 'live'} "
                             f"keys in APCA_API_KEY_ID and APCA_API_SECRET_KEY")
        if status == 404:
            return NotFound(message)
        if status == 422 and "client_order_id must be unique" in message:
            return DuplicateClientOrderId(message)
        if status == 422 and "not cancelable" in message.lower():
            return NotCancelable(message)
        if status in (403, 422):
            return OrderRejected(message)
        return VenueError(f"{what}: HTTP {status}: {message}")

    # ---- streams -------------------------------------------------------------------------------
    def trading_stream(self, handler):
        """Trade updates (raw JSON dicts) to the coroutine ``handler``, on a background thread."""
        from alpaca.trading.stream import TradingStream

        stream = TradingStream(self.credentials.key_id, self.credentials.secret_key, paper=self.paper,
                               raw_data=True, url_override=self.cfg.trading_stream_url or None)
        stream.subscribe_trade_updates(handler)
        return self._run(stream, "alpaca-trade-updates", "trades")

    def bar_stream(self, handler, symbols, feed: str):
        """Minute bars (raw msgpack dicts) of ``symbols`` to the coroutine ``handler``, on a thread."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.live.stock import StockDataStream

        stream = StockDataStream(self.credentials.key_id, self.credentials.secret_key, raw_data=True,
                                 feed=DataFeed(feed), url_override=self.cfg.data_stream_url or None)
        stream.subscribe_bars(handler, *symbols)
        return self._run(stream, "alpaca-bars", "bars")

    def news_stream(self, handler, symbols):
        """News articles (raw msgpack dicts) of ``symbols`` to the coroutine ``handler``, on a thread
        (``live.news_stream_url``)."""
        from alpaca.data.live.news import NewsDataStream

        url = getattr(self.cfg, "news_stream_url", "") or None
        stream = NewsDataStream(self.credentials.key_id, self.credentials.secret_key, raw_data=True, url_override=url)
        stream.subscribe_news(handler, *symbols)
        return self._run(stream, "alpaca-news", "news")

    def news_client(self):
        """The REST news client (``live.data_url``), made at its first use, with the others' timeout."""
        if getattr(self, "_news_client", None) is None:
            from alpaca.data.historical.news import NewsClient

            client = NewsClient(self.credentials.key_id, self.credentials.secret_key, raw_data=True,
                                url_override=self.cfg.data_url or None)
            session = client._session
            session.request = functools.partial(session.request, timeout=self.cfg.request_timeout_seconds)
            session.proxies.update(requests.utils.get_environ_proxies(_base_url(client)))
            session.trust_env = False
            self._news_client = client
        return self._news_client

    def _run(self, stream, name: str, kind: str):
        stream._reconnect_min_backoff = self.cfg.retry_min_seconds
        stream._reconnect_max_backoff = self.cfg.retry_max_seconds
        if self.observers is not None:
            self._tell_reconnects(stream, kind)
        thread = threading.Thread(target=stream.run, name=name, daemon=True)
        thread.start()
        handle = (stream, thread)
        self._threads.append(handle)
        return handle

    def _tell_reconnects(self, stream, kind: str) -> None:
        """alpaca-py tells nobody when it reconnects: every connection its run loop opens
        (``_start_ws``: connect, authenticate, subscribe) after the first is one."""
        start_ws, observers = stream._start_ws, self.observers
        connections = 0

        async def counted_start_ws():
            nonlocal connections
            await start_ws()
            connections += 1
            if connections > 1:
                log.info("%s stream connected again", kind)
                observers.reconnected(kind)

        stream._start_ws = counted_start_ws

    def stop_stream(self, handle) -> None:
        stream, thread = handle
        loop = getattr(stream, "_loop", None)
        if loop is not None and loop.is_running():
            try:
                stream.stop()
                # closing the socket ends its 5-second receive wait now
                asyncio.run_coroutine_threadsafe(stream.close(), loop).result(timeout=5)
            except Exception as exc:  # a stream closing while it reconnects: nothing left to stop
                log.debug("stopping %s: %s", thread.name, exc)
        thread.join(timeout=5)
        if handle in self._threads:
            self._threads.remove(handle)

    def stop(self) -> None:
        for handle in list(self._threads):
            self.stop_stream(handle)


def _api_message(exc: Exception) -> str:
    text = str(exc)
    try:
        body = json.loads(text)
        return str(body.get("message", text))
    except (ValueError, AttributeError):
        return text.splitlines()[0] if text else type(exc).__name__
