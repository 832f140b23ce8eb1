"""A live session's headlines: journaled, scored and given to the strategy's feature engine.

When the run's features read news (the registry's sentiment group, ``data.news`` configured), the
live session subscribes the news stream of its symbols and, at its start, fetches over REST what was
published since the last journaled headline (or the warm-up's first bar). :class:`LiveNews` then

- at the session's start (:meth:`backfill`): journals the fetched articles not journaled before
  (``source`` rest, ``received_at`` now) — the ``news`` table is unique on (article, symbol);
- on the stream's thread (:meth:`received`): only queues the article with the time it came; nothing
  else is touched there;
- at each bar's release, on the trading thread, before the strategy's features update (:meth:`release`):
  the first time, replaces the engine's ``NewsBook`` (the CSV's headlines, which only decided that the
  registry has sentiment features) with every journaled headline of the symbols; then drains the
  queue: journals each new (article, symbol) and appends it to the book, so the features of the next
  bar that closes at or after its availability time count it.

**Availability time** (docs/live.md, "News"): a streamed headline counts from
``max(created_at, received_at, 1 ms after the close of the last bar already decided)``; a headline
fetched at the session's start from its ``created_at`` (it is in the book before any bar of the
session is evaluated). Live never counts a headline for a bar decided before it came, and the replay
of the session (:meth:`write_csv`: ``news.csv`` in the session's folder, the availability times in
exchange time) counts each for the same bar.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from brokers.journal import Journal
from features.sources import NewsBook, close_time

log = logging.getLogger("live.news")


# "just after" a bar's close: Backtrader's float clock (days as a double) gives the features a bar's
# time a few microseconds off its stamp, so a headline 1 microsecond after a close could count for it
JUST_AFTER = dt.timedelta(milliseconds=1)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class LiveNews:
    """``local``: naive UTC -> naive exchange time (the bars' clock); ``to_utc``: the reverse;
    ``daily_close``: ``features.daily_close_time`` (when a midnight-stamped bar closes)."""

    def __init__(self, journal: Journal, symbols: list[str], *, local: Callable[[dt.datetime], dt.datetime],
                 to_utc: Callable[[dt.datetime], dt.datetime], daily_close: dt.time):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.journal, self.symbols = journal, list(symbols)
        self._wanted = set(self.symbols)
        self.local, self.to_utc, self.daily_close = local, to_utc, daily_close
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.book: NewsBook | None = None
        self.given: list[dict] = []  # every journaled row given to the book, in order (write_csv)
        self.last_close: dt.datetime | None = None  # exchange time: the close of the last bar released
        self.drain_seconds: list[float] = []  # per release that drained something (the report's figure)
        self._analyzer = SentimentIntensityAnalyzer()
        self._attached = False

    # ---- the session's start ------------------------------------------------------------------
    def backfill(self, articles: list[dict]) -> int:
        """Journal the articles fetched at the session's start (not yet journaled ones); returns how many."""
        now = _utcnow()
        rows = [self._row(a, symbol, received_at=now, available_at=a["created_at"], source="rest",
                          score=self._score(a))
                for a in articles if _has_headline(a) for symbol in a["symbols"] if symbol in self._wanted]
        fresh = self.journal.record_news(rows)
        log.info("news: %d headline(s) fetched since the last one journaled, %d new", len(rows), len(fresh))
        return len(fresh)

    # ---- the stream's thread --------------------------------------------------------------------
    def received(self, article: dict) -> None:
        """An article from the stream: queued with its arrival time, for the trading thread."""
        self.queue.put((article, _utcnow()))

    def pending(self) -> int:
        return self.queue.qsize()

    # ---- the trading thread -----------------------------------------------------------------------
    def release(self, strategy, group_datetime: dt.datetime) -> None:
        """Before the bar of ``group_datetime`` reaches the strategy: give its engine the headlines."""
        if not self._attached:
            self._attached = True
            self._attach(strategy)
        if not self.queue.empty():
            started = time.perf_counter()
            self._drain()
            self.drain_seconds.append(time.perf_counter() - started)
        # from now on a headline arriving counts from after this bar's close (it is being decided)
        close = pd.Timestamp(close_time(pd.Timestamp(group_datetime), self.daily_close)).to_pydatetime()
        self.last_close = close if self.last_close is None else max(self.last_close, close)

    def _attach(self, strategy) -> None:
        hub = getattr(strategy, "features", None)
        engine = getattr(hub, "engine", None)
        if engine is None or getattr(engine, "news", None) is None:
            log.warning("news: the strategy reads no news features; headlines are journaled only")
            return
        rows = self.journal.news(self.symbols)
        self.book = NewsBook(self._frame(rows), engine.symbols, engine.config.news_neutral_band)
        engine.news = self.book
        self.given = list(rows)
        log.info("news: %d journaled headline(s) of %d symbols for the features", len(rows), len(self.symbols))

    def _drain(self) -> None:
        rows = []
        while True:
            try:
                article, received_at = self.queue.get_nowait()
            except queue.Empty:
                break
            symbols = [s for s in article["symbols"] if s in self._wanted]
            if not symbols or not _has_headline(article):  # load_news drops empty headlines: so does live
                continue
            available = max(article["created_at"], received_at)
            if self.last_close is not None:  # never for a bar already decided
                after = self.to_utc(self.last_close + JUST_AFTER)
                available = max(available, after)
            score = self._score(article)
            rows += [self._row(article, s, received_at=received_at, available_at=available, source="stream",
                               score=score) for s in symbols]
        fresh = self.journal.record_news(rows)
        if self.book is not None:
            for row in fresh:
                self.book.append(row["symbol"], pd.Timestamp(self.local(row["available_at"])).as_unit("ns").value,
                                 row["score"])
            self.given += fresh

    def _score(self, article: dict) -> float:
        """``features.sources.score_headlines`` of one headline (the replay scores the same text so)."""
        return float(self._analyzer.polarity_scores(str(article["headline"]))["compound"])

    def _row(self, article: dict, symbol: str, *, received_at, available_at, source: str, score: float) -> dict:
        return {"article_id": article["id"], "symbol": symbol, "created_at": article["created_at"],
                "received_at": received_at, "available_at": available_at, "source": source,
                "headline": article["headline"], "summary": article["summary"], "score": score}

    def _frame(self, rows: list[dict]) -> pd.DataFrame:
        """DataFrame(timestamp: availability in exchange time, symbol, headline, score)."""
        return pd.DataFrame({"timestamp": pd.DatetimeIndex([self.local(r["available_at"]) for r in rows],
                                                           dtype="datetime64[ns]"),
                             "symbol": [r["symbol"] for r in rows], "headline": [r["headline"] for r in rows],
                             "score": np.array([r["score"] for r in rows], dtype=np.float64)})

    # ---- the session's replay --------------------------------------------------------------------
    def write_csv(self, path: Path) -> Path:
        """The headlines the session's features read, as ``data.news`` reads them (``timestamp`` the
        availability time in exchange time; the article id, created_at and received_at, UTC, beside)."""
        frame = self._frame(self.given)
        # naive exchange time as the session's calendar gave it (load_news warns of the missing offset once;
        # an offset would be converted with features.exchange_timezone, which a 24/7 test calendar does not share)
        out = pd.DataFrame({"timestamp": [t.isoformat() for t in frame["timestamp"]], "symbol": frame["symbol"],
                            "headline": frame["headline"],
                            "article_id": [r["article_id"] for r in self.given],
                            "created_at": [f"{r['created_at'].isoformat()}Z" for r in self.given],
                            "received_at": [f"{r['received_at'].isoformat()}Z" for r in self.given]})
        out.to_csv(path, index=False)
        return path


def _has_headline(article: dict) -> bool:
    return bool(str(article.get("headline") or "").strip())
