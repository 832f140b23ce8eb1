"""Alpaca bars for the live feeds: history for the warm-up, then the websocket's minute bars.

:class:`AlpacaBarSource` is a ``feeds.live_feed.BarSource``:

- **warm-up**: the history bars of every symbol (Alpaca's bars endpoint, split- and dividend-adjusted)
  from far enough back for ``live.warmup_bars`` bars, released first as history groups, so the
  strategy's indicators at the first live bar are those a backtest on the same bars computes;
- **live** (``1Min``): bars from ``StockDataStream`` on a background thread, subscribed only once the
  broker has reconciled with Alpaca (:meth:`AlpacaBarSource.go_live`: until then the process does not
  look ready, and no bar can be decided on an unreconciled book), then topped up with the bars that
  completed since the history was read; the bars of one minute are
  released together once every symbol's has come or ``live.bar_complete_seconds`` after the first
  (Alpaca sends no bar for a minute without trades); a bar for a minute already released is dropped;
  after a gap (a reconnect), the missing minutes are fetched over REST first; alpaca-py reconnects
  the socket with exponential backoff;
- **watchdog**: :meth:`stale_reason` says why new entries must wait: no bar for
  ``live.stale_after_seconds`` while the market is open, or a bar that old being processed;
- the source ends at ``end`` (the session's close), or, with no streaming (``1Day``), after history.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pandas as pd

from brokers.alpaca.calendar import MarketCalendar
from brokers.alpaca.store import AlpacaStore
from feeds.live_feed import Bar, BarGroup, group_bars

log = logging.getLogger("live.bars")

INTERVALS = {"1Min": dt.timedelta(minutes=1), "1Day": dt.timedelta(days=1)}


class AlpacaBarSource:
    def __init__(self, store: AlpacaStore, symbols: list[str], calendar: MarketCalendar, live_cfg, *,
                 history_start: pd.Timestamp, end: pd.Timestamp | None, stream: bool):
        self.store, self.symbols, self.calendar, self.cfg = store, list(symbols), calendar, live_cfg
        self.timeframe = live_cfg.timeframe
        self.interval = INTERVALS[self.timeframe]
        self.history_start, self.end, self.stream = history_start, end, stream
        self.history: list[BarGroup] = []
        self.last_released: dt.datetime | None = None
        self.last_arrival = time.monotonic()
        self._pending: dict[dt.datetime, dict[str, Bar]] = {}
        self._first_seen: dict[dt.datetime, float] = {}
        self._ready = threading.Condition()
        self._released_group: BarGroup | None = None
        self._stream = None
        self._woken = False
        self._age_checked: BarGroup | None = None
        self._age_reason: str | None = None

    # ---- BarSource ------------------------------------------------------------------------------
    def start(self) -> None:
        self.history = self.fetch(self.history_start, None)
        log.info("history: %d bars of %d symbols from %s", len(self.history), len(self.symbols),
                 self.history[0].datetime if self.history else "-")
        self.last_arrival = time.monotonic()

    def go_live(self) -> None:
        """Subscribe to the bar stream (the broker has reconciled), then fetch the bars that completed
        since the history was read: the stream sends none from before its subscription. A bar that
        comes both ways is released once."""
        if not self.stream or self._stream is not None:
            return
        self._stream = self.store.bar_stream(self._on_bar, self.symbols, self.cfg.data_feed)
        last = self.history[-1].datetime if self.history else None
        start = self.calendar.to_utc(last + self.interval) if last is not None else self.history_start
        later = [g for g in self.fetch(start, None) if last is None or g.datetime > last]
        if later:
            log.info("%d bar(s) completed since the history was read: fetched", len(later))
            self.history.extend(later)
        self.last_arrival = time.monotonic()

    def stop(self) -> None:
        if self._stream is not None:
            self.store.stop_stream(self._stream)
            self._stream = None

    def next_group(self, timeout: float) -> BarGroup | None | bool:
        if self.history:
            return self._release(self.history.pop(0))
        if not self.stream or (self.end is not None and self.calendar.now() >= self.end):
            return False
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                group = self._complete_group()
                if group is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self._woken:
                    self._woken = False
                    return None
                self._ready.wait(min(left, self.cfg.bar_complete_seconds or left))
        missed = self._missed_before(group.datetime)
        if missed:
            self.history = missed + [group]
            return self._release(self.history.pop(0))
        return self._release(group)

    def wake(self) -> None:
        with self._ready:
            self._woken = True
            self._ready.notify_all()

    def bar_waiting(self) -> bool:
        """History not yet released, or a streamed bar (even of an incomplete minute) arrived."""
        if self.history:
            return True
        with self._ready:
            return bool(self._pending)

    # ---- the watchdog -----------------------------------------------------------------------------
    def stale_reason(self) -> str | None:
        limit = self.cfg.stale_after_seconds
        quiet = time.monotonic() - self.last_arrival
        if self.stream and quiet > limit and self.calendar.is_open(self.calendar.now()):
            return f"stale data: no bar for {quiet:.0f} s"
        group = self._released_group
        if group is None or not group.live:
            return None
        if self._age_checked is not group:  # once per bar: the calendar is slow next to an order
            self._age_checked = group
            age = (self.calendar.now() - self.calendar.bar_end(group.datetime, self.timeframe)).total_seconds()
            self._age_reason = f"stale data: the bar of {group.datetime} is {age:.0f} s old" if age > limit else None
        return self._age_reason

    # ---- internals -------------------------------------------------------------------------------
    def _release(self, group: BarGroup) -> BarGroup:
        self.last_released = group.datetime
        self._released_group = group
        return group

    async def _on_bar(self, raw: dict) -> None:
        """A websocket bar (alpaca-py raw: msgpack dict with a msgpack Timestamp ``t``)."""
        stamp = raw["t"]
        when = stamp.to_datetime() if hasattr(stamp, "to_datetime") else pd.Timestamp(stamp).to_pydatetime()
        bar = Bar(self.calendar.local(when), float(raw["o"]), float(raw["h"]), float(raw["l"]), float(raw["c"]),
                  float(raw["v"]))
        with self._ready:
            self.last_arrival = time.monotonic()
            if self.last_released is not None and bar.datetime <= self.last_released:
                log.debug("late bar %s %s dropped", raw.get("S"), bar.datetime)
                return
            bars = self._pending.setdefault(bar.datetime, {})
            bars[raw["S"]] = bar
            # the loop wakes for a minute's first bar (it times the wait for the rest from it) and for
            # its last, not for each in between: every wake-up takes the interpreter from this thread
            if len(bars) == 1:
                self._first_seen[bar.datetime] = time.monotonic()
                self._ready.notify_all()
            elif len(bars) >= len(self.symbols):
                self._ready.notify_all()

    def _complete_group(self) -> BarGroup | None:
        for stamp in [t for t in self._pending if self.last_released is not None and t <= self.last_released]:
            del self._pending[stamp], self._first_seen[stamp]  # released already, from history
        if not self._pending:
            return None
        first = min(self._pending)
        bars = self._pending[first]
        waited = time.monotonic() - self._first_seen[first]
        if len(bars) < len(self.symbols) and waited < self.cfg.bar_complete_seconds and len(self._pending) == 1:
            return None
        del self._pending[first], self._first_seen[first]
        return BarGroup(first, bars, live=True)

    def _missed_before(self, when: dt.datetime) -> list[BarGroup]:
        """Minutes of the same session between the last released bar and ``when`` (after a reconnect)."""
        last = self.last_released
        if last is None or when - last <= self.interval or when.date() != last.date():
            return []
        start = self.calendar.to_utc(last + self.interval)
        end = self.calendar.to_utc(when) - pd.Timedelta(microseconds=1)
        missed = [g for g in self.fetch(start, end) if last < g.datetime < when]
        if missed:
            log.warning("%d minute(s) missed between %s and %s fetched from history", len(missed), last, when)
        return [BarGroup(g.datetime, g.bars, live=True) for g in missed]

    def fetch(self, start: pd.Timestamp, end: pd.Timestamp | None) -> list[BarGroup]:
        """History bars of every symbol in [start, end] (end None: up to now), adjusted for splits and
        dividends."""
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        unit = TimeFrameUnit.Day if self.timeframe == "1Day" else TimeFrameUnit.Minute
        request = StockBarsRequest(symbol_or_symbols=self.symbols, timeframe=TimeFrame(1, unit),
                                   start=start.to_pydatetime(), end=end.to_pydatetime() if end is not None else None,
                                   adjustment=Adjustment.ALL, feed=DataFeed(self.cfg.data_feed))
        raw = self.store.call("history bars", self.store.data.get_stock_bars, request)
        per_symbol = {}
        for symbol, rows in (raw or {}).items():
            per_symbol[symbol] = [Bar(self.calendar.local(pd.Timestamp(r["t"])), float(r["o"]), float(r["h"]),
                                      float(r["l"]), float(r["c"]), float(r["v"])) for r in rows]
        groups = group_bars(per_symbol, live=False)
        if self.timeframe == "1Day":  # during a session Alpaca also returns the day's bar still forming
            complete_by = self.calendar.now()
            groups = [g for g in groups if self.calendar.bar_end(g.datetime, self.timeframe) <= complete_by]
        return groups
