"""Performance statistics against known numbers and the papers' formulas."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats as sps

from analyzers import stats


def equity_from_returns(returns, start="2020-01-01", cash=100.0):
    index = pd.bdate_range(start, periods=len(returns) + 1)
    return pd.Series(cash * np.cumprod(np.r_[1.0, 1.0 + np.asarray(returns)]), index=index)


def test_return_metrics_on_a_known_curve():
    equity = pd.Series([100.0, 110.0, 99.0, 108.9, 121.0],
                       index=pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"]))
    m = stats.return_metrics(equity)
    assert_allclose(m["total_return"], 0.21)
    assert_allclose(m["max_drawdown"], 0.10)  # 110 -> 99
    assert m["max_drawdown_duration_days"] == 5  # from the 110 peak on the 2nd to its recovery on the 7th
    rets = equity.pct_change().dropna()
    assert_allclose(m["sharpe"], rets.mean() / rets.std() * math.sqrt(252), rtol=1e-9)
    assert_allclose(m["daily_sharpe"], rets.mean() / rets.std(), rtol=1e-12)
    years = 6 / 365.25
    assert_allclose(m["cagr"], 1.21 ** (1 / years) - 1)


def test_intraday_equity_is_sampled_daily():
    index = pd.date_range("2020-01-01 09:30", periods=3, freq="h").append(
        pd.date_range("2020-01-02 09:30", periods=3, freq="h"))
    equity = pd.Series([100, 90, 101, 101, 130, 102.0], index=index)
    assert_allclose(stats.daily_returns(equity).to_numpy(), [102 / 101 - 1])
    assert_allclose(stats.return_metrics(equity)["max_drawdown"], 1 - 102 / 130)  # drawdowns use every bar


def test_a_run_shorter_than_a_day_has_no_cagr_and_no_nan():
    """A live session: four hours of minute equity. Annualising it would raise its return to the power
    2191 (or overflow); CAGR, the annual multiple and Calmar are None, every figure JSON-safe."""
    index = pd.date_range("2026-03-02 09:30", periods=240, freq="min")
    equity = pd.Series(100_000.0 * (1 + 0.0004 * np.sin(np.arange(240) / 9.0) + 0.00002 * np.arange(240)), index=index)
    m = stats.return_metrics(equity)
    assert m["cagr"] is None and m["annual_multiple"] is None and m["calmar"] is None
    assert_allclose(m["total_return"], equity.iloc[-1] / equity.iloc[0] - 1)
    assert m["n_days"] == 0 and m["sharpe"] == 0.0 and m["skew"] == 0.0 and m["kurtosis"] == 3.0
    json.dumps(m, allow_nan=False)
    single = stats.return_metrics(equity.iloc[:1])
    assert single["cagr"] is None and single["total_return"] == 0.0 and single["max_drawdown"] == 0.0


def test_cagr_too_large_for_a_float_is_none():
    equity = pd.Series([100.0, 900.0], index=pd.to_datetime(["2020-01-01", "2020-01-02"]))  # x9 in a day
    assert stats.return_metrics(equity)["cagr"] is None
    doubled = pd.Series([100.0, 200.0], index=pd.to_datetime(["2020-01-01", "2020-01-08"]))
    assert_allclose(stats.return_metrics(doubled)["cagr"], 2.0 ** (365.25 / 7) - 1)


def test_trade_metrics_by_hand():
    trades = pd.DataFrame({
        "pnl": [30.0, -10.0, 50.0, -20.0, 5.0],
        "pnl_pct": [0.03, -0.01, 0.05, -0.02, 0.001],
        "exit_reason": ["target", "stop", "signal", "stop", "end"],
        "bars_held": [3, 1, 5, 2, 9],
        "entry_datetime": pd.to_datetime(["2020-01-01"] * 5),
        "exit_datetime": pd.to_datetime(["2020-01-04", "2020-01-02", "2020-01-06", "2020-01-03", "2020-01-10"]),
    })
    m = stats.trade_metrics(trades, n_days=10)
    assert m["n_trades"] == 4 and m["n_open_at_end"] == 1
    assert m["win_rate"] == 0.5
    assert_allclose(m["avg_win"], 0.04)
    assert_allclose(m["avg_loss"], -0.015)
    assert_allclose(m["avg_win_loss_ratio"], 0.04 / 0.015)
    assert_allclose(m["expectancy"], 12.5)
    assert_allclose(m["profit_factor"], 80 / 30)
    pnl = np.array([30.0, -10.0, 50.0, -20.0])
    assert_allclose(m["sqn"], 2 * pnl.mean() / pnl.std(ddof=1))
    assert_allclose(m["avg_holding_days"], (3 + 1 + 5 + 2) / 4)
    assert m["exit_reasons"] == {"signal": 1, "stop": 2, "target": 1}
    assert m["trades_per_day"] == 0.4


def test_trade_metrics_with_no_trades():
    empty = pd.DataFrame(columns=["pnl", "pnl_pct", "exit_reason", "bars_held", "entry_datetime", "exit_datetime"])
    m = stats.trade_metrics(empty)
    assert m["n_trades"] == 0 and m["win_rate"] is None


def test_buy_and_hold_buys_at_the_second_open_with_costs_and_waits_for_late_starters():
    cal = pd.bdate_range("2021-01-04", periods=4)
    a = pd.DataFrame({"open": [10.0, 10.0, 11.0, 12.0], "close": [10.0, 10.5, 11.5, 12.5]}, index=cal)
    b = pd.DataFrame({"open": [20.0, 20.0], "close": [20.0, 22.0]}, index=cal[2:])
    bh = stats.buy_and_hold({"A": a, "B": b}, 1000.0, commission_bps=10, slippage_bps=0, calendar=cal)
    shares_a = math.floor(500 / (10.0 * 1.001))  # filled at A's 2nd open
    cash_a = 500 - shares_a * 10.0 * 1.001
    shares_b = math.floor(500 / (20.0 * 1.001))  # B starts later: bought at its own 2nd open
    cash_b = 500 - shares_b * 20.0 * 1.001
    expected = [1000.0, cash_a + shares_a * 10.5 + 500, cash_a + shares_a * 11.5 + 500,
                cash_a + shares_a * 12.5 + cash_b + shares_b * 22.0]
    assert_allclose(bh["equity"].to_numpy(), expected)
    assert bh["drawdown"].min() >= 0


def test_psr_formula_and_properties():
    # PSR = Phi((SR - SR*) sqrt(n-1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2)), Bailey & Lopez de Prado 2012
    sr, n, skew, kurt = 0.1, 250, -0.5, 5.0
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2)
    assert_allclose(stats.probabilistic_sharpe_ratio(sr, n, skew, kurt), sps.norm.cdf(z), rtol=1e-12)
    assert_allclose(stats.probabilistic_sharpe_ratio(0.05, n, 0.0, 3.0, benchmark_sharpe=0.05), 0.5)
    # negative skew and fat tails make the same Sharpe less convincing
    assert stats.probabilistic_sharpe_ratio(sr, n, -1.0, 8.0) < stats.probabilistic_sharpe_ratio(sr, n, 0.0, 3.0)
    # more observations, more confidence
    assert stats.probabilistic_sharpe_ratio(sr, 1000, 0, 3) > stats.probabilistic_sharpe_ratio(sr, 100, 0, 3)


def test_expected_max_sharpe_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for n_trials in (10, 100, 1000):
        simulated = rng.standard_normal((4000, n_trials)).max(axis=1).mean()
        assert_allclose(stats.expected_max_sharpe(n_trials, 1.0), simulated, rtol=0.03)
    assert stats.expected_max_sharpe(1, 1.0) == 0.0


def test_deflated_sharpe_deflates_with_more_trials():
    sr, n, skew, kurt = 0.08, 500, 0.0, 3.0
    assert_allclose(stats.deflated_sharpe_ratio(sr, n, skew, kurt, 1, 0.001),
                    stats.probabilistic_sharpe_ratio(sr, n, skew, kurt))
    dsr = [stats.deflated_sharpe_ratio(sr, n, skew, kurt, k, 0.0005) for k in (1, 10, 100, 1000)]
    assert all(a > b for a, b in zip(dsr, dsr[1:]))
    # the paper's definition: PSR against the expected maximum of the trials
    sr0 = stats.expected_max_sharpe(100, 0.0005)
    assert_allclose(dsr[2], stats.probabilistic_sharpe_ratio(sr, n, skew, kurt, benchmark_sharpe=sr0))


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(1)
    short = rng.normal(0.0005, 0.01, 250)
    long = rng.normal(0.0005, 0.01, 2500)
    lo_s, hi_s = stats.bootstrap_sharpe_interval(short, seed=3)
    lo_l, hi_l = stats.bootstrap_sharpe_interval(long, seed=3)
    point = short.mean() / short.std(ddof=1) * math.sqrt(252)
    assert lo_s < point < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s)
    assert stats.bootstrap_sharpe_interval(short, seed=3) == (lo_s, hi_s)  # seeded


def test_monthly_returns_table():
    index = pd.to_datetime(["2020-01-02", "2020-01-31", "2020-02-28", "2020-03-31"])
    table = stats.monthly_returns(pd.Series([100.0, 110.0, 99.0, 99.0], index=index))
    assert_allclose(table.loc[2020, 1], 0.10)
    assert_allclose(table.loc[2020, 2], -0.10)
    assert_allclose(table.loc[2020, 3], 0.0)


@pytest.mark.parametrize("returns", [[0.0] * 30, [0.01] * 30])
def test_degenerate_curves_do_not_crash(returns):
    m = stats.return_metrics(equity_from_returns(returns))
    assert m["sharpe"] == 0.0 and m["max_drawdown"] == 0.0
    assert stats.sharpe_uncertainty(equity_from_returns(returns), n_samples=100, seed=0)["probabilistic_sharpe"] is None
