"""``run.py live --replay``: the live path (live feeds, live broker, journal) on recorded bars against the
simulated broker writes the backtest's records, and on the same data its orders are the backtest's."""
import json

import pandas as pd
import pytest

import run
from brokers.journal import Journal, sqlite_url

SAMPLE = ["data/sample/AAPL_data.csv", "data/sample/JPM_data.csv", "data/sample/XOM_data.csv",
          "data/sample/PYPL_data.csv"]  # PYPL starts in 2015: symbols with different calendars


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    data = [arg for path in SAMPLE for arg in ("--data", path)]
    replay = [arg for path in SAMPLE for arg in ("--replay", path)]
    baseline = ["--strategy", "momentum_breakout"]
    assert run.main(["backtest", *data, *baseline, "--out", str(root / "backtest"), "--no-plot"]) == 0
    assert run.main(["live", *replay, *baseline, "--out", str(root / "replay"), "--no-plot"]) == 0
    return root / "backtest", root / "replay"


@pytest.mark.slow
def test_replay_orders_equal_the_backtests(runs):
    """The CI parity test: every order's (datetime, symbol, side, size), and every other column of
    orders.csv (type, status, fill price and time, commission, client id, reason), are the backtest's."""
    backtest, replay = (pd.read_csv(folder / "orders.csv") for folder in runs)
    assert len(backtest) > 200 and set(backtest["symbol"]) == {"AAPL", "JPM", "XOM", "PYPL"}
    pd.testing.assert_frame_equal(replay[["datetime", "symbol", "side", "size"]],
                                  backtest[["datetime", "symbol", "side", "size"]])
    pd.testing.assert_frame_equal(replay, backtest)


@pytest.mark.slow
def test_replay_writes_the_backtests_records_and_metrics(runs):
    backtest, replay = runs
    for name in ("trades.csv", "positions.csv", "equity.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(replay / name), pd.read_csv(backtest / name), obj=name)
    b, r = (json.loads((folder / "metrics.json").read_text()) for folder in runs)
    assert r.pop("mode") == "replay" and r == b
    assert (replay / "report.html").stat().st_size > 0


@pytest.mark.slow
def test_replay_journal_has_every_order_and_fill(runs):
    _, replay = runs
    journal = Journal(sqlite_url(replay / "journal.sqlite"))
    orders = pd.read_csv(replay / "orders.csv")
    rows = {o.client_order_id: o for o in journal.orders()}
    assert set(orders["client_order_id"]) == set(rows)
    for _, order in orders.iterrows():
        row = rows[order["client_order_id"]]
        assert (row.symbol, row.side, row.qty) == (order["symbol"], order["side"], order["size"])
        assert row.status == {"completed": "filled", "canceled": "canceled", "accepted": "new"}.get(
            order["status"], row.status)
    filled = orders[orders["status"] == "completed"]
    fills = {f["client_order_id"]: f for f in journal.fills()}
    assert set(filled["client_order_id"]) == set(fills)
    assert all(abs(fills[c]["price"] - p) < 1e-9 for c, p in zip(filled["client_order_id"], filled["price"]))
    assert len(journal.table("equity")) == len(pd.read_csv(replay / "equity.csv"))


def test_the_loop_runs_at_the_configured_thread_switch_interval_and_restores_pythons(tmp_path):
    """``live.thread_switch_seconds`` holds while the bars are handled; the process's own interval is
    back afterwards (tests and a caller's threads run at Python's)."""
    import sys

    from config import load_config
    from engine.live import run_replay
    from feeds.loader import load_bars
    from strategies.momentum_breakout import MomentumBreakout

    seen = []

    class Watching(MomentumBreakout):
        def decide(self, now, fresh):
            seen.append(sys.getswitchinterval())
            super().decide(now, fresh)

    before = sys.getswitchinterval()
    cfg = load_config(overrides={"backtest.progress": False, "live.thread_switch_seconds": 0.03})
    symbol, frame = load_bars(SAMPLE[0])
    run_replay(cfg, {symbol: frame.iloc[:80]}, strategy_cls=Watching, journal_dir=tmp_path)
    assert len(seen) > 50 and set(seen) == {0.03}
    assert sys.getswitchinterval() == before
