"""The default strategy ``ml`` through the live path: ``run.py live --replay`` places the backtest's orders,
its replaced exits included (a new stop and take-profit, one cancelling the other: Alpaca OCO orders
through the live broker), on a small model config that trades, moves stops, updates targets and halves;
and so does the ranked plan ``ml_rank`` (sales by rank, stops, the risk score's delays)."""
import pandas as pd
import pytest

import run
from tests.strategies.test_train_cli import SMALL_TOML as SMALL_MODELS_TOML

pytestmark = pytest.mark.slow

# entries at the small model's confidence; halving and target updates at smaller changes than the
# blueprint's, so that a few years of six symbols replace exits in every way the plan does
SMALL_TOML = SMALL_MODELS_TOML + """
[backtest]
progress = false
[ml]
min_confidence = 0.5
min_expected_return = 0.0
[risk]
confidence_drop_halve = 0.02
target_update_threshold = 0.01
"""
SYMBOLS = ["AAPL", "KO", "XOM", "JPM", "MSFT", "NVDA"]


def test_ml_replay_orders_equal_the_backtests_with_replaced_exit_pairs(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    files = [f"data/sample/{symbol}_data.csv" for symbol in SYMBOLS]
    common = ["--strategy", "ml", "--config", str(config), "--no-plot"]
    bt_dir, rp_dir = tmp_path / "backtest", tmp_path / "replay"
    assert run.main(["backtest", *[a for f in files for a in ("--data", f)], *common, "--out", str(bt_dir)]) == 0
    assert run.main(["live", *[a for f in files for a in ("--replay", f)], *common, "--out", str(rp_dir)]) == 0
    backtest, replay = (pd.read_csv(folder / "orders.csv") for folder in (bt_dir, rp_dir))
    key = ["datetime", "symbol", "side", "size"]
    pd.testing.assert_frame_equal(replay[key], backtest[key])
    pd.testing.assert_frame_equal(replay, backtest)  # types, statuses, fill prices and times, ids, reasons
    pd.testing.assert_frame_equal(pd.read_csv(rp_dir / "trades.csv"), pd.read_csv(bt_dir / "trades.csv"))
    # exits replaced after the entry bar: pairs of a stop and a take-profit, some filled, some canceled
    buys = backtest[backtest["side"] == "buy"]
    entries = set(zip(buys["datetime"], buys["symbol"]))
    replaced = backtest[[(w, s) not in entries for w, s in zip(backtest["datetime"], backtest["symbol"])]]
    targets = replaced[replaced["reason"] == "target"]
    assert len(targets) >= 20 and {"completed", "canceled"} <= set(targets["status"])
    assert {"completed", "canceled"} <= set(replaced.loc[replaced["reason"] == "stop", "status"])
    assert (backtest["reason"] == "reduce").any()  # halved: a sell beside the new pair, for the other half
    # live, a bar's predictions are journaled once its orders are sent (off the path from bar to order)
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{rp_dir / 'journal.sqlite'}")
    with engine.connect() as conn:
        sent = dict(conn.execute(text("select bar_datetime, max(created_at) from orders group by 1")).all())
        recorded = dict(conn.execute(text("select bar_datetime, min(recorded_at) from predictions group by 1")).all())
    engine.dispose()
    both = set(sent) & set(recorded)
    assert len(both) > 50 and all(recorded[bar] >= sent[bar] for bar in both)


# the ranked plan on the same small models: top 2 of 6, sold below rank 3, so that it sells by rank often
RANK_TOML = SMALL_MODELS_TOML + """
[backtest]
progress = false
[ml_rank]
top_k = 2
keep_k = 3
"""


def replay_and_backtest(tmp_path, strategy: str, toml: str) -> tuple:
    """orders.csv, trades.csv and decisions.log of a backtest and of a replay through the live path."""
    config = tmp_path / f"{strategy}.toml"
    config.write_text(toml)
    files = [f"data/sample/{symbol}_data.csv" for symbol in SYMBOLS]
    common = ["--strategy", strategy, "--config", str(config), "--no-plot"]
    bt_dir, rp_dir = tmp_path / f"{strategy}-backtest", tmp_path / f"{strategy}-replay"
    assert run.main(["backtest", *[a for f in files for a in ("--data", f)], *common, "--out", str(bt_dir)]) == 0
    assert run.main(["live", *[a for f in files for a in ("--replay", f)], *common, "--out", str(rp_dir)]) == 0
    return tuple({"orders": pd.read_csv(folder / "orders.csv"), "trades": pd.read_csv(folder / "trades.csv"),
                  "decisions": (folder / "decisions.log").read_text().splitlines()} for folder in (bt_dir, rp_dir))


def test_ml_rank_replay_orders_equal_the_backtests(tmp_path):
    backtest, replay = replay_and_backtest(tmp_path, "ml_rank", RANK_TOML)
    pd.testing.assert_frame_equal(replay["orders"], backtest["orders"])
    pd.testing.assert_frame_equal(replay["trades"], backtest["trades"])
    assert replay["decisions"] == backtest["decisions"]
    trades, lines = backtest["trades"], backtest["decisions"]
    assert {"rank", "stop"} <= set(trades["exit_reason"]) and len(trades) >= 20
    assert sum(" REBALANCE " in line for line in lines) > 100
    # entries the risk score delayed went a bar later, in both
    assert any(" delayed 1 bar(s)" in line for line in lines)
