"""The live broker's periodic sync with the venue gives way to a bar that arrives meanwhile."""
import queue

from brokers.journal import Journal, sqlite_url
from brokers.live.broker import LiveBroker
from brokers.live.tracker import Tracked
from brokers.venue import Account, VenueOrder


class ForgetfulVenue:
    """A venue whose open-orders list holds none of the broker's orders (Alpaca leaves out the legs of
    a filled bracket), so a sync asks about each order on its own; it records every request."""

    def __init__(self):
        self.updates = queue.Queue()
        self.requests = []

    def open_orders(self):
        self.requests.append("open orders")
        return []

    def get_order(self, order_id):
        self.requests.append(f"order {order_id}")
        return VenueOrder(id=order_id, client_order_id=f"c-{order_id}", symbol="AAPL", side="sell", qty=10.0,
                          type="stop", status="canceled")

    def account(self):
        self.requests.append("account")
        return Account(cash=1000.0, equity=1000.0, buying_power=1000.0)

    def positions(self):
        self.requests.append("positions")
        return {}


def test_a_sync_pauses_after_each_request_while_a_bar_waits(tmp_path):
    venue, bar_waiting = ForgetfulVenue(), [True]
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    broker = LiveBroker(venue=venue, journal=journal, sync_seconds=0.001, bar_waiting=lambda: bar_waiting[0])
    broker.cash = 1000.0
    for n in range(3):
        broker.tracked[f"c-v{n}"] = Tracked(f"c-v{n}", "AAPL", "sell", 10.0, status="held", venue_id=f"v{n}")
    broker.periodic_sync.last_sync -= 1.0  # a sync is due
    broker.next()
    assert venue.requests == ["open orders"]  # a bar came: it goes first
    broker.tracked["c-v1"].status = "filled"  # a trade update settled this order meanwhile
    broker.bar_in_progress = True
    broker.next()
    assert venue.requests == ["open orders"]  # never between a bar and its orders
    broker.bar_in_progress, bar_waiting[0] = False, False
    broker.next()
    assert venue.requests == ["open orders", "order v0", "order v2", "account", "positions"]
    assert [broker.tracked[f"c-v{n}"].status for n in range(3)] == ["canceled", "filled", "canceled"]
    journal.close()
