"""The strategy against buy-and-hold: excess return, tracking error and information ratio by hand, the
one block bootstrap behind both the Sharpe and the information ratio intervals, and metrics.json's
figures with the deflated Sharpe counting every configuration tried."""
import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analyzers import stats
from config import load_config
from engine.backtest import compute_metrics, run_backtest
from feeds.loader import load_universe


def curve(values, start="2020-01-01"):
    return pd.Series(np.asarray(values, dtype=float), index=pd.bdate_range(start, periods=len(values)))


def test_excess_return_tracking_error_and_information_ratio_by_hand():
    equity = curve([100.0, 102.0, 101.0, 104.0, 103.0])
    benchmark = curve([200.0, 202.0, 202.0, 204.0, 208.0])
    m = stats.active_return_metrics(equity, benchmark, n_samples=200, seed=0)
    assert_allclose(m["excess_return"], 103 / 100 - 208 / 200)          # 3% against 4%
    active = np.array([102 / 100 - 202 / 200, 101 / 102 - 202 / 202, 104 / 101 - 204 / 202, 103 / 104 - 208 / 204])
    assert_allclose(m["tracking_error"], active.std(ddof=1) * math.sqrt(252), rtol=1e-12)
    assert_allclose(m["information_ratio"], active.mean() / active.std(ddof=1) * math.sqrt(252), rtol=1e-12)
    assert m["information_ratio_ci_95"] == [None, None]                # 4 returns: too few for 20-day blocks


def test_the_same_curve_has_no_active_risk_and_days_are_matched():
    benchmark = curve(100 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.01, 60)))
    same = stats.active_return_metrics(benchmark, benchmark, n_samples=200, seed=0)
    assert same["excess_return"] == 0.0 and same["tracking_error"] == 0.0
    assert same["information_ratio"] is None and same["information_ratio_ci_95"] == [None, None]
    # the benchmark's extra days (before and after the strategy's) are left out
    longer = pd.concat([curve([50.0], "2019-12-31"), benchmark, curve([1.0], "2020-12-31")])
    assert stats.active_return_metrics(benchmark, longer, n_samples=200, seed=0) == same


def test_the_information_ratio_interval_is_the_sharpes_bootstrap_on_active_returns():
    rng = np.random.default_rng(7)
    bench_returns = rng.normal(0.0004, 0.01, 750)
    active = rng.normal(0.0003, 0.004, 750)
    benchmark = curve(100 * np.cumprod(np.r_[1.0, 1 + bench_returns]))
    equity = curve(100 * np.cumprod(np.r_[1.0, 1 + bench_returns + active]))
    m = stats.active_return_metrics(equity, benchmark, n_samples=500, seed=3)
    point = active.mean() / active.std(ddof=1) * math.sqrt(252)
    assert_allclose(m["information_ratio"], point, rtol=1e-6)
    lo, hi = m["information_ratio_ci_95"]
    assert lo < point < hi
    # one moving-block bootstrap: the Sharpe ratio's interval of the active returns is the same numbers
    assert_allclose([lo, hi], stats.bootstrap_sharpe_interval(active, n_samples=500, seed=3), rtol=1e-6)


def test_moving_block_bootstrap_draws_whole_blocks():
    values = np.arange(100.0)
    samples = stats.moving_block_bootstrap(values, n_samples=50, block=10, seed=1)
    assert samples.shape == (50, 100)
    steps = np.diff(samples.reshape(50, 10, 10), axis=2)
    assert (steps == 1).all()                       # consecutive values within each block
    assert stats.moving_block_bootstrap(values[:19], n_samples=5, block=10).shape == (5, 0)


def test_the_sharpe_interval_is_unchanged_by_the_shared_bootstrap():
    """The numbers the Sharpe ratio's interval had before it shared its bootstrap (pinned then)."""
    short = np.random.default_rng(1).normal(0.0005, 0.01, 250)
    assert stats.bootstrap_sharpe_interval(short, seed=3) == (-2.247778606927579, 0.22251351450900467)


@pytest.mark.slow
def test_metrics_count_every_configuration_tried_and_compare_with_buy_and_hold():
    bars = load_universe([f"data/sample/{s}_data.csv" for s in ("AAPL", "JPM", "XOM")], end="2015-12-31")
    cfg = load_config(overrides={"backtest.progress": False, "backtest.strategy": "momentum_breakout"})
    result = run_backtest(cfg, bars)
    m = result.metrics
    assert "n_trials" not in m and "deflated_sharpe" not in m     # no search and nothing tried by hand
    assert_allclose(m["excess_return"], m["total_return"] - m["buy_and_hold"]["total_return"], rtol=1e-12)
    assert m["tracking_error"] > 0 and m["information_ratio_ci_95"][0] < m["information_ratio"]
    tried = load_config(overrides={"backtest.strategy": "momentum_breakout", "report.configurations_tried": 4})
    rec, bh = result.records, result.buy_and_hold
    assert compute_metrics(tried, bars, rec, bh)["n_trials"] == 1 + 4
    searched = compute_metrics(tried, bars, rec, bh, walk_forward={"n_configurations": 6})
    assert searched["n_trials"] == 6 + 1 + 4
    assert compute_metrics(cfg, bars, rec, bh, walk_forward={"n_configurations": 6})["n_trials"] == 6 + 1
    # more configurations tried: a lower deflated Sharpe
    assert searched["deflated_sharpe"] < compute_metrics(cfg, bars, rec, bh, {"n_configurations": 6})["deflated_sharpe"]
