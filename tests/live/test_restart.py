"""kill -9 at the worst moments, restart: no order lost, none duplicated, and the orders are still the
backtest's. The live runner is a real ``python run.py live`` process against the local Alpaca server;
the crash points use the broker's test hook (``LIVE_TEST_CRASH_AT``, see ``brokers.live_broker``)."""
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from brokers.journal import Journal, sqlite_url
from brokers.live_broker import CRASH_ENV
from brokers.testing.alpaca_server import AlpacaTestServer
from tests.live.harness import ROOT, STRATEGY_NAME, Deployment, processed_bar, wait_for

pytestmark = pytest.mark.slow

NAME = f"t-{STRATEGY_NAME}"  # the harness config's order_id_prefix + strategy: the journal's state key


def start(deployment: Deployment, env: dict, log_name: str) -> subprocess.Popen:
    log = open(deployment.tmp / log_name, "w")
    process = subprocess.Popen([sys.executable, "run.py", "live", "--config", str(deployment.config_path)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: deployment.server.connected() == (1, 1) or process.poll() is not None, timeout=60,
             what="the live process to connect")
    assert process.poll() is None, (deployment.tmp / log_name).read_text()
    return process


def push_until(deployment: Deployment, process: subprocess.Popen, groups) -> None:
    """Push bars one at a time, each once the process decided the last, until they run out or it dies."""
    for group in groups:
        deployment.server.push(group)
        when = max(b.datetime for b in group.values())
        wait_for(lambda: process.poll() is not None or
                 (processed_bar(deployment.journal_path, NAME) or pd.Timestamp.min) >= when,
                 timeout=30, what=f"bar {when}")
        if process.poll() is not None:
            break


@pytest.mark.parametrize("crash", ["after_intent", "after_submit", "mid_stream"])
def test_kill_9_then_restart_loses_no_order_and_sends_none_twice(tmp_path, crash):
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server:
        deployment = Deployment(server, tmp_path, live=24)
        env = {**os.environ, "APCA_API_KEY_ID": server.key_id, "APCA_API_SECRET_KEY": server.secret_key,
               "PYTHONPATH": str(ROOT)}
        env.pop(CRASH_ENV, None)
        first = start(deployment, {**env, **({CRASH_ENV: f"{crash}:2"} if crash != "mid_stream" else {})},
                      "first.log")
        bars = iter(deployment.live)
        if crash == "mid_stream":
            push_until(deployment, first, [next(bars) for _ in range(8)])
            server.push(next(bars))  # and kill it while it takes this bar in
            first.send_signal(signal.SIGKILL)
        else:
            push_until(deployment, first, bars)
        assert first.wait(30) == -signal.SIGKILL, (tmp_path / "first.log").read_text()
        sent_before = list(server.submissions)
        wait_for(lambda: server.connected() == (0, 0), what="the dead process's sockets to close")

        second = start(deployment, env, "second.log")
        # the bar it died on is decided again (it is fresh); the next bar comes after, as live
        crashed_on = max(b.datetime for b in server.history["AAPL"])
        wait_for(lambda: (processed_bar(deployment.journal_path, NAME) or pd.Timestamp.min) >= crashed_on,
                 what="the bar it died on to be decided again")
        push_until(deployment, second, bars)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, (tmp_path / "second.log").read_text()

        journal = Journal(sqlite_url(deployment.journal_path))
        orders = journal.orders()
        # nothing sent twice; everything the journal sent is at the broker, and the reverse
        assert len(server.submissions) == len(set(server.submissions))
        at_broker = {o.client_order_id for o in server.engine.orders.values() if o.parent_id is None}
        assert {o.client_order_id for o in orders if o.parent_client_order_id is None} == at_broker
        assert not [o for o in orders if o.status in ("intent", "abandoned")]
        if crash == "after_intent":  # the order written just before the kill went out once, after it
            assert len(sent_before) == 1 and server.submissions.count(server.submissions[1]) == 1
        if crash == "after_submit":  # the order sent just before the kill was adopted, not resent
            assert len(sent_before) == 2 and server.submissions[:2] == sent_before
        # and the whole run placed exactly the backtest's orders (the backtest's records never see the
        # orders of its very last bar: they are notified on the bar after)
        backtest = deployment.backtest_orders()
        last = max(max(b.datetime for b in g.values()) for g in deployment.live)
        live = pd.DataFrame([(o.bar_datetime, o.symbol, o.side, o.qty) for o in orders if o.bar_datetime < last],
                            columns=["datetime", "symbol", "side", "size"])
        key = ["datetime", "symbol", "side", "size"]
        pd.testing.assert_frame_equal(live.sort_values(key).reset_index(drop=True),
                                      backtest[key].sort_values(key).reset_index(drop=True), check_dtype=False)
        assert server.positions() == {k: v for k, v in _final_positions(journal).items() if v}


def _final_positions(journal: Journal) -> dict[str, float]:
    rows = journal.table("positions")
    if not rows:
        return {}
    last = max(r["bar_datetime"] for r in rows)
    return {r["symbol"]: r["qty"] for r in rows if r["bar_datetime"] == last}
