"""Exit pairs placed with ``oco=`` (``PortfolioStrategy.replace_exits``) live, through the real alpaca-py
clients against the local Alpaca-compatible server: one OCO order per pair, both legs followed; the
stop filling (in parts) cancels the take-profit and the take-profit filling cancels the stop, with
Backtrader's notifications; a restart adopts an open OCO without sending it again; a trailing stop goes
alone and its take-profit is refused with the reason (journaled, logged once)."""
import logging

import backtrader as bt
import pytest

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal, sqlite_url
from feeds.live_feed import Bar
from strategies.base import PortfolioStrategy
from tests.live.harness import SYMBOLS, Deployment

pytestmark = pytest.mark.slow

SIZE = 10
# the reason a take-profit beside a trailing stop is refused (Alpaca's ``VenueCapabilities.oco_refusal``)
TRAILING_TARGET_DROPPED = ("Alpaca's OCO orders take no trailing stop: the take-profit is dropped while the "
                           "stop trails")


class ScriptedExits(PortfolioStrategy):
    """Enters and replaces exits where ``script`` says: (bar datetime, symbol) -> (action, stop, target),
    action "enter", "pair" or "trail"; records every notification as (client id, status, executed size)."""

    script: dict = {}
    notes: list = []

    def decide(self, now, fresh):
        for d in fresh:
            step = self.script.get((now, d._name))
            if step is None:
                continue
            action, stop, target = step
            plan = self.positions_plan.get(d._name)
            if action == "enter":
                self.enter_long(d, SIZE, stop_price=stop, target_price=target, reason="entry")
            elif plan is not None and plan.entry_datetime is not None and action == "trail":
                # by hand: replace_exits places a trailing stop without a take-profit, and this checks
                # the broker's guard for strategies that pair them anyway
                for child in plan.children:
                    if child.alive():
                        self.cancel(child)
                trail = self.cfg.risk.trail_pct
                stop_order = self.sell(data=d, size=plan.size, exectype=bt.Order.StopTrail, price=stop / (1 - trail),
                                       trailpercent=trail)
                target_order = self.sell(data=d, size=plan.size, exectype=bt.Order.Limit, price=target, oco=stop_order)
                plan.children = [self._tag(stop_order, d._name, "trailing_stop"), self._tag(target_order, d._name, "target")]
            elif plan is not None and plan.entry_datetime is not None:
                self.replace_exits(d, plan, size=plan.size, stop_price=stop, target_price=target)

    def notify_order(self, order):
        super().notify_order(order)
        self.notes.append((order.info.get("client_order_id"), order.getstatusname(), order.executed.size))


def flat(when, price):
    return Bar(when, price, price + 0.5, price - 0.5, price, 1000.0)


@pytest.fixture
def server():
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as srv:
        yield srv


def test_oco_pairs_live_fill_cancel_and_survive_a_restart(server, tmp_path, caplog):
    deployment = Deployment(server, tmp_path, live=8)
    when = [group[SYMBOLS[0]].datetime for group in deployment.live]
    stamp = [f"{t:%Y%m%d%H%M%S}" for t in when]
    # AAPL: the stop leg fills; JPM: the take-profit fills after a restart; XOM: trailing stops
    ScriptedExits.script = {
        **{(when[0], s): ("enter", 90.0, 120.0) for s in SYMBOLS},
        (when[1], "AAPL"): ("pair", 95.0, 110.0), (when[1], "JPM"): ("pair", 96.0, 111.0),
        (when[1], "XOM"): ("trail", 99.0, 110.0), (when[2], "XOM"): ("trail", 99.5, 112.0)}
    ScriptedExits.notes = []
    prices = [{s: 100.0 for s in SYMBOLS} for _ in when]
    groups = [{s: flat(when[i], prices[i][s]) for s in SYMBOLS} for i in range(len(when))]
    groups[2]["AAPL"] = Bar(when[2], 100.0, 100.5, 94.0, 96.0, 1000.0)  # through the stop at 95
    groups[4]["JPM"] = Bar(when[4], 100.0, 112.0, 99.5, 111.5, 1000.0)  # through the take-profit at 111
    deployment.live = groups
    deployment.start(ScriptedExits)
    with caplog.at_level(logging.WARNING, logger="live.broker"):
        deployment.push(groups[:1])
        server.split_next_fill("AAPL", parts=2)  # the next AAPL order is the OCO: its stop fills in two parts
        deployment.push(groups[1:4])
    deployment.stop()

    aapl, jpm, xom = ({kind: f"t-{s}-{stamp[1]}-{kind}" for kind in ("stop", "target", "trailing_stop")}
                      for s in SYMBOLS)
    # one request per pair, named by its take-profit; the trailing stop alone, its take-profit never sent
    for pair in (aapl, jpm):
        assert server.submissions.count(pair["target"]) == 1 and pair["stop"] not in server.submissions
    assert xom["trailing_stop"] in server.submissions and xom["target"] not in server.submissions
    journal = Journal(sqlite_url(deployment.journal_path))
    rows = {row.client_order_id: row for row in journal.orders()}
    for pair in (aapl, jpm):
        target, stop = rows[pair["target"]], rows[pair["stop"]]
        assert (target.leg, target.parent_client_order_id, target.order_type) == ("take_profit", None, "limit")
        assert (stop.leg, stop.parent_client_order_id, stop.order_type) == ("stop_loss", pair["target"], "stop")
        assert target.venue_order_id and stop.venue_order_id
    # AAPL: the stop leg filled (in two parts), the venue canceled the take-profit; Backtrader heard it all
    assert (rows[aapl["stop"]].status, rows[aapl["target"]].status) == ("filled", "canceled")
    assert [f["qty"] for f in journal.fills(aapl["stop"])] == [SIZE // 2, SIZE // 2]
    notes = ScriptedExits.notes
    assert [n for n in notes if n[0] in aapl.values() and n[1] in ("Partial", "Completed", "Canceled")] == [
        (aapl["stop"], "Partial", -SIZE // 2), (aapl["stop"], "Completed", -SIZE), (aapl["target"], "Canceled", 0)]
    assert "AAPL" not in server.positions()
    # XOM: both take-profits refused with the reason, journaled; the warning once
    for stamp_i in stamp[1:3]:
        row = rows[f"t-XOM-{stamp_i}-target"]
        assert (row.status, row.status_reason, row.venue_order_id) == ("rejected", TRAILING_TARGET_DROPPED, None)
    assert caplog.text.count(TRAILING_TARGET_DROPPED) == 1
    assert (f"t-XOM-{stamp[2]}-target", "Rejected", 0) in notes
    # JPM's OCO is still open: a restart adopts both legs and sends nothing again
    assert (rows[jpm["stop"]].status, rows[jpm["target"]].status) == ("new", "new")
    journal.close()
    sent = list(server.submissions)
    ScriptedExits.notes = []
    deployment.start(ScriptedExits)
    deployment.push(groups[4:6])
    deployment.stop()
    assert server.submissions == sent
    journal = Journal(sqlite_url(deployment.journal_path))
    rows = {row.client_order_id: row for row in journal.orders()}
    assert (rows[jpm["stop"]].status, rows[jpm["target"]].status) == ("canceled", "filled")
    assert (jpm["target"], "Completed", -SIZE) in ScriptedExits.notes
    assert (jpm["stop"], "Canceled", 0) in ScriptedExits.notes
    assert "JPM" not in server.positions()
    journal.close()
