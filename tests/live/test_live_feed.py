"""The bar clock hands out one timestamp at a time; the stale-data watchdog names why entries wait."""
import asyncio
import datetime as dt
import time

from brokers.alpaca.calendar import MarketCalendar
from brokers.alpaca.data import AlpacaBarSource
from config import load_config
from feeds.live_feed import Bar, BarClock, BarGroup, group_bars

T = dt.datetime(2024, 1, 2, 14, 30)


def bar(minute, close=10.0):
    return Bar(T + dt.timedelta(minutes=minute), close, close, close, close, 1.0)


class Scripted:
    """A bar source that gives the listed answers in turn."""

    def __init__(self, answers):
        self.answers = list(answers)

    def start(self):
        pass

    def stop(self):
        pass

    def next_group(self, timeout):
        return self.answers.pop(0) if self.answers else False


def test_clock_releases_the_next_timestamp_only_once_the_last_is_taken():
    groups = group_bars({"A": [bar(0), bar(1)], "B": [bar(1)]}, live=True)
    seen = []
    clock = BarClock(Scripted([groups[0], None, groups[1]]))
    clock.add_listener(lambda g: seen.append(g.datetime))
    clock.get_notifications()
    assert clock.take("B") is None and clock.take("A") == bar(0)
    clock.get_notifications()  # nothing came: B and A wait
    assert clock.take("A") is None
    clock.get_notifications()
    assert clock.take("A") == bar(1)
    clock.get_notifications()  # B's bar of this time is still untaken: no new timestamp
    assert seen == [T, T + dt.timedelta(minutes=1)]
    assert clock.take("B") == bar(1)
    clock.get_notifications()
    assert clock.take("A") is False and clock.finished


def test_watchdog_names_a_silent_feed_and_an_old_bar():
    cfg = load_config(overrides={"live.timeframe": "1Min", "live.calendar": "24/7",
                                 "live.stale_after_seconds": 0.05}).live
    calendar = MarketCalendar("24/7")
    now = calendar.local(calendar.now())
    source = AlpacaBarSource(None, ["A"], calendar, cfg, history_start=calendar.now(), end=None, stream=True)
    assert source.stale_reason() is None
    source.last_arrival = time.monotonic() - 1.0
    assert source.stale_reason().startswith("stale data: no bar for 1 s")
    source.last_arrival = time.monotonic()
    source._release(BarGroup(now - dt.timedelta(minutes=5), {"A": bar(0)}, live=True))
    assert source.stale_reason().startswith(f"stale data: the bar of {now - dt.timedelta(minutes=5)} is")
    source._release(BarGroup(now + dt.timedelta(minutes=1), {"A": bar(0)}, live=True))
    assert source.stale_reason() is None


def test_a_minute_is_released_when_every_symbol_has_its_bar_and_waits_meanwhile():
    """Streamed bars of one minute gather until every symbol has one; meanwhile a bar is waiting (the
    broker's sync pauses for it) but none is released."""
    cfg = load_config(overrides={"live.timeframe": "1Min", "live.calendar": "24/7",
                                 "live.bar_complete_seconds": 30.0}).live
    calendar = MarketCalendar("24/7")
    source = AlpacaBarSource(None, ["A", "B"], calendar, cfg, history_start=calendar.now(), end=None, stream=True)
    clock = BarClock(source)

    def arrive(symbol):
        raw = {"S": symbol, "t": "2024-01-02T14:30:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 100.0}
        asyncio.run(source._on_bar(raw))

    assert not clock.bar_waiting()
    arrive("A")
    assert clock.bar_waiting() and source.next_group(timeout=0.01) is None
    arrive("B")
    group = source.next_group(timeout=0.01)
    assert group.datetime == T and sorted(group.bars) == ["A", "B"] and group.bars["B"].close == 1.5
    assert not clock.bar_waiting()


def test_bars_stream_only_once_the_broker_reconciled_and_none_is_missed_or_doubled():
    """``start`` reads the history; the bar stream subscribes at ``go_live`` (after the broker's
    reconciliation), which also fetches the bars that completed in between. A bar that then also
    comes over the stream is released once."""
    cfg = load_config(overrides={"live.timeframe": "1Min", "live.calendar": "24/7",
                                 "live.bar_complete_seconds": 0.0}).live
    calendar = MarketCalendar("24/7")
    store = type("Store", (), {"subscribed": False})()

    def bar_stream(handler, symbols, feed):
        store.subscribed = True
        return "stream"

    store.bar_stream = bar_stream
    source = AlpacaBarSource(store, ["A"], calendar, cfg, history_start=calendar.now(), end=None, stream=True)
    served = [group_bars({"A": [bar(0), bar(1)]}, live=False)]
    fetched = []

    def fetch(start, end):
        fetched.append(start)
        return served[-1]

    source.fetch = fetch
    source.start()
    assert not store.subscribed and [g.datetime for g in source.history] == [T, T + dt.timedelta(minutes=1)]
    served.append(group_bars({"A": [bar(0), bar(1), bar(2)]}, live=False))  # bar 2 completed while reconciling
    source.go_live()
    assert store.subscribed and fetched[1] == calendar.to_utc(T + dt.timedelta(minutes=2))
    raw = {"S": "A", "t": "2024-01-02T14:32:00Z", "o": 10.0, "h": 10.0, "l": 10.0, "c": 10.0, "v": 1.0}
    asyncio.run(source._on_bar(raw))  # the same bar, from the stream
    released = [source.next_group(timeout=0.01) for _ in range(4)]
    assert [g.datetime for g in released[:3]] == [T + dt.timedelta(minutes=m) for m in range(3)]
    assert released[3] is None
