"""The dashboard's figures (``dashboard.figures``): each checked against a hand count or a library."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import figures

T0 = dt.datetime(2024, 1, 2, 9, 30)


def test_thinning_keeps_the_ends_the_peak_and_the_bottom():
    index = pd.date_range(T0, periods=10_000, freq="min")
    values = np.sin(np.linspace(0, 20, 10_000)) + np.linspace(0, 1, 10_000)
    values[4321], values[7777] = -50.0, 99.0  # a crash bar and a spike
    kept, series = figures.thin(index, {"v": values}, 300)
    assert len(kept) <= 310
    assert kept[0] == index[0] and kept[-1] == index[-1]
    assert series["v"].min() == -50.0 and series["v"].max() == 99.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=500), st.integers(100, 400))
def test_thinning_returns_points_of_the_series_in_order(values, points):
    index = pd.date_range(T0, periods=len(values), freq="min")
    kept, series = figures.thin(index, {"v": np.array(values)}, points)
    assert kept.is_monotonic_increasing and kept.is_unique
    positions = index.get_indexer(kept)
    assert np.array_equal(series["v"], np.array(values)[positions])


def test_round_trips_from_fills_match_a_hand_count():
    fills = pd.DataFrame([
        ("AAPL", "buy", 10, 100.0, 1.0, T0),
        ("AAPL", "buy", 10, 110.0, 1.0, T0 + dt.timedelta(minutes=1)),
        ("AAPL", "sell", 20, 120.0, 2.0, T0 + dt.timedelta(minutes=2)),   # 2400 - 2100 - 4 commission
        ("XOM", "buy", 5, 50.0, 0.5, T0),
        ("XOM", "sell", 5, 40.0, 0.5, T0 + dt.timedelta(minutes=3)),      # -50 - 1
        ("JPM", "buy", 3, 10.0, 0.0, T0),                                   # still open
    ], columns=["symbol", "side", "qty", "price", "commission", "filled_datetime"])
    trips = figures.round_trips(fills).set_index("symbol")
    assert trips.loc["AAPL", "pnl"] == pytest.approx(296.0) and trips.loc["AAPL", "entry_price"] == 105.0
    assert trips.loc["XOM", "pnl"] == pytest.approx(-51.0)
    assert trips.loc["JPM", "exit_reason"] == "end"
    achieved = figures.performance(pd.Series([100.0, 101.0], index=[T0, T0 + dt.timedelta(days=1)]),
                                   figures.round_trips(fills))
    assert achieved["win_rate"] == 0.5 and achieved["n_trades"] == 2
    assert "sharpe" not in achieved and "too_short" in achieved  # a day of returns: no Sharpe


def test_slippage_is_positive_when_it_cost_the_trader():
    assert figures.order_slippage("buy", 100.5, 100.0) == pytest.approx(50.0)
    assert figures.order_slippage("sell", 99.5, 100.0) == pytest.approx(50.0)
    assert figures.order_slippage("sell", 100.5, 100.0) == pytest.approx(-50.0)
    assert figures.order_slippage("buy", None, 100.0) is None


def test_sector_and_correlation_exposure_and_var():
    values = pd.Series({"AAPL": 3000.0, "MSFT": 2000.0, "XOM": 1000.0})
    sectors = {"AAPL": "Tech", "MSFT": "Tech", "XOM": "Energy"}
    assert figures.sector_exposure(values, sectors, 10_000.0) == [{"sector": "Tech", "weight": 0.5},
                                                                 {"sector": "Energy", "weight": 0.1}]
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, 200)
    returns = pd.DataFrame({"AAPL": base, "MSFT": base + rng.normal(0, 0.001, 200), "XOM": rng.normal(0, 0.01, 200)})
    corr = figures.correlation_exposure(returns, ["AAPL", "MSFT", "XOM"])
    assert corr["pair"][:2] == ["AAPL", "MSFT"] and corr["pair"][2] > 0.9
    assert corr["mean"] == pytest.approx(np.mean([returns.corr().iloc[i, j] for i, j in ((0, 1), (0, 2), (1, 2))]))
    weights = pd.Series({"AAPL": 0.3, "XOM": 0.1})
    book = returns["AAPL"] * 0.3 + returns["XOM"] * 0.1
    assert figures.portfolio_var(returns, weights, 0.95) == pytest.approx(-np.quantile(book, 0.05, method="lower"))
    assert figures.correlation_exposure(returns, ["AAPL"])["mean"] is None


def test_targets_say_met_not_met_or_not_measurable():
    rows = {r["key"]: r for r in figures.targets({"win_rate": 0.7, "max_drawdown": 0.2, "sharpe": None},
                                                 {"win_rate": 0.65, "max_drawdown": 0.15, "sharpe": 2.5})}
    assert rows["win_rate"]["met"] is True and rows["max_drawdown"]["met"] is False
    assert rows["sharpe"]["met"] is None and rows["sharpe"]["achieved"] is None


def test_the_equity_curve_is_json_ready_with_the_benchmark_on_the_same_start():
    index = pd.date_range(T0, periods=5, freq="D")
    equity = pd.Series([100.0, 110.0, 99.0, 120.0, 130.0], index=index)
    bench = pd.Series([1.0, 1.1, np.nan, 1.2, 1.3], index=index)
    curve = figures.equity_curve(equity, bench, 100)
    assert curve["equity"] == [100.0, 110.0, 99.0, 120.0, 130.0]
    assert curve["drawdown"][2] == pytest.approx(0.1)
    assert curve["benchmark"][0] == 100.0 and curve["benchmark"][2] == pytest.approx(110.0)  # carried forward
    assert figures.histogram([0.55, 0.61, None, float("nan")])["n"] == 2
    assert figures.worst_drift({"a": 0.1, "b": 0.5, "c": float("nan")}, 2) == [{"feature": "b", "psi": 0.5},
                                                                               {"feature": "a", "psi": 0.1}]
