"""The cross-sectional evaluation: IC, rank IC, Newey-West t and quantile returns against hand
computations and against alphalens-reloaded; causal baselines; a planted leak is caught and a random
score is not mistaken for skill; the ``walk_forward`` section and the report carry it."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from common.jsonable import to_jsonable
from models.evaluation import daily_correlations
from models.factor_evaluation import (cross_section, momentum_12_1, newey_west_lags, newey_west_t, quantile_of,
                                      quantile_returns, reversal_1m)
from models.labels import forward_returns
from models.predictor import Predictions


def test_daily_ic_and_rank_ic_on_hand_cases():
    bars = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    score = np.array([1, 2, 3, 4, 1, 2, 3, 1, 2, 1, 2, 3], float)
    realised = np.array([1, 2, 3, 10, 3, 1, 2, 5, 6, 7, 7, 7], float)
    daily = daily_correlations(score, realised, bars)
    assert list(daily.index) == [0, 1]          # bar 2: two symbols; bar 3: no spread in the returns
    assert_allclose(daily.loc[0, "ic"], np.corrcoef([1, 2, 3, 4], [1, 2, 3, 10])[0, 1])
    assert_allclose(daily.loc[0, "rank_ic"], 1.0)
    # bar 1: ranks (1, 2, 3) against (3, 1, 2): 1 - 6 * (4 + 1 + 1) / (3 * 8) = -0.5
    assert_allclose(daily.loc[1, ["ic", "rank_ic"]], [-0.5, -0.5])


def test_newey_west_t_is_the_mean_over_its_bartlett_hac_standard_error():
    x = np.array([0.3, -0.1, 0.5, 0.2, 0.0, 0.4, -0.2, 0.6, 0.1, 0.25])
    n, e = len(x), x - x.mean()
    gamma = [np.sum(e[lag:] * e[:n - lag]) / n for lag in range(3)]
    for lags in (0, 1, 2):
        long_run = gamma[0] + 2 * sum((1 - lag / (lags + 1)) * gamma[lag] for lag in range(1, lags + 1))
        assert_allclose(newey_west_t(x, lags), x.mean() / np.sqrt(long_run / n), rtol=1e-10)
    assert_allclose(newey_west_t(x, 0), x.mean() / (x.std() / np.sqrt(n)))    # no lags: the plain t (ddof 0)
    assert np.isnan(newey_west_t([0.1, 0.1, 0.1], 1)) and np.isnan(newey_west_t([0.2, np.nan], 0))


def test_newey_west_lags_cover_the_overlap_of_the_horizon():
    assert newey_west_lags(1000, 1) == 6 and newey_west_lags(1000, 10) == 9 and newey_west_lags(21, 5) == 4


def test_quantile_returns_spread_and_turnover_by_hand():
    # two bars of ten symbols, five quantiles of two; the top moves from {8, 9} to {7, 8}
    bars = np.repeat([0, 1], 10)
    symbols = np.tile(np.arange(10), 2)
    score = np.r_[np.arange(10), [0, 1, 2, 3, 4, 5, 6, 9, 8, 7]].astype(float)
    realised = np.r_[np.arange(10), 10 * np.arange(10)] / 100
    assert list(quantile_of(score, bars, 5)) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] + [1, 1, 2, 2, 3, 3, 4, 5, 5, 4]
    got = quantile_returns(score, realised, bars, symbols, horizon=1, quantiles=5)
    bar0 = np.array([0.5, 2.5, 4.5, 6.5, 8.5]) / 100
    bar1 = np.array([5, 25, 45, 75, 75]) / 100      # quantile 4: symbols 6 and 9; quantile 5: 7 and 8
    assert_allclose(got["quantile_mean_returns"], (bar0 + bar1) / 2)
    assert_allclose(got["spread_mean"], ((8.5 - 0.5) / 100 + (75 - 5) / 100) / 2)
    assert got["spread_bars"] == 2
    assert_allclose(got["top_turnover"], 0.5)       # bar 1: 7 is new, 8 stayed; bar 0 has no bar before


def test_quantiles_ties_share_a_bin_and_few_symbols_leave_bins_empty():
    assert list(quantile_of(np.array([1.0, 2.0, 3.0]), np.zeros(3), 5)) == [1, 3, 5]
    assert list(quantile_of(np.array([1.0, 1.0, 1.0, 1.0]), np.zeros(4), 5)) == [3, 3, 3, 3]


def test_agrees_with_alphalens_on_rank_ic_quantile_returns_and_turnover():
    """alphalens-reloaded as the oracle: its factor_data from our score with our forward returns as
    the return column. Its bins are ``pd.qcut`` per date, ours the same edges from ranks (23 symbols
    a bar, not a multiple of 5); its ``demeaned`` flag is off (ours are raw means); its turnover
    shifts by dates, ours by bars (the same on a dense grid)."""
    from alphalens.performance import factor_information_coefficient, mean_return_by_quantile, quantile_turnover
    from alphalens.utils import get_clean_factor

    rng = np.random.default_rng(1)
    T, N, h, Q = 60, 23, 5, 5
    bars, symbols = np.repeat(np.arange(T), N), np.tile(np.arange(N), T)
    score = rng.normal(size=T * N)
    realised = 0.003 * score + rng.normal(0, 0.01, T * N)
    dates = pd.bdate_range("2020-01-01", periods=T)
    index = pd.MultiIndex.from_arrays([dates[bars], np.array([f"S{j}" for j in range(N)])[symbols]],
                                      names=["date", "asset"])
    factor_data = get_clean_factor(pd.Series(score, index=index), pd.DataFrame({f"{h}D": realised}, index=index),
                                   quantiles=Q, max_loss=0)
    assert_allclose(factor_information_coefficient(factor_data)[f"{h}D"].to_numpy(),
                    daily_correlations(score, realised, bars)["rank_ic"].to_numpy(), atol=1e-12)
    assert (factor_data["factor_quantile"].to_numpy() == quantile_of(score, bars, Q)).all()
    ours = quantile_returns(score, realised, bars, symbols, h, Q)
    theirs, _ = mean_return_by_quantile(factor_data, demeaned=False)
    assert_allclose(ours["quantile_mean_returns"], theirs[f"{h}D"].to_numpy(), rtol=1e-12)
    assert_allclose(ours["top_turnover"], quantile_turnover(factor_data["factor_quantile"], Q, period=h).mean())


def prices(T=320, N=4, seed=0):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    close[:40, 1] = np.nan                          # a late listing
    close[100:103, 2] = np.nan                      # a gap: own bars skip it
    return close


def test_momentum_and_reversal_are_the_formulas_on_own_bars():
    close = np.exp(np.arange(300, dtype=float))[:, None] * np.ones((1, 2))   # log close = bar index
    close[5, 1] = np.nan
    mom, rev = momentum_12_1(close), reversal_1m(close)
    assert np.isnan(mom[:252, 0]).all() and np.isnan(mom[:253, 1]).all()    # symbol 1: one own bar fewer
    assert_allclose(mom[252:, 0], 252 - 21)
    assert_allclose(mom[253:258, 1], 253 - 21)       # 252 own bars back from bar 253..257 skip the missing bar 5
    assert_allclose(mom[258:, 1], 252 - 21)
    assert np.isnan(rev[:21, 0]).all()
    assert_allclose(rev[21:, 0], -21.0)
    assert_allclose(rev[22:26, 1], -22.0)             # 21 own bars back from bar 22..25 skips the missing bar 5
    assert_allclose(rev[27:, 1], -21.0)


@pytest.mark.parametrize("make", [momentum_12_1, reversal_1m])
def test_baselines_are_causal(make):
    close = prices()
    before = make(close)
    for t in (60, 200, 300):
        changed = close.copy()
        changed[t + 1:] *= np.exp(np.random.default_rng(t).normal(0, 0.1, changed[t + 1:].shape))
        assert_allclose(make(changed)[: t + 1], before[: t + 1])


def predictions_of(score: np.ndarray, rows) -> Predictions:
    """Predictions whose expected return at every horizon is ``score`` (n, H); the other fields unused."""
    bars, symbols = rows
    n, H = score.shape
    nan = np.full((n, H), np.nan)
    return Predictions(bars=bars, symbols=symbols, expected_return=score, prob_up=nan, lower=nan, upper=nan,
                       volatility=np.ones(n), regime=np.zeros(n, np.int64), entry_timing=np.zeros(n),
                       exit_timing=np.zeros(n), stop_distance=np.zeros(n), confidence=np.zeros(n),
                       base=np.zeros((n, 1, H)))


@pytest.fixture(scope="module")
def universe():
    """Forty random walks over 600 bars; predicted rows from bar 260 on."""
    close = prices(T=600, N=40, seed=3)
    bars, symbols = np.nonzero(np.isfinite(close[260:]))
    return close, (bars + 260, symbols)


def test_a_planted_leak_scores_a_rank_ic_near_one_and_a_random_score_no_skill(universe):
    close, rows = universe
    horizons = (1, 5)
    future, _ = forward_returns(close, horizons)
    future = future[rows[0], rows[1]]                     # the realised return: the future, read at t
    leak = future + np.random.default_rng(6).normal(0, 0.1 * np.nanstd(future), future.shape)
    section, folds = cross_section(predictions_of(leak, rows), close, horizons, 5)
    for h in ("1", "5"):
        model = section["horizons"][h]["model"]
        assert model["rank_ic_mean"] > 0.95 and model["ic_mean"] > 0.95 and model["rank_ic_t"] > 50
        assert model["rank_ic_positive"] == 1.0 and model["spread_t"] > 10
        assert model["quantile_mean_returns"] == sorted(model["quantile_mean_returns"])
    noise = np.random.default_rng(7).normal(size=leak.shape)
    section, _ = cross_section(predictions_of(noise, rows), close, horizons, 5)
    for h in ("1", "5"):
        for name in ("model", "momentum_12_1", "reversal_1m"):
            scores = section["horizons"][h][name]
            assert abs(scores["rank_ic_t"]) < 3 and abs(scores["spread_t"]) < 3, (h, name)
            assert abs(scores["rank_ic_mean"]) < 0.05 and 0.3 < scores["rank_ic_positive"] < 0.7
        assert section["horizons"][h]["model"]["rows"] == section["horizons"][h]["momentum_12_1"]["rows"]
    assert section["horizons"]["5"]["model"]["newey_west_lags"] >= 4


def test_the_section_layout_and_daily_series(universe):
    close, rows = universe
    score = np.random.default_rng(8).normal(size=(len(rows[0]), 2))
    section, folds = cross_section(predictions_of(score, rows), close, (1, 5), 5, quantiles=4,
                                   time_of=lambda b: f"bar{b}")
    assert section["quantiles"] == 4 and section["min_symbols"] == 3
    assert set(section["horizons"]) == {"1", "5"} and folds == []
    block = section["horizons"]["5"]
    assert set(block) == {"model", "momentum_12_1", "reversal_1m"}
    assert {"ic_mean", "ic_std", "ic_ir", "ic_t", "rank_ic_mean", "rank_ic_std", "rank_ic_ir", "rank_ic_t",
            "rank_ic_positive", "quantile_mean_returns", "spread_mean", "spread_t", "top_turnover", "rows",
            "bars", "newey_west_lags"} <= set(block["model"])
    assert len(block["model"]["quantile_mean_returns"]) == 4
    daily = section["daily_rank_ic"]
    assert daily["horizon"] == 5 and daily["dates"][0] == "bar260"
    assert len(daily["dates"]) == len(daily["model"]) == len(daily["reversal_1m"]) == block["model"]["bars"]
    assert_allclose(np.mean(daily["model"]), block["model"]["rank_ic_mean"])
    json.dumps(to_jsonable(section), allow_nan=False)


def test_daily_ic_of_500_symbols_over_1000_bars_takes_seconds():
    """Not a timing assertion: a size check that the vectorised path runs at the size of a real
    universe within a test's budget."""
    rng = np.random.default_rng(0)
    T, N = 1000, 500
    bars, symbols = np.repeat(np.arange(T), N), np.tile(np.arange(N), T)
    daily = daily_correlations(rng.normal(size=T * N), rng.normal(size=T * N), bars)
    assert len(daily) == T
    got = quantile_returns(rng.normal(size=T * N), rng.normal(size=T * N), bars, symbols, 5, 5)
    assert got["spread_bars"] == T


def test_walk_forward_section_carries_the_cross_section_and_the_report_draws_it(sample_prices, sample_features,
                                                                                 tmp_path):
    """The small walk-forward of the model tests, through the backtest's section and the report."""
    from config import load_config
    from engine.backtest import walk_forward_section
    from models.walkforward import WalkForward
    from reports import model_report
    from tests.models.conftest import panel_data, small_models_cfg

    models_cfg = small_models_cfg()
    data = dataclasses.replace(panel_data(sample_prices, sample_features[0], models_cfg, symbols=slice(0, 6),
                                          bars=slice(0, 420)), feature_names=tuple(sample_features[1]))
    result = WalkForward(models_cfg, seed=11).run(data)

    class Trained:                       # what walk_forward_section asks of a strategy
        def walk_forward(self):
            return result, data

    cfg = load_config(overrides={"models.threads": 1}).model_copy(update={"models": models_cfg})
    wf = walk_forward_section(cfg, Trained())
    json.dumps(wf, allow_nan=False)
    cs = wf["cross_section"]
    assert set(cs["horizons"]) == {str(h) for h in models_cfg.horizons} and cs["quantiles"] == cfg.report.quantiles
    assert cs["daily_rank_ic"]["horizon"] == wf["horizon"] == models_cfg.decision_horizon
    block = cs["horizons"][str(wf["horizon"])]
    assert block["model"]["rows"] == block["momentum_12_1"]["rows"] > 900      # the same rows (bar, symbol)
    assert block["momentum_12_1"]["bars"] > 150
    # bars where the small ensemble predicts one value for every symbol have no rank IC
    assert 0 < block["model"]["bars"] <= block["momentum_12_1"]["bars"]
    assert all({"rank_ic", "rank_ic_t", "accuracy", "ic"} <= set(row) for row in wf["folds"])
    assert any(row["rank_ic"] is not None for row in wf["folds"])
    assert set(wf["baselines"]) == {"always_up", "last_return"} and set(wf["by_horizon"]) == set(cs["horizons"])
    wf.update(models=["lightgbm"], retrains=len(wf["folds"]))
    titles = dict(model_report.sections(wf))
    page = titles["Cross-sectional evaluation"]
    assert "not evidence of skill" in page and "momentum 12-1" in page and page.count("<table>") == len(cs["horizons"])
    images = model_report.plots(wf, tmp_path)
    assert {"Quantile mean forward returns", "Cumulative daily rank IC"} <= set(images)
    assert (tmp_path / "quantile_returns.png").stat().st_size > 0


def test_momentum_row_at_a_bar_equals_the_grid_and_reads_nothing_later(sample_prices):
    from models.factor_evaluation import momentum_12_1, momentum_12_1_at

    close = sample_prices["close"]
    grid = momentum_12_1(close)
    for t in (100, 251, 252, 253, 700, len(close) - 1):
        assert np.array_equal(momentum_12_1_at(close, t), grid[t], equal_nan=True)
        later = close.copy()
        later[t + 1:] *= 1.5
        assert np.array_equal(momentum_12_1_at(later, t), grid[t], equal_nan=True)
