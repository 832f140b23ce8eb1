"""Calibration recovers known probabilities; the reliability table has the report's shape."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from models.calibration import P_MIN, ProbabilityCalibrator, reliability_table


def synthetic(n, seed):
    """Scores whose true P(up) is a logistic curve: the calibrator must find that curve."""
    rng = np.random.default_rng(seed)
    score = rng.normal(0.0, 0.01, n)                     # returns-sized scores
    p_true = 1 / (1 + np.exp(-150 * score))
    return score, p_true, rng.random(n) < p_true


@pytest.mark.parametrize("method, n", [("isotonic", 20000), ("platt", 20000), ("auto", 300)])
def test_calibrated_probabilities_match_known_ones(method, n):
    score, p_true, up = synthetic(n, 1)
    calibrator = ProbabilityCalibrator(method, min_isotonic_samples=500, bin_samples=100).fit(score, up)
    assert calibrator.fitted_method == ("platt" if method == "auto" else method)
    test_score, test_p, test_up = synthetic(20000, 2)
    p = calibrator.predict(test_score)
    assert np.mean(np.abs(p - test_p)) < (0.03 if n > 1000 else 0.06)
    table = reliability_table(p, test_up, bins=10)
    filled = table["count"] >= 500
    assert (np.abs(table["observed"] - table["mean_predicted"])[filled] < 0.05).all()


def test_isotonic_steps_pool_enough_rows():
    score, _, up = synthetic(5000, 3)
    p = ProbabilityCalibrator("isotonic", bin_samples=250).fit(score, up).predict(score)
    # no step rests on fewer than 250 calls: the extremes stay away from 0 and 1
    assert 0.02 < p.min() and p.max() < 0.98
    assert (np.diff(p[np.argsort(score)]) >= 0).all()   # non-decreasing in the score


def test_one_outcome_gives_the_base_rate():
    calibrator = ProbabilityCalibrator().fit(np.linspace(-1, 1, 50), np.ones(50, bool))
    assert calibrator.fitted_method == "constant"
    assert_allclose(calibrator.predict(np.array([-5.0, 5.0])), 1 - P_MIN)


def test_reliability_table_shape_and_counts():
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0, 0.55])
    y = np.array([0, 1, 0, 1, 1, 0])
    table = reliability_table(p, y, bins=10)
    assert list(table.columns) == ["bin_low", "bin_high", "count", "mean_predicted", "observed"]
    assert len(table) == 10 and table["count"].sum() == len(p)
    assert_array_equal(table["count"].to_numpy(), [1, 2, 0, 0, 0, 1, 0, 0, 0, 2])
    assert_allclose(table.loc[1, ["mean_predicted", "observed"]].to_numpy(float), [0.15, 0.5])
    assert np.isnan(table.loc[2, "observed"])
