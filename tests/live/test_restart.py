"""kill -9 at the worst moments, restart: no order lost, none duplicated, and the orders are still the
backtest's; with the journal on SQLite and on PostgreSQL. The live runner is a real ``python run.py live``
process against the local Alpaca server; the crash points use the broker's checkpoint, set to kill by
``tests.live.crash_child``; the checks are ``tests.live.crash.check_invariants``."""
import signal

import pytest

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal
from tests.live.crash import ScriptedRun

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("crash", ["after_intent", "after_submit", "mid_stream"])
def test_kill_9_then_restart_loses_no_order_and_sends_none_twice(tmp_path, crash, journal_url):
    """On either journal (a PostgreSQL one reaches the live process through ``[live] journal``)."""
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server, \
            ScriptedRun(server, tmp_path, live=24, journal_url=journal_url) as run:
        if crash == "mid_stream":
            run.start()
            run.push(until=7)
            server.push(run.bars[run.next])  # and kill it while it takes this bar in
            run.next += 1
            run.process.popen.send_signal(signal.SIGKILL)
        else:
            run.start(crash=f"{crash}:2")
            run.push(may_die=True)
        run.gone()
        sent_before = list(server.submissions)

        run.start()
        run.catch_up()  # the bar it died on is decided again (it is fresh); the next bar comes after, as live
        assert run.finish() == []  # nothing sent twice, journal == broker, the backtest's orders, positions
        journal = Journal(run.deployment.journal_url)
        assert not [o for o in journal.orders() if o.status == "abandoned"]
        journal.close()
        if crash == "after_intent":  # the order written just before the kill went out once, after it
            assert len(sent_before) == 1 and server.submissions.count(server.submissions[1]) == 1
        if crash == "after_submit":  # the order sent just before the kill was adopted, not resent
            assert len(sent_before) == 2 and server.submissions[:2] == sent_before
