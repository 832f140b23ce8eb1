"""A live deployment on the real alpaca-py clients against the local Alpaca-compatible server: the
orders equal the backtest's, rejections, partial fills, stale data, disconnects, and restarts; with the
journal on SQLite and on PostgreSQL (``journal_url``), and a journal connection cut mid-session."""
import logging

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal
from strategies.momentum_breakout import MomentumBreakout
from tests.live.harness import Deployment, wait_for

pytestmark = pytest.mark.slow

COMPARED = ["datetime", "symbol", "side", "size", "type", "status", "filled_datetime"]


@pytest.fixture
def server():
    # the test server fills with the backtest's costs ([costs] in the harness config)
    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as srv:
        yield srv


@pytest.fixture
def deployment(server, tmp_path, journal_url):
    deployed = Deployment(server, tmp_path, journal_url=journal_url)
    yield deployed
    if deployed.thread is not None and deployed.thread.is_alive():  # a failed test: stop its runner
        deployed.stop()


def test_live_orders_equal_the_backtests_on_the_same_bars(server, deployment):
    """Warm-up from history, then streamed bars: every order (time, symbol, side, size, type, status,
    fill time and price) is the backtest's, through the real alpaca-py clients."""
    deployment.start()
    deployment.push(deployment.live)
    deployment.stop()
    live, backtest = deployment.session_orders(), deployment.backtest_orders()
    assert len(live) >= 20
    pd.testing.assert_frame_equal(live[COMPARED], backtest[COMPARED], check_dtype=False)
    assert_allclose(live["price"], backtest["price"], rtol=1e-12)
    assert len(server.submissions) == len(set(server.submissions))  # no order sent twice


def test_rejection_reaches_the_strategy_with_the_reason_and_is_not_retried(server, deployment, caplog):
    deployment.start()
    server.reject_next("asset XOM is not tradable", symbol="XOM", status=422)
    with caplog.at_level(logging.WARNING, logger="live.broker"):
        deployment.push(deployment.live[:10])  # the strategy hears of it at the bar after
    deployment.stop()
    journal = Journal(deployment.journal_url)
    rejected = [o for o in journal.orders() if o.status == "rejected"]
    assert rejected and rejected[0].symbol == "XOM" and rejected[0].status_reason == "asset XOM is not tradable"
    assert server.submissions.count(rejected[0].client_order_id) == 1
    assert "broker rejected order" in caplog.text and "not tradable" in caplog.text
    orders = deployment.session_orders()
    assert "rejected" in set(orders.loc[orders["symbol"] == "XOM", "status"])


def test_a_refused_exit_is_decided_again_at_the_next_bar(server, deployment):
    """Bar 6's signal exit of JPM is refused by the broker: the plan must not stay ``exiting`` for good
    (the position would never be exited); the strategy decides the exit again at bar 7."""
    deployment.start()
    deployment.push(deployment.live[:6])
    server.reject_next("insufficient qty available for order", symbol="JPM")
    deployment.push(deployment.live[6:9])
    deployment.stop()
    journal = Journal(deployment.journal_url)
    exits = [(o.bar_datetime, o.status) for o in journal.orders() if o.symbol == "JPM" and o.reason == "signal"]
    bar = [group["JPM"].datetime for group in deployment.live]
    assert exits[:2] == [(bar[6], "rejected"), (bar[7], "filled")]
    assert "JPM" not in server.positions()


def test_partial_fills_are_journaled_and_complete_the_order(server, deployment):
    deployment.start()
    for symbol in ("AAPL", "JPM", "XOM"):
        server.split_next_fill(symbol, parts=3)
    deployment.push(deployment.live[:8])
    deployment.stop()
    journal = Journal(deployment.journal_url)
    split = [o for o in journal.orders() if len(journal.fills(o.client_order_id)) == 3]
    assert split, "a fill split in three reaches the journal as three fills"
    order = split[0]
    assert order.status == "filled" and sum(f["qty"] for f in journal.fills(order.client_order_id)) == order.qty
    orders = deployment.session_orders()
    assert orders.loc[orders["client_order_id"] == order.client_order_id, "status"].item() == "completed"


def test_stale_bars_halt_new_entries(server, deployment):
    """Bars a day old are stale (stale_after_seconds = 60): entries (and their stop legs) are refused
    with the reason and never sent."""
    text = deployment.config_path.read_text().replace("stale_after_seconds = 1e9", "stale_after_seconds = 60.0")
    deployment.config_path.write_text(text)
    deployment.live = [{s: b._replace(datetime=b.datetime - pd.Timedelta(days=1)) for s, b in g.items()}
                       for g in deployment.live]
    deployment.start()
    deployment.push(deployment.live[:6])
    deployment.stop()
    journal = Journal(deployment.journal_url)
    refused = [o for o in journal.orders() if o.status == "rejected"]
    assert refused and all(o.status_reason.startswith("stale data: the bar of") for o in refused)
    assert all(o.side == "buy" for o in refused if o.parent_client_order_id is None)
    assert not server.submissions


def test_streams_reconnect_and_missed_bars_are_fetched(server, deployment):
    deployment.start()
    deployment.push(deployment.live[:4])
    server.drop_streams()
    missed = deployment.live[4]
    server.push(missed)  # nobody is listening: only the history has it
    wait_for(lambda: server.connected() == (1, 1), timeout=15, what="the streams to reconnect")
    deployment.push(deployment.live[5:10])
    deployment.stop()
    equity = pd.read_csv(sorted((deployment.state / "sessions").iterdir())[-1] / "equity.csv",
                         parse_dates=["datetime"])
    assert max(missed.values()).datetime in set(equity["datetime"])  # the missed minute was processed
    assert len(server.submissions) == len(set(server.submissions))
    journal = Journal(deployment.journal_url)
    assert {o.client_order_id for o in journal.orders() if o.venue_order_id} == \
        {o.client_order_id for o in server.engine.orders.values() if o.parent_id is None} | \
        {o.client_order_id for o in journal.orders() if o.parent_client_order_id and o.venue_order_id}


class KillSwitchBreakout(MomentumBreakout):
    """The baseline with a kill switch that trips after the first closed trade and survives restarts
    through the export_state/import_state hook."""

    def __init__(self):
        super().__init__()
        self.halted = False
        self.closed_trades = 0

    def notify_trade(self, trade):
        if trade.isclosed:
            self.closed_trades += 1
            self.halted = True

    def open_and_pending(self):
        # tripped: no free slot for entries; exits go on
        return self.cfg.risk.max_positions if self.halted else super().open_and_pending()

    def export_state(self):
        return {"halted": self.halted, "closed_trades": self.closed_trades}

    def import_state(self, state):
        self.halted, self.closed_trades = state["halted"], state["closed_trades"]


def test_kill_switch_and_positions_survive_a_restart(server, deployment):
    deployment.start(KillSwitchBreakout)
    groups = iter(deployment.live)
    while True:
        deployment.push([next(groups)])
        reader = Journal(deployment.journal_url)
        saved = reader.load_state(deployment.runner.name)
        reader.close()
        if saved[1]["strategy"]["halted"]:
            break
    deployment.stop()
    sent_before = len(server.submissions)
    held_before = server.positions()
    runner = deployment.start(KillSwitchBreakout)
    deployment.push(list(groups)[:6])
    deployment.stop()
    journal = Journal(deployment.journal_url)
    new_orders = [journal.order(cid) for cid in server.submissions[sent_before:]]
    assert not [o for o in new_orders if o.side == "buy"], "a tripped kill switch stays tripped after a restart"
    assert runner.name == deployment.runner.name
    # the position held before the restart is adopted and still managed: its plan exits it
    assert held_before and {o.symbol for o in new_orders if o.side == "sell"} == set(held_before)


def test_daily_session_trades_the_days_bar_once(server, tmp_path, journal_url):
    """1Day: after the close the session warms up on history and decides only the day's (fresh) bar; the
    bar still forming is not used, and the same close is not traded twice."""
    import datetime as dt
    import json
    import threading

    from brokers.alpaca.credentials import Credentials
    from config import load_config
    from engine.live import LiveRunner
    from strategies import get_strategy
    from tests.live.harness import SYMBOLS, live_config_text, load_server, now_minute, restamp, sample_bars

    today = dt.datetime.combine(now_minute().date(), dt.time())
    groups = restamp(sample_bars(41), today - dt.timedelta(days=40), dt.timedelta(days=1))  # the last: today
    load_server(server, groups)
    config = tmp_path / "daily.toml"
    config.write_text(live_config_text(server, tmp_path / "state").replace('timeframe = "1Min"', 'timeframe = "1Day"')
                      + "\ndaily_bar_delay_seconds = 0.0\n")
    journal = Journal(journal_url)
    runner = LiveRunner(load_config(config), strategy_cls=get_strategy("momentum_breakout"), symbols=SYMBOLS,
                        credentials=Credentials(server.key_id, server.secret_key), paper=True, journal=journal,
                        state_dir=tmp_path / "state")
    thread = threading.Thread(target=runner.run, kwargs={"max_sessions": 1})
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    yesterday = today - dt.timedelta(days=1)
    assert journal.load_state(runner.name)[0] == yesterday  # today's bar is still forming
    summary = json.loads(next((tmp_path / "state" / "sessions").glob("*/summary.json")).read_text())
    assert summary["traded_from"] == str(yesterday) and summary["bars"] == 1
    assert all(o.bar_datetime == yesterday for o in journal.orders())
    assert runner._next_session() is not None  # this close is done: the next session is tomorrow's


def test_journal_connections_cut_mid_session_lose_nothing(server, tmp_path, postgres_url, postgres_admin, caplog):
    """The PostgreSQL server cuts the live journal's connection inside the broker's batches (before
    order updates, intents and commits, one in 40 statements at most) and all of the database's connections
    between bars and at random moments from another thread: the session retries, and every order is
    the backtest's, journaled once, as at the broker."""
    import collections
    import itertools
    import random
    import threading

    from sqlalchemy import event, text
    from sqlalchemy.engine import make_url

    from tests.conftest import terminate_connections
    from tests.live.crash import check_invariants

    deployment = Deployment(server, tmp_path, journal_url=postgres_url,
                            extra="journal_retry_min_seconds = 0.02\njournal_retry_max_seconds = 0.1")
    database, cuts, done = make_url(postgres_url).database, collections.Counter(), threading.Event()
    rng = random.Random(15)
    seen = itertools.count()

    def cut(dbapi_connection, where):
        with postgres_admin.connect() as admin:  # the backend is gone when this returns
            admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": dbapi_connection.info.backend_pid})
        cuts[where] += 1

    last_cut = [0]

    def due(n: int) -> bool:  # not again before the replay of the last cut is done
        if n - last_cut[0] < 40:
            return False
        last_cut[0] = n
        return True

    # each kind cut at its first chance, then every few of its own (counted per kind: the session's
    # status is written from another thread, so the order of all statements is not fixed)
    kinds = collections.Counter()

    def chance(kind: str, every: int) -> bool:
        kinds[kind] += 1
        return cuts[kind] == 0 or kinds[kind] % every == 0

    def before_statement(conn, cursor, statement, parameters, context, executemany):
        n = next(seen)
        for kind, every in (("UPDATE orders", 3), ("INSERT INTO orders", 2)):
            if statement.startswith(kind) and chance(kind, every) and due(n):
                cut(conn.connection.dbapi_connection, kind)

    def before_commit(conn):
        n = next(seen)
        if conn.connection.dbapi_connection is not None and chance("COMMIT", 4) and due(n):
            cut(conn.connection.dbapi_connection, "COMMIT")

    def cutter():
        while not done.wait(rng.uniform(0.02, 0.2)):
            cuts["anywhere"] += terminate_connections(postgres_admin, database)

    deployment.start()
    event.listen(deployment.journal.engine, "before_cursor_execute", before_statement)
    event.listen(deployment.journal.engine, "commit", before_commit)
    thread = threading.Thread(target=cutter, daemon=True)
    try:
        with caplog.at_level(logging.WARNING, logger="live.journal"):
            deployment.push(deployment.live[:5])
            cuts["between bars"] += terminate_connections(postgres_admin, database)
            thread.start()
            deployment.push(deployment.live[5:])
            done.set()
            thread.join()
    finally:
        done.set()
        deployment.stop()
    inside_batches = ("UPDATE orders", "INSERT INTO orders", "COMMIT")
    assert min(cuts[k] for k in (*inside_batches, "between bars", "anywhere")) >= 1, cuts
    assert caplog.text.count("retry 1 of") >= sum(cuts[k] for k in inside_batches)
    assert check_invariants(server, deployment, compare_with_backtest=True) == []
    assert len(server.submissions) == len(set(server.submissions))
