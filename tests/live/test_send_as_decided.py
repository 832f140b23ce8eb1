"""A bar's orders leave as each is decided (``Outbox.send_ready``), not after the strategy's whole
``next``: through the real alpaca-py clients against the local Alpaca-compatible server, the venue
holds an entry before the strategy decides the next one; an exit whose shares the stop it replaces
still holds goes once that stop's cancel is answered, and each order is sent once."""
import pytest

from brokers.alpaca.local_server import AlpacaTestServer
from strategies.base import PortfolioStrategy
from tests.live.harness import SYMBOLS, Deployment

pytestmark = pytest.mark.slow


class EntersThenExits(PortfolioStrategy):
    """At the first live bar, enters every symbol (with a stop and a take-profit) one after the other,
    noting after each how many orders the venue holds; three bars later, exits every position,
    noting the same after each exit."""

    server: AlpacaTestServer | None = None
    after_entry: list = []
    after_exit: list = []

    def __init__(self):
        super().__init__()
        self.live_bars = 0

    def decide(self, now, fresh):
        self.live_bars += 1
        for d in fresh:
            if self.live_bars == 1:
                close = float(d.close[0])
                self.enter_long(d, 5, stop_price=close * 0.8, target_price=close * 1.5)
                type(self).after_entry.append(len(self.server.submissions))
            elif self.live_bars == 4 and self.getposition(d).size > 0:
                self.exit_position(d, "time")
                type(self).after_exit.append(len(self.server.submissions))


def test_each_order_leaves_as_it_is_decided(tmp_path):
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server:
        EntersThenExits.server, EntersThenExits.after_entry, EntersThenExits.after_exit = server, [], []
        deployment = Deployment(server, tmp_path, history=5, live=6)
        try:
            deployment.start(EntersThenExits)
            deployment.push(deployment.live)
        finally:
            deployment.stop()
    n = len(SYMBOLS)
    # each entry (a bracket: one request) was at the venue before the next was decided
    assert EntersThenExits.after_entry == list(range(1, n + 1))
    # the exits: each waits for the cancel of the stop holding its shares, so it may go after the
    # strategy's next (the flush), but every one goes, after the entries, and once
    assert len(EntersThenExits.after_exit) == n
    assert all(n <= count <= 2 * n for count in EntersThenExits.after_exit)
    exits = [cid for cid in server.submissions if cid.endswith("-time")]
    assert len(exits) == n and len(server.submissions) == len(set(server.submissions)) == 2 * n
    orders = deployment.session_orders().set_index("client_order_id")
    # every entry filled, every exit filled and closed its position; the stops and take-profits canceled
    entries = [cid for cid in orders.index if cid.endswith("-entry")]
    assert len(entries) == n and (orders.loc[entries, "status"] == "completed").all()
    assert (orders.loc[exits, "status"] == "completed").all()
    legs = [cid for cid in orders.index if cid.endswith(("-stop", "-target"))]
    assert len(legs) == 2 * n and set(orders.loc[legs, "status"]) == {"canceled"}
