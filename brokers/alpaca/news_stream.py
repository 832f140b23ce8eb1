"""Alpaca news for a live session (``engine.live_news.LiveNews`` keeps, journals and counts it):
the real-time headlines of the session's symbols from alpaca-py's ``NewsDataStream`` (on the store's
stream thread, ``live.news_stream_url``), and the REST history since a time (``NewsClient`` at
``live.data_url``, every page: alpaca-py follows ``next_page_token``), both as the same plain dicts
(:func:`article`)."""
from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from brokers.alpaca.news import SYMBOLS_PER_REQUEST

log = logging.getLogger("live.news")


def utc_naive(value) -> dt.datetime:
    """An Alpaca time (ISO text with Z or an offset, a msgpack Timestamp, a datetime) as naive UTC."""
    if hasattr(value, "to_datetime"):  # msgpack.Timestamp (the stream)
        value = value.to_datetime()
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.tz_localize(None).to_pydatetime()


def article(raw: dict) -> dict:
    """An article of the stream (msgpack) or of REST (JSON): id (text), created_at (naive UTC),
    headline, summary, symbols (upper case)."""
    return {"id": str(raw["id"]), "created_at": utc_naive(raw["created_at"]),
            "headline": str(raw.get("headline") or ""), "summary": str(raw.get("summary") or ""),
            "symbols": [str(s).upper() for s in raw.get("symbols") or []]}


class AlpacaNews:
    """The session's news at Alpaca: :meth:`subscribe` the stream, :meth:`since` over REST."""

    def __init__(self, store, symbols: list[str]):
        self.store, self.symbols = store, list(symbols)
        self._stream = None

    def subscribe(self, handler) -> None:
        """``handler(article dict)`` for each streamed article, called on the stream's thread."""
        async def on_news(raw):
            try:
                handler(article(raw))
            except Exception:  # a malformed article must not end the stream
                log.exception("a streamed news article could not be read: %r", raw)

        self._stream = self.store.news_stream(on_news, self.symbols)

    def since(self, start: dt.datetime) -> list[dict]:
        """Every article of the symbols created at or after ``start`` (naive UTC), oldest first, once
        (50 symbols a request, as ``run.py news``; an article of symbols in two requests comes twice)."""
        from alpaca.data.requests import NewsRequest

        client, seen, articles = self.store.news_client(), set(), []
        for at in range(0, len(self.symbols), SYMBOLS_PER_REQUEST):
            request = NewsRequest(symbols=",".join(self.symbols[at:at + SYMBOLS_PER_REQUEST]),
                                  start=start.replace(tzinfo=dt.UTC), sort="asc")
            raw = self.store.call("news history", client.get_news, request) or {}
            for item in raw.get("news", []):
                if str(item["id"]) not in seen:
                    seen.add(str(item["id"]))
                    articles.append(article(item))
        articles.sort(key=lambda a: a["created_at"])
        return articles

    def stop(self) -> None:
        if self._stream is not None:
            self.store.stop_stream(self._stream)
            self._stream = None
