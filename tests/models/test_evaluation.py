"""Scores of out-of-sample calls and the baselines beside them."""
import numpy as np
from numpy.testing import assert_allclose

from models.evaluation import direction_scores, information_coefficient, past_returns, wilson_interval


def test_wilson_interval_known_values():
    assert_allclose(wilson_interval(50, 100), (0.4038, 0.5962), atol=1e-4)
    assert_allclose(wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)


def test_information_coefficient_is_the_mean_cross_sectional_rank_correlation():
    bars = np.repeat([0, 1, 2], 4)
    score = np.array([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4], float)
    realised = np.array([10, 20, 30, 40, 40, 30, 20, 10, 5, 5, 5, 5], float)   # +1, -1, undefined
    assert_allclose(information_coefficient(score, realised, bars), 0.0)
    assert_allclose(information_coefficient(score[:4], realised[:4], bars[:4]), 1.0)
    assert np.isnan(information_coefficient(score[:2], realised[:2], bars[:2]))   # too few symbols


def test_direction_scores_and_baselines():
    rng = np.random.default_rng(0)
    realised = rng.normal(0.001, 0.02, 5000)
    bars = np.repeat(np.arange(500), 10)
    perfect = direction_scores(np.where(realised > 0, 0.9, 0.1), realised, realised, bars)
    assert perfect["accuracy"] == 1.0 and perfect["auc"] == 1.0 and perfect["ic"] > 0.99
    up = direction_scores(None, None, realised, bars, called_up=np.ones(5000, bool))
    assert_allclose(up["accuracy"], np.mean(realised > 0))
    lo, hi = up["accuracy_ci95"]
    assert lo < up["accuracy"] < hi and hi - lo < 0.03


def test_past_returns_is_the_last_return_baseline():
    close = np.array([[100.0], [110.0], [np.nan], [121.0]])
    assert_allclose(past_returns(close, 1)[:, 0], [np.nan, np.log(1.1), np.nan, np.log(1.1)])
