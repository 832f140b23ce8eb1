"""A periodic sync makes a bounded number of venue requests however many orders the broker follows
(Alpaca allows 200 a minute), and still brings every finished order's status and fills to the broker:
open orders from one list, finished ones from one list of closed orders, the rest one by one within
``live.sync_order_lookups``, taking turns. The local Alpaca server lists orders as Alpaca documents."""
import datetime as dt
import queue

import pytest

from brokers.alpaca.credentials import Credentials
from brokers.alpaca.execution import AlpacaVenue
from brokers.alpaca.local_server import AlpacaTestServer
from brokers.alpaca.store import AlpacaStore
from brokers.journal import Journal, sqlite_url
from brokers.live.broker import LiveBroker
from brokers.live.sync import CLOSED_LIST_MARGIN
from brokers.live.tracker import Tracked
from brokers.venue import Account, Leg, OrderRequest, VenueOrder
from config import load_config
from feeds.live_feed import Bar
from tests.live.harness import wait_for

TZ = "America/New_York"  # not UTC: list bounds cross time zones on the way to the server and back
T0 = dt.datetime(2024, 1, 2, 10, 30)


def flat(when, price=100.0, high=None, low=None):
    return Bar(when, price, high or price + 1, low or price - 1, price, 1000.0)


@pytest.fixture
def server():
    with AlpacaTestServer(tz=TZ) as srv:
        yield srv


def alpaca_venue(server):
    cfg = load_config(overrides={**{f"live.{k}": v for k, v in server.urls.items()}, "live.retry_attempts": 2,
                                 "live.retry_min_seconds": 0.05, "live.retry_max_seconds": 0.1})
    return AlpacaVenue(AlpacaStore(Credentials(server.key_id, server.secret_key), cfg.live, paper=True), TZ)


def bracket(cid, symbol, *, limit=None):
    return OrderRequest(cid, symbol, "buy", 10, type="limit" if limit else "market", limit_price=limit,
                        time_in_force="gtc", legs=(Leg("stop_loss", f"{cid}-sl", stop_price=90.0),
                                                   Leg("take_profit", f"{cid}-tp", limit_price=110.0)))


def listed(server, **query):
    headers = {"APCA-API-KEY-ID": server.key_id, "APCA-API-SECRET-KEY": server.secret_key}
    status, body = server.handle("GET", "/v2/orders", {k: [str(v)] for k, v in query.items()}, None, headers)
    return status, body if status != 200 else [o["client_order_id"] for o in body]


def test_the_server_lists_orders_as_alpaca_documents(server):
    """status, after and until (exclusive, on submission time), direction, limit (at most 500), nested
    (a filled entry's open legs are listed as closed, under it); the venue's bounds cross time zones."""
    hours = [T0 + dt.timedelta(hours=h) for h in range(4)]
    for symbol, when in zip("ABC", hours):
        server.add_history(symbol, [flat(when)])
    venue = alpaca_venue(server)
    try:
        venue.submit(bracket("a1", "A"))                                 # submitted at hours[0]
        venue.submit(OrderRequest("b1", "B", "buy", 5))                  # hours[1]
        venue.submit(OrderRequest("c1", "C", "buy", 5, type="limit", limit_price=50.0, time_in_force="gtc"))
        server.push({s: flat(hours[3]) for s in "ABC"})                  # a1 and b1 fill, c1 waits
        utc = f"{(T0 + dt.timedelta(hours=5)):%Y-%m-%dT%H:%M:%S}Z"      # hours[0] in UTC
        assert listed(server, status="closed", nested="true", direction="asc") == (200, ["a1", "b1"])
        assert listed(server, status="closed", nested="true") == (200, ["b1", "a1"])  # desc by default
        assert listed(server, status="closed", nested="true", after=utc) == (200, ["b1"])  # exclusive
        assert listed(server, status="all", nested="true", direction="asc", until="2024-01-02T16:30:00+00:00") \
            == (200, ["a1"])
        assert listed(server, status="closed", nested="true", direction="asc", limit=1) == (200, ["a1"])
        assert listed(server, status="open", nested="true") == (200, ["c1"])  # a1's legs went with a1
        assert listed(server, status="open", direction="asc") == (200, ["a1-sl", "a1-tp", "c1"])  # nested=false
        assert listed(server, status="closed", limit=501)[0] == 422

        closed = venue.closed_orders(after=hours[0] - CLOSED_LIST_MARGIN)  # alpaca-py's query, naive NY time
        assert [o.client_order_id for o in closed] == ["a1", "b1"]
        assert [(leg.client_order_id, leg.status) for leg in closed[0].legs] == [("a1-sl", "new"), ("a1-tp", "new")]
        assert closed[0].submitted_at == hours[0] and closed[0].filled_at == hours[3]
        assert [o.client_order_id for o in venue.closed_orders(after=hours[0])] == ["b1"]
    finally:
        venue.stop()


def test_a_sync_settles_many_finished_orders_in_four_requests(server, tmp_path):
    """18 brackets (the stream is down): 6 hit their target, 6 their stop, 6 stay open, and 3 limit
    entries are canceled. One sync reads the open list, the closed list, cash and positions, and asks
    about no order on its own; every status, fill and position reaches the broker."""
    symbols = [f"S{n:02d}" for n in range(21)]
    for symbol in symbols:
        server.add_history(symbol, [flat(T0)])
    venue = alpaca_venue(server)  # never started: no trade updates reach the broker
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    broker = LiveBroker(venue=venue, journal=journal, sync_order_lookups=2)
    try:
        for n, symbol in enumerate(symbols):
            venue.submit(bracket(f"e{n:02d}", symbol, limit=50.0 if n >= 18 else None))
        broker.reconcile()  # a restart: the broker adopts the venue's orders, legs included
        assert len(broker.tracked) == 3 * len(symbols)
        server.push({s: flat(T0 + dt.timedelta(minutes=1)) for s in symbols})  # the entries fill (18) or wait
        for n in range(18, 21):
            venue.cancel(server.engine.by_client_id[f"e{n}"].id)
        wait_for(lambda: all(server.engine.by_client_id[f"e{n}"].status == "canceled" for n in range(18, 21)),
                 what="the cancels")
        server.push({s: flat(T0 + dt.timedelta(minutes=2), high=120.0 if n < 6 else None,
                             low=80.0 if 6 <= n < 12 else None) for n, s in enumerate(symbols)})

        server.requests.clear()
        broker.sync()
        assert [(method, path, query.get("status")) for method, path, query in server.requests] == [
            ("GET", "/v2/orders", ["open"]), ("GET", "/v2/orders", ["closed"]), ("GET", "/v2/account", None),
            ("GET", "/v2/positions", None)]
        for cid, rec in broker.tracked.items():
            order = server.engine.by_client_id[cid]
            assert (rec.status, rec.venue_filled) == (order.status, order.filled_qty), cid
            if order.filled_qty:
                assert rec.avg_price == pytest.approx(order.filled_value / order.filled_qty)
                assert sum(f["qty"] for f in journal.fills(cid)) == order.filled_qty
            assert journal.order(cid).status == order.status
        statuses = {cid: rec.status for cid, rec in broker.tracked.items()}
        assert [statuses[f"e{n:02d}-tp"] for n in (0, 6, 12, 18)] == ["filled", "canceled", "new", "canceled"]
        assert [statuses[f"e{n:02d}-sl"] for n in (0, 6, 12, 18)] == ["canceled", "filled", "new", "canceled"]
        assert {s: p.qty for s, p in broker.foreign_positions.items() if p.qty} == server.positions()
        assert broker.cash == pytest.approx(server.engine.cash)
    finally:
        journal.close()
        venue.stop()


class ListingVenue:
    """A venue that lists the orders in ``closed`` as closed, knows every order when asked alone,
    and records every request."""

    def __init__(self, closed=()):
        self.updates = queue.Queue()
        self.requests = []
        self.closed = {view.id: view for view in closed}

    def open_orders(self):
        self.requests.append("open orders")
        return []

    def closed_orders(self, after):
        self.requests.append(f"closed after {after:%H:%M:%S}")
        return [view for view in self.closed.values() if view.submitted_at > after]

    def get_order(self, order_id):
        self.requests.append(order_id)
        return VenueOrder(id=order_id, client_order_id=order_id, symbol="AAPL", side="sell", qty=10.0, type="stop",
                          status="held")

    def account(self):
        self.requests.append("account")
        return Account(cash=1000.0, equity=1000.0, buying_power=1000.0)

    def positions(self):
        self.requests.append("positions")
        return {}


def test_lookups_are_capped_per_sync_and_take_turns(tmp_path):
    """Orders in neither list are asked about at most ``sync_order_lookups`` a sync, those read
    longest ago first: seven orders and a cap of 3 are all read within three syncs. The closed list
    starts a margin before the earliest submission, a leg's counted from its entry's."""
    entry_time = T0 - dt.timedelta(minutes=30)
    finished = VenueOrder(id="done", client_order_id="done", symbol="AAPL", side="sell", qty=10.0, type="limit",
                          status="filled", filled_qty=10.0, filled_avg_price=101.0, submitted_at=T0)
    venue = ListingVenue(closed=[finished])
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    broker = LiveBroker(venue=venue, journal=journal, sync_order_lookups=3)
    broker.cash = 1000.0
    broker.tracked["entry"] = Tracked("entry", "AAPL", "buy", 10.0, status="filled", venue_id="entry",
                                      submitted_at=entry_time)
    for n in range(7):
        broker.tracked[f"o{n}"] = Tracked(f"o{n}", "AAPL", "sell", 10.0, status="held", venue_id=f"o{n}",
                                          submitted_at=T0 + dt.timedelta(minutes=n), parent="entry" if n == 3 else None)
    broker.tracked["done"] = Tracked("done", "AAPL", "sell", 10.0, status="new", venue_id="done", submitted_at=T0)
    first_listed = f"closed after {entry_time - CLOSED_LIST_MARGIN:%H:%M:%S}"  # o3's entry was submitted first
    lookups = []
    for _ in range(3):
        venue.requests.clear()
        broker.sync()
        assert venue.requests[:2] == ["open orders", first_listed] and venue.requests[-2:] == ["account", "positions"]
        lookups.append(venue.requests[2:-2])
    assert lookups == [["o0", "o1", "o2"], ["o3", "o4", "o5"], ["o6", "o0", "o1"]]
    assert broker.tracked["done"].status == "filled" and broker.tracked["done"].venue_filled == 10.0
    journal.close()
