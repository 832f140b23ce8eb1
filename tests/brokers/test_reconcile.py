"""A restart's reconciliation: one consistent view of the venue, each fill booked once, a book the
journal cannot explain halts new entries, and a long-only strategy never sells more than it holds."""
import datetime as dt
import logging
from types import SimpleNamespace

import pytest

from brokers.accounting import stock_commission
from brokers.journal import Journal, sqlite_url
from brokers.live.broker import LiveBroker
from brokers.live.reconcile import BASELINE_KEY, RECONCILE_READS, adopt_venue_positions
from brokers.sim_venue import SimulatedVenue
from brokers.venue import Account, OrderRequest, VenuePosition
from feeds.live_feed import Bar, BarGroup

T = dt.datetime(2024, 1, 2, 10, 0)


class Data:
    """What the broker's reconciliation reads of a feed: its name (no bars yet, as at start)."""

    def __init__(self, name):
        self._name = name

    def __len__(self):
        return 0


def bars(minute: int, price: float = 100.0) -> BarGroup:
    when = T + dt.timedelta(minutes=minute)
    return BarGroup(when, {"AAPL": Bar(when, price, price + 1, price - 1, price, 1000.0)}, live=True)


def broker_on(venue, journal) -> LiveBroker:
    """A live broker as ``start`` leaves it before reconciling (AAPL traded, no cost)."""
    broker = LiveBroker(venue=venue, journal=journal)
    broker.comminfo = {None: stock_commission(0.0)}
    broker.data_by_symbol = {"AAPL": Data("AAPL")}
    return broker


def aapl(broker: LiveBroker):
    return broker.positions[broker.data_by_symbol["AAPL"]]


def send_before_restart(venue, journal, cid: str, qty: float = 10.0, side: str = "buy") -> None:
    """What the process that died did: the intent journaled, the order sent, the venue's id journaled."""
    request = OrderRequest(client_order_id=cid, symbol="AAPL", side=side, qty=qty, bar_datetime=T)
    journal.record_intents([dict(client_order_id=cid, symbol="AAPL", side=side, qty=qty, order_type="market",
                                 time_in_force="day", bar_datetime=T, reason="entry", info={})])
    view = venue.submit(request)
    journal.update_order(cid, venue_order_id=view.id, status=view.status)


@pytest.fixture
def journal(tmp_path):
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    yield journal
    journal.close()


class RacingVenue(SimulatedVenue):
    """A venue where the next bar (and the fills it brings) comes right after the first positions read."""

    def __init__(self):
        super().__init__(10_000.0, commission_bps=0.0, slippage_bps=0.0)
        self.after_positions = []
        self.position_reads = 0

    def positions(self):
        held = super().positions()
        self.position_reads += 1
        while self.after_positions:
            self.after_positions.pop(0)()
        return held


def test_a_fill_between_the_positions_and_the_orders_read_is_booked_once(journal, caplog):
    caplog.set_level(logging.INFO, logger="live.broker")
    venue = RacingVenue()
    venue.on_bars(bars(0))
    send_before_restart(venue, journal, "e1")  # a market order: it fills at the next bar's open
    venue.after_positions.append(lambda: venue.on_bars(bars(1, price=101.0)))

    broker = broker_on(venue, journal)
    broker.reconcile()

    assert "reading again" in caplog.text and venue.position_reads == 3  # before, after, after again
    assert aapl(broker).size == 10 and broker.cash == pytest.approx(10_000.0 - 10 * 101.0)
    assert [(f["client_order_id"], f["qty"], f["price"], f["filled_datetime"]) for f in journal.fills()] == [
        ("e1", 10.0, 101.0, T + dt.timedelta(minutes=1))]  # recorded once, at the venue's time
    broker.tracker.take_updates()  # the fill's trade update, queued while reconciling, comes after
    assert aapl(broker).size == 10 and len(journal.fills()) == 1
    assert not broker.halted


class Restless:
    """A venue whose cash changes at every read (fills all the time)."""

    def __init__(self):
        import queue

        self.updates = queue.Queue()
        self.cash = 1000.0
        self.calm = False

    def account(self):
        if not self.calm:
            self.cash += 1.0
        return Account(cash=self.cash, equity=self.cash, buying_power=self.cash)

    def positions(self):
        return {}

    def open_orders(self):
        return []


def entry_order(broker, size=10):
    return SimpleNamespace(info={}, data=broker.data_by_symbol["AAPL"], owner=SimpleNamespace(long_only=True),
                           created=SimpleNamespace(size=size), issell=lambda: size < 0, isbuy=lambda: size > 0)


def test_no_consistent_view_halts_entries_until_a_sync_agrees(journal):
    venue = Restless()
    broker = broker_on(venue, journal)
    broker.reconcile()
    assert "no consistent view" in broker.halted["reconcile"]
    assert f"over {RECONCILE_READS} reads" in broker.outbox.held_back(entry_order(broker), "e1")
    assert [e["kind"] for e in journal.events()] == ["halt", "positions_adopted"]  # and a new journal's baseline
    venue.calm = True
    broker.cash = venue.cash
    broker.periodic_sync.sync_account()
    assert not broker.halted and broker.outbox.held_back(entry_order(broker), "e1") is None
    assert [e["kind"] for e in journal.events()] == ["halt", "positions_adopted", "resume"]


class Holding(Restless):
    """A calm venue that holds AAPL."""

    def __init__(self, qty):
        super().__init__()
        self.calm, self.qty = True, qty

    def positions(self):
        return {"AAPL": VenuePosition("AAPL", self.qty, 100.0)} if self.qty else {}


def test_positions_the_journal_cannot_explain_halt_entries_until_adopted(journal):
    broker_on(Holding(5), journal).reconcile()  # the journal's first start: its baseline
    assert journal.get_meta(BASELINE_KEY) == {"AAPL": 5}

    venue = Holding(12)  # 7 more, bought outside this deployment while it was down
    broker = broker_on(venue, journal)
    broker.reconcile()
    reason = broker.halted["positions"]
    assert "AAPL 12 at the broker, 5 by the journal" in reason and "--adopt-positions" in reason
    assert broker.outbox.held_back(entry_order(broker), "e1") == reason
    assert broker.outbox.held_back(entry_order(broker, size=-12), "x1") is None  # exits still go out
    assert journal.events("halt")[0]["message"] == reason

    adopt_venue_positions(venue, journal)
    assert journal.get_meta(BASELINE_KEY) == {"AAPL": 12}
    again = broker_on(venue, journal)
    again.reconcile()
    assert not again.halted


def test_the_baseline_counts_the_fills_recorded(journal):
    venue = SimulatedVenue(10_000.0, commission_bps=0.0, slippage_bps=0.0)
    venue.on_bars(bars(0))
    broker_on(venue, journal).reconcile()  # flat at the start
    send_before_restart(venue, journal, "e1")
    venue.on_bars(bars(1))  # filled while the process was down
    broker = broker_on(venue, journal)
    broker.reconcile()
    assert aapl(broker).size == 10 and not broker.halted


def test_a_long_only_sell_beyond_the_position_held_is_refused(journal):
    broker = broker_on(Holding(0), journal)
    broker.reconcile()
    broker.positions[broker.data_by_symbol["AAPL"]].size = 5
    assert broker.outbox.held_back(entry_order(broker, size=-5), "x1") is None
    reason = broker.outbox.held_back(entry_order(broker, size=-6), "x2")
    assert reason == "a sell of 6 AAPL with 5 held would leave a long-only strategy short"
    shorting = entry_order(broker, size=-6)
    shorting.owner.long_only = False
    assert broker.outbox.held_back(shorting, "x3") is None
