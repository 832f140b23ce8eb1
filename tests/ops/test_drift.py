"""PSI and expected calibration error, against hand computations and their defining properties."""
import math

import numpy as np
import pytest

from ops.drift import (CalibrationTally, ModelMonitor, RollingBinCounts, bin_counts, bin_index,
                       expected_calibration_error, psi, quantile_edges)


def test_psi_matches_a_hand_computation():
    # expected shares 0.25 0.25 0.5, actual 0.5 0.25 0.25:
    # (0.5-0.25) ln(0.5/0.25) + 0 + (0.25-0.5) ln(0.25/0.5) = 0.25 ln 2 + 0.25 ln 2 = 0.5 ln 2
    assert psi([1, 1, 2], [2, 1, 1])[0] == pytest.approx(0.5 * math.log(2))


def test_psi_is_zero_for_the_same_distribution_and_floors_empty_bins():
    assert psi([10, 20, 30], [1, 2, 3])[0] == pytest.approx(0.0)
    # an empty live bin counts as a share of 1e-4: finite
    value = psi([1, 1], [2, 0])[0]
    assert value == pytest.approx((1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    assert np.isnan(psi([1, 1], [0, 0])[0])


def test_bins_at_the_training_quantiles_give_equal_shares():
    rng = np.random.default_rng(0)
    training = rng.normal(size=(10_000, 2))
    edges = quantile_edges(training, bins=10)
    counts = bin_counts(training, edges)
    assert counts.shape == (2, 10)
    np.testing.assert_allclose(counts / 10_000, 0.1, atol=1e-3)
    assert bin_index(np.array([np.nan, 100.0]), edges).tolist() == [-1, 9]


def test_a_shifted_feature_has_a_large_psi_and_a_stable_one_a_small_psi():
    rng = np.random.default_rng(1)
    training = rng.normal(size=(5_000, 2))
    edges = quantile_edges(training, bins=10)
    live = np.column_stack([rng.normal(size=500), rng.normal(loc=1.0, size=500)])
    value = psi(bin_counts(training, edges), bin_counts(live, edges))
    assert value[0] < 0.05 and value[1] > 0.25


def test_rolling_counts_equal_the_counts_of_the_last_window_rows():
    rng = np.random.default_rng(2)
    edges = quantile_edges(rng.normal(size=(1_000, 3)), bins=5)
    rows = rng.normal(size=(50, 3))
    rows[7, 1] = np.nan
    rolling = RollingBinCounts(edges, window=20)
    for row in rows:
        rolling.add(row)
    np.testing.assert_array_equal(rolling.counts, bin_counts(rows[-20:], edges))
    assert rolling.seen == 50


def test_expected_calibration_error_matches_a_hand_computation():
    # bin [0.2, 0.3): confidences 0.2, 0.2, outcomes 1, 0 -> |0.5 - 0.2| x 2/4
    # bin [0.9, 1.0]: confidences 0.9, 0.9, outcomes 1, 1 -> |1.0 - 0.9| x 2/4
    ece = expected_calibration_error([0.2, 0.2, 0.9, 0.9], [1, 0, 1, 1])
    assert ece == pytest.approx(0.3 * 0.5 + 0.1 * 0.5)
    assert expected_calibration_error([0.7] * 10, [1] * 7 + [0] * 3) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error([], []))


def test_the_tally_gives_the_calibration_error_of_everything_added():
    rng = np.random.default_rng(3)
    confidence, outcome = rng.uniform(size=300), rng.integers(0, 2, size=300)
    tally = CalibrationTally()
    for lo in range(0, 300, 50):
        tally.add(confidence[lo:lo + 50], outcome[lo:lo + 50])
    assert tally.resolved == 300
    assert tally.error() == pytest.approx(expected_calibration_error(confidence, outcome))
    assert math.isnan(CalibrationTally().error())


def test_the_monitor_scores_predictions_once_their_horizon_has_passed():
    monitor = ModelMonitor(["a"], horizon=2, window=5)
    close = np.array([[10.0, 20.0], [11.0, 19.0], [12.0, 18.0], [11.0, 21.0]])
    monitor.add_predictions(0, np.array([0, 1]), np.array([0.9, 0.8]))   # bar 2: 10 -> 12 rose, 20 -> 18 fell
    monitor.add_predictions(1, np.array([0]), np.array([0.6]))            # bar 3: 11 -> 11 did not rise
    monitor.resolve(1, close)
    assert monitor.calibration.resolved == 0
    monitor.resolve(2, close)
    assert monitor.calibration.resolved == 2
    assert monitor.calibration.error() == pytest.approx((abs(1 - 0.9) + abs(0 - 0.8)) / 2)
    monitor.resolve(3, close)
    assert monitor.calibration.error() == pytest.approx((0.1 + 0.8 + 0.6) / 3)


def test_the_monitor_drift_compares_the_live_window_with_the_training_rows():
    rng = np.random.default_rng(4)
    monitor = ModelMonitor(["stable", "shifted"], horizon=1, window=50)
    assert monitor.drift() is None
    monitor.refit(rng.normal(size=(2_000, 2)), n_symbols=4)
    for _ in range(60):
        monitor.add_bar(np.column_stack([rng.normal(size=4), rng.normal(loc=2.0, size=4)]))
    drift = monitor.drift()
    assert drift["stable"] < 0.1 < 1.0 < drift["shifted"]
    assert monitor.live.counts.sum(axis=1).tolist() == [200.0, 200.0]  # 50 bars x 4 symbols
