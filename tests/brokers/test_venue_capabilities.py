"""The live broker follows the venue's declared rules (``brokers.venue.VenueCapabilities``), not Alpaca's
by name: Alpaca and the simulated venue that stands in for it declare the same; a venue that declares
otherwise changes what the broker does (which stop an OCO takes, whether an exit waits for the cancel of
the orders holding its shares, which rejections are Backtrader's Margin)."""
import dataclasses
import logging
from types import SimpleNamespace

import pytest

from brokers.alpaca.capabilities import ALPACA_CAPABILITIES
from brokers.alpaca.execution import AlpacaVenue
from brokers.journal import Journal, sqlite_url
from brokers.live.broker import LiveBroker
from brokers.live.tracker import Tracked
from brokers.sim_venue import SimulatedVenue
from brokers.venue import VenueCapabilities
from config import load_config
from engine.compat import bt
from engine.live import run_replay
from feeds.loader import load_universe
from strategies.base import PortfolioStrategy

OTHER = VenueCapabilities(name="Other", oco_stop_types=frozenset({"stop"}), exits_hold_shares=False,
                          margin_words=("margin",))


def test_alpaca_and_its_stand_in_declare_alpacas_rules():
    assert AlpacaVenue.capabilities is ALPACA_CAPABILITIES and SimulatedVenue.capabilities is ALPACA_CAPABILITIES
    assert ALPACA_CAPABILITIES.oco_refusal("trailing_stop") == (
        "Alpaca's OCO orders take no trailing stop: the take-profit is dropped while the stop trails")
    assert ALPACA_CAPABILITIES.oco_refusal("stop") is None and ALPACA_CAPABILITIES.oco_refusal("stop_limit") is None
    assert ALPACA_CAPABILITIES.is_margin("insufficient buying power")
    assert not ALPACA_CAPABILITIES.is_margin("insufficient qty available for order (requested: 11, available: 10)")
    assert ALPACA_CAPABILITIES.exits_hold_shares
    with pytest.raises(ValueError, match="stop or stop_limit"):  # a Leg cannot carry a trailing stop
        dataclasses.replace(ALPACA_CAPABILITIES, oco_stop_types=frozenset({"stop", "trailing_stop"}))


@pytest.mark.parametrize("capabilities, waits", [(ALPACA_CAPABILITIES, True), (OTHER, False)])
def test_an_exit_waits_for_the_cancel_of_a_sell_only_where_open_orders_hold_shares(tmp_path, capabilities, waits):
    venue = SimpleNamespace(capabilities=capabilities)
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    broker = LiveBroker(venue=venue, journal=journal)
    broker.tracked["stop-1"] = Tracked("stop-1", "AAPL", "sell", 10.0, status="pending_cancel", venue_id="v1")
    broker.tracker.canceling["AAPL"] = {"stop-1"}
    sell = SimpleNamespace(isbuy=lambda: False, data=SimpleNamespace(_name="AAPL"))
    buy = SimpleNamespace(isbuy=lambda: True, data=SimpleNamespace(_name="AAPL"))
    assert broker.outbox.waits_for_cancels(sell) is waits
    assert not broker.outbox.waits_for_cancels(buy)  # a buy holds no shares of a sell
    journal.close()


class Probe(PortfolioStrategy):
    """Buys more than the cash allows on its first bar, 10 X on its second, and on its fourth places a
    stop-limit with a take-profit one-cancels-other; records each order's final status by reason."""

    statuses: dict = {}

    def decide(self, now, fresh):
        d = self.datas[0]
        if not hasattr(self, "first_bar"):
            self.first_bar = len(d)
            self._tag(self.buy(data=d, size=10**6), d._name, "too_big")
        elif len(d) - self.first_bar == 1:
            self._tag(self.buy(data=d, size=10), d._name, "entry")
        elif len(d) - self.first_bar == 3:
            price = float(d.close[0])
            stop = self._tag(self.sell(data=d, size=10, exectype=bt.Order.StopLimit, price=price * 0.95,
                                       plimit=price * 0.94), d._name, "stop")
            self._tag(self.sell(data=d, size=10, exectype=bt.Order.Limit, price=price * 1.1, oco=stop), d._name,
                      "target")

    def notify_order(self, order):
        if not order.alive():
            type(self).statuses[order.info.get("reason")] = order.getstatusname()
        super().notify_order(order)


def replay_probe(tmp_path, monkeypatch, capabilities):
    monkeypatch.setattr(SimulatedVenue, "capabilities", capabilities)
    Probe.statuses = {}
    cfg = load_config(overrides={"backtest.progress": False})
    bars = load_universe(["data/sample/AAPL_data.csv"], end="2013-03-01")
    run_replay(cfg, bars, strategy_cls=Probe, journal_dir=tmp_path)
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    rows = {row.reason: row for row in journal.orders()}
    journal.close()
    return rows, Probe.statuses


def test_alpacas_rules_in_a_replay(tmp_path, monkeypatch):
    rows, statuses = replay_probe(tmp_path, monkeypatch, ALPACA_CAPABILITIES)
    assert statuses["too_big"] == "Margin"  # "insufficient buying power"
    # the stop-limit and its take-profit went out as one OCO order
    assert (rows["target"].leg, rows["stop"].parent_client_order_id) == ("take_profit", rows["target"].client_order_id)


def test_a_venue_declaring_other_rules_changes_what_the_broker_does(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="live.broker"):
        rows, statuses = replay_probe(tmp_path, monkeypatch, OTHER)
    assert statuses["too_big"] == "Rejected"  # its margin words are not in the reason
    # its OCO takes no stop-limit: the stop goes alone, the take-profit is refused with the venue's words
    reason = "Other's OCO orders take no stop-limit stop: the take-profit is dropped while the stop goes alone"
    assert (rows["target"].status, rows["target"].status_reason, rows["target"].venue_order_id) == (
        "rejected", reason, None)
    assert rows["stop"].parent_client_order_id is None and rows["stop"].venue_order_id
    assert statuses["target"] == "Rejected" and caplog.text.count(reason) == 1
