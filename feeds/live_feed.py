"""Live data feeds for Backtrader that move in step: one timestamp's bars at a time, for every symbol.

Backtrader's live loop (``Cerebro._runnext``) asks each feed for a bar once per loop; a live feed
returns ``None`` when it has none yet. Left alone, feeds whose bars arrive a little apart would each
advance on their own and the strategy would see one timestamp in several pieces. Here a
:class:`BarClock` releases one :class:`BarGroup` (every symbol's bar of one timestamp) at the start of
a loop, and each :class:`LiveBarsFeed` takes its bar from it; the next group is released only once
the current one has been taken. The clock is registered as a Backtrader store (``cerebro.addstore``),
whose ``get_notifications`` Backtrader calls at the start of every loop, before the feeds move: the
one point where a new timestamp can begin without tearing a loop in two.

Listeners see each group as it is released, before any feed or the broker does: the simulated venue
matches its orders there (as BackBroker does at the top of its ``next``), and the live runner saves
and restores the strategy's state there.

A :class:`ReplaySource` releases recorded bars (``run.py live --replay``); ``brokers.alpaca.data``
releases Alpaca's history, then its websocket bars.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import pandas as pd

from engine.compat import bt

log = logging.getLogger("live.feed")


class Bar(NamedTuple):
    datetime: dt.datetime  # naive, exchange time (the project's convention)
    open: float
    high: float
    low: float
    close: float
    volume: float
    openinterest: float = 0.0


@dataclass(frozen=True)
class BarGroup:
    """Every symbol's bar of one timestamp; ``live``: it arrived now (not history fetched for warm-up)."""

    datetime: dt.datetime
    bars: dict[str, Bar]
    live: bool


class BarSource(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_group(self, timeout: float) -> BarGroup | None | bool:
        """The next group; ``None`` if none arrived within ``timeout`` seconds; ``False`` when done."""


class BarClock:
    """Hands the feeds one timestamp's bars at a time, in step with Backtrader's loop (see module doc)."""

    def __init__(self, source: BarSource, poll_seconds: float = 0.25):
        self.source = source
        self.poll_seconds = poll_seconds
        self.listeners: list[Callable[[BarGroup], None]] = []
        self.current: BarGroup | None = None
        self.finished = False
        self._untaken: dict[str, Bar] = {}
        self._stop = threading.Event()

    def add_listener(self, listener: Callable[[BarGroup], None]) -> None:
        self.listeners.append(listener)

    def request_stop(self) -> None:
        """End the run after the current bar (from any thread: a signal handler, a session end)."""
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Cut the wait for a bar short (a trade update came in: the broker handles it now)."""
        wake = getattr(self.source, "wake", None)
        if wake is not None:
            wake()

    def go_live(self) -> None:
        """The broker has reconciled: a source that streams may subscribe now (``AlpacaBarSource``)."""
        go_live = getattr(self.source, "go_live", None)
        if go_live is not None:
            go_live()

    def bar_waiting(self) -> bool:
        """Whether a bar has arrived that the loop has not released yet (work between bars, such as
        the broker's sync with the venue, pauses for it)."""
        waiting = getattr(self.source, "bar_waiting", None)
        return waiting is not None and waiting()

    # ---- Backtrader's store protocol -------------------------------------------------------
    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def get_notifications(self) -> list:
        """Called by Backtrader at the start of each loop: release the next group if it is time."""
        self._advance()
        return []

    # ---- feeds -------------------------------------------------------------------------------
    def take(self, symbol: str) -> Bar | None | bool:
        """This loop's bar for ``symbol``; None: none now; False: the run is over."""
        bar = self._untaken.pop(symbol, None)
        if bar is not None:
            return bar
        return False if self.finished else None

    def _advance(self) -> None:
        if self.finished or self._untaken:
            return
        if self._stop.is_set():
            self.finished = True
            return
        group = self.source.next_group(self.poll_seconds)
        if group is False:
            self.finished = True
            return
        if group is None:
            return
        self.current = group
        self._untaken = dict(group.bars)
        for listener in self.listeners:
            listener(group)


class LiveBarsFeed(bt.feed.DataBase):
    """One symbol's bars from a :class:`BarClock`. ``last_bar`` is the bar the feed is on (exact
    datetime, where Backtrader's float clock can be a few microseconds off)."""

    params = (("clock", None),)

    def islive(self):
        return True

    def start(self):
        super().start()
        self.last_bar: Bar | None = None
        self._status = None

    def _load(self):
        bar = self.p.clock.take(self._name)
        if not bar:
            return bar
        group = self.p.clock.current
        status = self.LIVE if group is not None and group.live else self.DELAYED
        if status != self._status:
            self._status = status
            self.put_notification(status)
        self.last_bar = bar
        lines = self.lines
        lines.datetime[0] = bt.date2num(bar.datetime)
        lines.open[0] = bar.open
        lines.high[0] = bar.high
        lines.low[0] = bar.low
        lines.close[0] = bar.close
        lines.volume[0] = bar.volume
        lines.openinterest[0] = bar.openinterest
        return True


def bars_of(frame: pd.DataFrame) -> list[Bar]:
    """Validated bars (``feeds.loader``) as :class:`Bar` tuples."""
    stamps = frame.index.to_pydatetime()
    columns = [frame[name].to_numpy(dtype=float).tolist() for name in ("open", "high", "low", "close", "volume")]
    oi = frame["openinterest"].to_numpy(dtype=float).tolist() if "openinterest" in frame else [0.0] * len(frame)
    return [Bar(t, *values) for t, *values in zip(stamps, *columns, oi)]


def group_bars(bars: dict[str, list[Bar]], *, live: bool) -> list[BarGroup]:
    """Per-symbol bar lists -> groups in time order (a symbol without a bar at a time is absent there)."""
    by_time: dict[dt.datetime, dict[str, Bar]] = {}
    for symbol in sorted(bars):
        for bar in bars[symbol]:
            by_time.setdefault(bar.datetime, {})[symbol] = bar
    return [BarGroup(t, by_time[t], live) for t in sorted(by_time)]


class ReplaySource:
    """Recorded bars, released as fast as the loop takes them or at ``bars_per_second``."""

    def __init__(self, bars: dict[str, pd.DataFrame], bars_per_second: float = 0.0):
        if bars_per_second < 0:
            raise ValueError("bars_per_second must be >= 0")
        self.groups = group_bars({s: bars_of(f) for s, f in bars.items()}, live=True)
        self.bars_per_second = bars_per_second
        self._next = 0
        self._started_at = 0.0

    def start(self) -> None:
        self._started_at = time.monotonic()

    def stop(self) -> None:
        pass

    def next_group(self, timeout: float) -> BarGroup | None | bool:
        if self._next >= len(self.groups):
            return False
        if self.bars_per_second:
            due = self._started_at + self._next / self.bars_per_second
            wait = due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        group = self.groups[self._next]
        self._next += 1
        return group


def timeframe_of(index: pd.DatetimeIndex) -> dict:
    """Backtrader ``timeframe``/``compression`` keywords for bars on this index."""
    from feeds.loader import infer_bar_interval
    from feeds.pandas_feed import _TIMEFRAMES

    unit, compression = infer_bar_interval(index)
    return {"timeframe": _TIMEFRAMES[unit], "compression": int(compression)}


def make_feeds(clock: BarClock, symbols, timeframe: dict) -> list[LiveBarsFeed]:
    return [LiveBarsFeed(clock=clock, name=symbol, **timeframe) for symbol in symbols]


__all__ = ["Bar", "BarGroup", "BarSource", "BarClock", "LiveBarsFeed", "ReplaySource", "bars_of", "group_bars",
           "timeframe_of", "make_feeds"]
