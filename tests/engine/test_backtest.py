"""The backtest engine on the real sample data: pinned baseline figures, fill rules, costs,
alignment of symbols with different calendars, and identical results in every run mode."""
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analyzers.records import ORDER_COLUMNS, POSITION_COLUMNS, TRADE_COLUMNS
from config import load_config
from engine.backtest import run_backtest, trading_calendar
from feeds.loader import load_universe

pytestmark = pytest.mark.slow

BASELINE = {"backtest.progress": False, "backtest.strategy": "momentum_breakout"}   # these tests are of the engine


@pytest.fixture(scope="module")
def bars():
    return load_universe(["data/sample"])


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=BASELINE)


@pytest.fixture(scope="module")
def baseline(cfg, bars):
    return run_backtest(cfg, bars)


def test_baseline_stats_table_is_pinned(baseline):
    """The whole statistics table of the baseline on the sample data. A change here is a change in
    behaviour: explain it in the commit, never tune to it."""
    m = baseline.metrics
    pinned = {
        "n_trades": 799,
        "n_open_at_end": 0,
        "total_return": 0.25066440456177563,
        "cagr": 0.04578272810826256,
        "sharpe": 1.0642039622525061,
        "max_drawdown": 0.04552556012017028,
        "win_rate": 0.39173967459324155,
        "avg_win_loss_ratio": 2.2299449334254504,
    }
    for key, value in pinned.items():
        assert_allclose(m[key], value, rtol=1e-9, err_msg=key)
    assert m["exit_reasons"] == {"signal": 311, "stop": 272, "time": 216}
    assert_allclose(m["buy_and_hold"]["total_return"], 1.8765453605664022, rtol=1e-9)


def test_records_have_the_documented_columns(baseline):
    rec = baseline.records
    assert list(rec.orders.columns[:10]) == ["datetime", "symbol", "side", "size", "type", "status", "price",
                                             "stop_price", "client_order_id", "reason"]
    assert list(rec.orders.columns) == ORDER_COLUMNS
    assert list(rec.trades.columns[:15]) == [
        "symbol", "entry_datetime", "exit_datetime", "side", "size", "entry_price", "exit_price", "pnl", "pnl_pct",
        "initial_stop", "target", "confidence", "expected_return", "equity_at_entry", "exit_reason"]
    assert list(rec.trades.columns) == TRADE_COLUMNS
    assert list(rec.positions.columns) == POSITION_COLUMNS
    assert list(rec.equity.columns) == ["datetime", "equity", "cash", "drawdown"]
    assert rec.orders["client_order_id"].is_unique


def test_trade_pnl_adds_up_to_the_equity_change(baseline, cfg):
    rec = baseline.records
    assert_allclose(rec.trades["pnl"].sum(), rec.equity["equity"].iloc[-1] - cfg.backtest.cash, rtol=1e-9)


def test_market_orders_fill_at_the_next_open_with_slippage(baseline, bars, cfg):
    slip = cfg.costs.slippage_bps / 1e4
    market = baseline.records.orders.query("type == 'market' and status == 'completed'")
    assert len(market) > 100
    for _, o in market.iterrows():
        frame = bars[o["symbol"]]
        signal_pos = frame.index.get_loc(pd.Timestamp(o["datetime"]))
        fill_time = frame.index[signal_pos + 1]  # never the signal bar itself
        assert pd.Timestamp(o["filled_datetime"]) == fill_time
        side = 1 if o["side"] == "buy" else -1
        assert_allclose(o["price"], frame["open"].iloc[signal_pos + 1] * (1 + side * slip), rtol=1e-12)
        assert_allclose(o["commission"], o["size"] * o["price"] * cfg.costs.commission_bps / 1e4, rtol=1e-9)


def test_stops_are_real_orders_that_fill_at_or_below_their_price(baseline, bars):
    stops = baseline.records.orders.query("type == 'stop' and status == 'completed'")
    assert len(stops) > 10
    for _, o in stops.iterrows():
        frame = bars[o["symbol"]]
        bar = frame.loc[pd.Timestamp(o["filled_datetime"])]
        assert bar["low"] <= o["stop_price"] + 1e-9  # the bar reached the stop
        assert o["price"] <= o["stop_price"] + 1e-9  # filled at the stop or worse (gap, slippage)
    trades = baseline.records.trades
    stopped = trades[trades["exit_reason"] == "stop"]
    assert (stopped["exit_price"] <= stopped["initial_stop"] + 1e-9).all()
    assert_allclose(trades["initial_stop"] / trades["initial_stop"], 1.0)  # every baseline trade has a stop


def test_positions_weights_and_rules(baseline, cfg):
    pos = baseline.records.positions
    equity = baseline.records.equity.set_index("datetime")["equity"]
    assert_allclose(pos["value"], pos["size"] * pos["price"])
    assert_allclose(pos["weight"], pos["value"] / equity.reindex(pos["datetime"]).to_numpy())
    assert pos.groupby("datetime").size().max() <= cfg.risk.max_positions
    assert (pos["size"] > 0).all()  # long only
    assert pos["stop"].notna().all()


def test_runonce_on_and_off_give_identical_results(cfg, bars, baseline):
    other = run_backtest(cfg, bars, runonce=not cfg.backtest.runonce)
    for name in ("orders", "trades", "positions", "equity"):
        pd.testing.assert_frame_equal(getattr(other.records, name), getattr(baseline.records, name))
    assert other.metrics == baseline.metrics


def test_costs_are_on_by_default_and_cost_money(cfg, bars, baseline):
    assert baseline.metrics["commission_paid"] > 0 and baseline.metrics["slippage_paid"] > 0
    free = run_backtest(load_config(overrides={**BASELINE, "costs.commission_bps": 0.0,
                                               "costs.slippage_bps": 0.0}), bars)
    assert free.metrics["commission_paid"] == 0
    assert free.metrics["end_equity"] > baseline.metrics["end_equity"]


def test_fill_on_next_close_option(bars):
    cfg = load_config(overrides={**BASELINE, "costs.fill": "next_close", "costs.slippage_bps": 0.0})
    small = {k: bars[k] for k in ("AAPL", "JPM", "XOM")}
    result = run_backtest(cfg, small)
    market = result.records.orders.query("type == 'close' and status == 'completed'")
    assert len(market) > 5
    for _, o in market.iterrows():
        frame = small[o["symbol"]]
        pos = frame.index.get_loc(pd.Timestamp(o["datetime"]))
        assert pd.Timestamp(o["filled_datetime"]) == frame.index[pos + 1]
        assert_allclose(o["price"], frame["close"].iloc[pos + 1])


def test_late_starter_and_missing_days_are_aligned(cfg, bars):
    """PYPL starts in 2015; AAPL loses ten days: the clock is the union of all timestamps, each symbol
    trades only on its own bars after its own warm-up, and nobody waits for anybody."""
    holes = bars["AAPL"].index[300:310]
    universe = {"AAPL": bars["AAPL"].drop(holes), "PYPL": bars["PYPL"], "JPM": bars["JPM"]}
    result = run_backtest(cfg, universe)
    orders = result.records.orders
    assert list(pd.to_datetime(result.records.equity["datetime"])) == list(trading_calendar(universe))
    assert not orders[(orders["symbol"] == "AAPL") & pd.to_datetime(orders["datetime"]).isin(holes)].shape[0]
    warmup_end = bars["PYPL"].index[result.strategy.warmup_bars - 1]
    pypl = orders[orders["symbol"] == "PYPL"]
    assert len(pypl) and pd.to_datetime(pypl["datetime"]).min() >= warmup_end
    # JPM, which has every day, trades from its own warm-up as if alone
    alone = run_backtest(cfg, {"JPM": bars["JPM"]}).records.orders
    first_jpm = pd.to_datetime(orders[orders["symbol"] == "JPM"]["datetime"]).min()
    assert first_jpm == pd.to_datetime(alone["datetime"]).min()


def test_first_symbol_starting_late_does_not_delay_the_clock(cfg, bars):
    universe = {"AAA": bars["PYPL"], "JPM": bars["JPM"]}  # the first feed is the late one
    result = run_backtest(cfg, universe)
    assert pd.to_datetime(result.records.equity["datetime"]).iloc[0] == bars["JPM"].index[0]
    assert (result.records.orders["symbol"] == "JPM").any()
    assert pd.to_datetime(result.records.orders["datetime"]).min() < bars["PYPL"].index[0]


def test_start_date_trades_from_there_with_earlier_bars_as_warm_up(bars):
    cfg = load_config(overrides={**BASELINE, "backtest.start": dt.date(2016, 1, 4)})
    result = run_backtest(cfg, {k: bars[k] for k in ("AAPL", "JPM", "XOM")})
    assert pd.to_datetime(result.records.orders["datetime"]).min() >= pd.Timestamp("2016-01-04")
    assert pd.Timestamp(result.metrics["data_range"]["start"]) == pd.Timestamp("2016-01-04")
    assert result.records.equity["equity"].iloc[0] == cfg.backtest.cash


def test_a_rerun_is_identical(cfg, bars, baseline):
    again = run_backtest(cfg, bars)
    assert again.metrics == baseline.metrics


def test_intraday_bars(cfg):
    bars = load_universe(["data/intraday/2006-min-005.txt"])
    cfg = load_config(overrides={**BASELINE, "momentum_breakout.momentum_bars": 12,
                                 "momentum_breakout.breakout_bars": 12, "momentum_breakout.max_hold_bars": 6})
    result = run_backtest(cfg, bars)
    orders = result.records.orders
    assert len(orders) > 0
    times = pd.to_datetime(orders["datetime"])
    assert (times.dt.time != dt.time(0, 0)).any()  # intraday timestamps survive end to end
    assert math.isfinite(result.metrics["sharpe"] or 0.0)


def test_buy_and_hold_is_computed_on_every_run(baseline):
    bh = baseline.metrics["buy_and_hold"]
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown"):
        assert key in bh and bh[key] is not None
    assert np.isfinite(baseline.buy_and_hold["equity"]).all()
