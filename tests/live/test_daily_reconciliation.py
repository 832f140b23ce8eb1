"""The daily reconciliation after a live session against the local Alpaca server: the session's bars
replayed with the same strategy and start state, the differences written to a dated report."""
import datetime as dt
import json

import pandas as pd
import pytest

from brokers.alpaca.local_server import AlpacaTestServer
from config import load_config
from brokers.venue import OrderRequest
from engine.daily_reconciliation import read_bars, reconcile_folder, start_carry, started_with
from ops.observer import Observers, SessionObserver
from tests.live.harness import SYMBOLS, Deployment

@pytest.fixture
def server():
    # the test server fills with the backtest's costs ([costs] in the harness config), as the replay does
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as srv:
        yield srv


@pytest.fixture
def deployment(server, tmp_path):
    deployed = Deployment(server, tmp_path, reconciliation=True)
    yield deployed
    if deployed.thread is not None and deployed.thread.is_alive():  # a failed test: stop its runner
        deployed.stop()


class Mismatches(SessionObserver):
    def __init__(self):
        self.messages = []

    def reconciliation_mismatch(self, message):
        self.messages.append(message)


def session_folder(deployment):
    return sorted((deployment.state / "sessions").iterdir())[-1]


def report_of(deployment) -> dict:
    reports = sorted((deployment.state / "reconciliation").glob("*.json"))
    assert len(reports) == 1, reports
    return json.loads(reports[0].read_text())


@pytest.mark.slow
def test_a_clean_session_is_reported_with_no_differences(server, deployment):
    mismatches = Mismatches()
    deployment.start(observers=Observers(mismatches))
    deployment.push(deployment.live[:20])
    deployment.stop()
    folder = session_folder(deployment)
    # the bars the session received, warm-up and live, recorded for the replay
    bars = read_bars(folder / "bars")
    assert sorted(bars) == SYMBOLS
    received = [g["AAPL"] for g in deployment.history + deployment.live[:20]]
    assert list(bars["AAPL"].index) == [pd.Timestamp(b.datetime) for b in received]
    assert bars["AAPL"]["close"].tolist() == [b.close for b in received]
    report = report_of(deployment)
    first = deployment.live[0]["AAPL"].datetime
    assert report["compared"] and report["date"] == first.date().isoformat()
    assert report["orders_live"] >= 5 and report["orders_live"] == report["orders_replay"]
    assert report["differences"] == 0 and report["clean"] and not report["alarms"]
    assert report["pnl"]["live"] != 0 and abs(report["pnl"]["difference"]) < 1e-6
    assert "No differences." in (deployment.state / "reconciliation" / f"{report['date']}.md").read_text()
    assert not mismatches.messages


@pytest.mark.slow
def test_a_session_an_operator_steered_is_not_compared_and_says_why(server, deployment):
    """A flatten from the dashboard changes the session; the replay applies no controls, so comparing
    would alert on the operator's act: the report says so instead, and nothing is alerted."""
    from brokers.journal import Journal

    mismatches = Mismatches()
    deployment.start(observers=Observers(mismatches))
    deployment.push(deployment.live[:8])
    journal = Journal(deployment.journal_url)
    journal.request_control("pause", who="tester")
    journal.close()
    deployment.push(deployment.live[8:12])
    deployment.stop()
    report = report_of(deployment)
    assert not report["compared"] and "an operator's controls changed it" in report["note"]
    assert "pause by tester at the bar of" in report["note"]
    assert not mismatches.messages


@pytest.mark.slow
def test_a_rejected_order_is_named_by_the_report_and_alerted(server, deployment):
    mismatches = Mismatches()
    deployment.start(observers=Observers(mismatches))
    server.reject_next("asset XOM is not tradable", symbol="XOM", status=422)
    deployment.push(deployment.live[:12])
    deployment.stop()
    orders = deployment.session_orders()
    rejected = orders[orders["status"] == "rejected"].iloc[0]
    report = report_of(deployment)
    assert report["compared"] and not report["clean"]
    named = [d for d in report["order_differences"] if d["client_order_id"] == rejected["client_order_id"]]
    assert len(named) == 1
    difference = named[0]
    assert (difference["symbol"], difference["side"], difference["size_live"]) == \
        ("XOM", rejected["side"], abs(rejected["size"]))
    assert difference["datetime"] == str(pd.Timestamp(rejected["datetime"]))
    assert (difference["status_live"], difference["status_replay"]) == ("rejected", "filled")
    assert "rejected live, filled in the replay" in difference["message"]
    assert "XOM" in difference["message"] and str(pd.Timestamp(rejected["datetime"])) in difference["message"]
    assert report["alarms"] and "order difference" in report["alarms"][0]
    md = (deployment.state / "reconciliation" / f"{report['date']}.md").read_text()
    assert difference["message"] in md
    assert len(mismatches.messages) == 1 and "XOM" in mismatches.messages[0]
    # by hand, on the session's folder: the same differences
    again, path = reconcile_folder(load_config(deployment.config_path), session_folder(deployment))
    assert path.name == f"{report['date']}-2.json"
    assert again.order_differences == report["order_differences"]


@pytest.mark.slow
def test_a_session_that_starts_with_positions_is_replayed_from_the_previous_end(server, deployment):
    """The second session starts holding positions with their stop legs at the broker: the replay starts
    from the first session's end (seeded venue and journal, claimed by the start's reconciliation) and
    finds live equal to it."""
    deployment.start()
    groups = iter(deployment.live)
    deployment.push([next(groups)])
    while not server.positions():  # the first session ends holding positions, their stops at the broker
        deployment.push([next(groups)])
    deployment.stop()
    held = server.positions()
    deployment.start()
    deployment.push(list(groups)[:12])
    deployment.stop()
    day = deployment.live[0]["AAPL"].datetime.date()
    assert sorted(p.name for p in (deployment.state / "reconciliation").glob("*.json")) == \
        [f"{day}-2.json", f"{day}.json"]  # a second session on the same day
    first, second = (json.loads((deployment.state / "reconciliation" / name).read_text())
                     for name in (f"{day}.json", f"{day}-2.json"))
    assert first["clean"]
    assert second["compared"], second["note"]
    assert "started with positions" in second["note"] and sorted(held)[0] in second["note"]
    assert second["orders_live"] >= 3 and second["orders_live"] == second["orders_replay"]
    assert second["differences"] == 0 and second["clean"], second["order_differences"]


def row(cid, side, qty, order_type, status, *, leg=None, parent=None, stop=None, limit=None, filled=0.0, price=None,
        venue_id=None):
    return {"client_order_id": cid, "venue_order_id": venue_id, "parent_client_order_id": parent, "leg": leg,
            "symbol": "AAPL", "side": side, "qty": qty, "order_type": order_type, "time_in_force": "gtc",
            "limit_price": limit, "stop_price": stop, "trail_percent": None, "trail_price": None,
            "bar_datetime": dt.datetime(2026, 12, 3, 15, 58), "reason": None, "info": {}, "status": status,
            "filled_qty": filled, "filled_avg_price": price, "status_reason": None}


def test_a_seeded_venue_holds_the_position_and_works_the_filled_entrys_stop():
    from brokers.simulator import MatchingEngine
    from feeds.live_feed import Bar

    engine = MatchingEngine(50_000.0)
    seeded_id = "00000000-0000-0000-0000-000000000001"  # the id the engine would give its own first order
    entry = row("t-AAPL-entry", "buy", 10, "market", "filled", filled=10, price=100.0, venue_id=seeded_id)
    stop = row("t-AAPL-stop", "sell", 10, "stop", "held", leg="stop_loss", parent="t-AAPL-entry", stop=95.0)
    never_sent = row("t-AAPL-later", "buy", 5, "market", "intent")
    engine.seed({"AAPL": (10.0, 100.0)}, [(entry, [stop]), (never_sent, [])])
    assert engine.venue_positions()["AAPL"].qty == 10 and engine.account().cash == 50_000.0
    view = engine.view(engine.by_client_id["t-AAPL-entry"])
    assert (view.id, view.status, view.filled_qty, view.filled_avg_price) == (seeded_id, "filled", 10, 100.0)
    assert [(leg.client_order_id, leg.status) for leg in view.legs] == [("t-AAPL-stop", "new")]  # working
    assert "t-AAPL-later" not in engine.by_client_id  # an intent never reached the venue
    observed = dt.datetime(2026, 12, 4, 9, 30)
    engine.observe_bars(observed, {"AAPL": Bar(observed, 96, 97, 90, 91, 1e3)})
    assert engine.by_client_id["t-AAPL-stop"].status == "new"  # a bar only observed tries no order
    events = engine.on_bars(dt.datetime(2026, 12, 4, 9, 31),
                            {"AAPL": Bar(dt.datetime(2026, 12, 4, 9, 31), 96, 97, 94, 95.5, 1e3)})
    assert [(e.event, e.order.client_order_id, e.price) for e in events] == [("fill", "t-AAPL-stop", 95.0)]
    assert "AAPL" not in engine.venue_positions() and engine.account().cash == 50_950.0
    own = engine.submit(OrderRequest("t-AAPL-new", "AAPL", "buy", 1))
    assert own.id != seeded_id  # the engine's own ids skip the seeded ones


def test_a_session_that_started_with_positions_is_not_compared_without_a_matching_previous_end():
    facts = {"saved": {"bar_datetime": "2026-12-04T00:03:00", "state": {"plans": [{"symbol": "JPM"}]}},
             "start": {"cash": 80_000.0, "positions": {"JPM": {"size": 343.0, "price": 58.2}}}}
    assert started_with(facts) == "the session started with positions or open orders (JPM)"
    assert start_carry(facts, None) == (None, "no record of the previous session's end to start the replay from")
    carry = {"saved_bar": "2026-12-04T00:03:00", "cash": 80_000.0, "positions": {"JPM": [343.0, 58.5]},
             "families": [], "fills": []}
    assert start_carry(facts, {"carry": carry}) == (carry, None)
    _, why = start_carry(facts, {"carry": {**carry, "saved_bar": "2026-12-04T00:02:00"}})
    assert why.startswith("the previous session's record ends with the state of 2026-12-04T00:02:00")
    _, why = start_carry(facts, {"carry": {**carry, "positions": {"JPM": [300.0, 58.5]}}})
    assert why.startswith("the account changed between the sessions")
    assert started_with({"saved": None, "start": {"cash": 1.0, "positions": {}}}) is None
