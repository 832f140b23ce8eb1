"""Three restarts that lost a fill or booked one twice, each replayed exactly: a real ``python run.py
live`` process killed with SIGKILL at the moment that broke it, bars arriving while it is down or
while it reconciles, then the checks of ``tests.live.crash`` (nothing sent twice, journal == broker,
never short, positions equal, the backtest's orders)."""
import pytest

from brokers.alpaca.local_server import AlpacaTestServer
from tests.live.crash import ScriptedRun
from tests.live.harness import wait_for

pytestmark = pytest.mark.slow


def saved_plans(run: ScriptedRun) -> list[dict]:
    return run.saved_state()["plans"]


def test_an_exit_sent_before_the_kill_is_heard_of_after_the_restart(tmp_path):
    """Bar 6 sends signal exits for JPM and XOM; the process dies once that bar is saved, the exits fill
    on bar 7 while it is down. The restarted strategy must hear of those fills (the saved state names
    the exits in flight), forget the plans, and enter XOM and JPM again on bars 11 and 12 as the
    backtest does. Before: the plans stayed ``exiting`` for good and the symbols were never traded again."""
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server, \
            ScriptedRun(server, tmp_path, live=24) as run:
        run.start()
        run.push(until=6)
        assert {p["symbol"] for p in saved_plans(run) if p["exiting"]} == {"JPM", "XOM"}
        run.kill()
        run.push_while_down()  # bar 7: both exits fill at its open
        assert server.positions() == {"AAPL": 259}
        run.start()
        run.catch_up()
        assert not [p for p in saved_plans(run) if p["exiting"]]
        assert run.finish() == []
        # the exits' fills keep the time they happened at (bar 7's open), as in the backtest
        orders = run.deployment.session_orders()
        exits = orders[(orders["reason"] == "signal") & (orders["datetime"] == run.bars[6]["JPM"].datetime)]
        assert sorted(exits["symbol"]) == ["JPM", "XOM"]
        assert set(exits["filled_datetime"]) == {run.bars[7]["JPM"].datetime}


def test_a_fill_during_reconciliation_is_booked_once(tmp_path):
    """Bar 2 sends JPM's entry; the process dies once that bar is saved. Its successor reads positions
    (flat), and right then bar 3 fills the entry, before the successor looks the order up. Before:
    the fill was taken for one already in the positions, its trade update dropped as seen, the book
    stayed flat while the broker held JPM, and the stop that later filled left the broker short."""
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server, \
            ScriptedRun(server, tmp_path, live=24) as run:
        run.start()
        run.push(until=2)
        run.kill()
        group = run.bars[run.next]
        run.next += 1
        released = []
        server.on_request("GET", "/v2/positions", lambda: released.append(server.push(group)))
        run.start()
        wait_for(lambda: released, what="the restart to read positions")
        run.catch_up()
        assert server.positions() == {"JPM": 343}
        assert run.finish() == []


@pytest.mark.parametrize("when", ["while_down", "first_bar_after_restart"])
def test_a_stop_leg_that_fills_around_a_restart_is_booked_once(tmp_path, when):
    """With 0.5% stops, AAPL's entry (bar 6) fills on bar 7 and its stop on bar 8. The process dies once
    bar 7 is saved; bar 8 comes while it is down, or as the first bar after the restart. Before: the
    stop leg of the filled entry was not reconciled; its fill was adopted as an order this deployment
    did not place, or taken from a stale journal row, and a later sync booked the same fill again
    (the book short 259 AAPL, the broker flat)."""
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server, \
            ScriptedRun(server, tmp_path, live=24, strategy_extra="stop_pct = 0.005") as run:
        run.start()
        run.push(until=7)
        assert server.positions().get("AAPL") == 259
        run.kill()
        if when == "while_down":
            run.push_while_down()
            assert "AAPL" not in server.positions()
        run.start()
        if when == "while_down":
            run.catch_up()
        assert run.finish() == []
