"""Labels: values on real closes, exact end bars, own-bar horizons over gaps, triple barrier and
path labels on hand-made paths, intraday horizons in bars."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from config.schema import LabelsConfig
from models.labels import forward_returns, horizons_in_bars, make_labels, path_labels, triple_barrier


def test_forward_returns_on_sample_closes(sample_prices):
    j = sample_prices["symbols"].index("AAPL")
    values, end = forward_returns(sample_prices["close"], (1, 3, 5))
    # data/sample/AAPL_data.csv closes: 67.8542 (2013-02-08), 68.5614 (02-11), 66.7156 (02-13), 65.7371 (02-15)
    assert_allclose(values[0, j], np.log(np.array([68.5614, 66.7156, 65.7371]) / 67.8542), rtol=1e-12)
    assert_array_equal(end[0, j], [1, 3, 5])
    T = len(sample_prices["times"])
    assert np.isnan(values[T - 1, j]).all() and (end[T - 1, j] == -1).all()     # the future is unknown
    assert np.isfinite(values[T - 6, j]).all() and np.isnan(values[T - 5, j, 2])


def test_horizon_counts_the_symbols_own_bars_over_gaps():
    close = np.array([[10.0], [11.0], [np.nan], [np.nan], [12.0], [13.0]])
    values, end = forward_returns(close, (1, 2))
    assert_array_equal(end[1, 0], [4, 5])                  # bar 1's next own bar is calendar bar 4
    assert_allclose(values[1, 0], [np.log(12 / 11), np.log(13 / 11)])
    assert np.isnan(values[2, 0]).all() and (end[2, 0] == -1).all()


def test_pypl_has_no_labels_before_its_first_bar(sample_prices):
    j = sample_prices["symbols"].index("PYPL")
    values, end = forward_returns(sample_prices["close"], (1,))
    first = np.flatnonzero(np.isfinite(sample_prices["close"][:, j]))[0]
    assert str(sample_prices["times"][first].date()) == "2015-07-06"
    assert np.isnan(values[:first, j]).all() and np.isfinite(values[first, j]).all()


def barrier_path():
    """Bar 0 is the entry (close 100); sigma is fixed by a flat warm-up of alternating returns."""
    warm = 100 * np.exp(np.tile([0.01, -0.01], 10).cumsum())
    return warm


@pytest.mark.parametrize("after, expected_value, expected_step", [
    ([(101, 104, 100), (103, 105, 102), (102, 103, 101)], "up", 1),      # high reaches +sigma*sqrt3 at step 1
    ([(99, 100, 95), (100, 101, 99), (101, 102, 100)], "down", 1),       # low reaches -sigma*sqrt3
    ([(100, 104, 95), (100, 101, 99), (100, 101, 99)], "down", 1),       # both in one bar: the stop first
    ([(100.5, 101, 100), (100.2, 100.6, 99.8), (100.4, 100.9, 100.1)], "time", 3),
])
def test_triple_barrier_on_a_hand_made_path(after, expected_value, expected_step):
    warm = barrier_path()
    entry = warm[-1]
    closes = np.r_[warm, [entry * c / 100 for c, _, _ in after]]
    highs = np.r_[warm, [entry * h / 100 for _, h, _ in after]]
    lows = np.r_[warm, [entry * l / 100 for _, _, l in after]]
    col = lambda a: a[:, None]
    values, end = triple_barrier(col(closes), col(highs), col(lows), (3,), 1.0, 1.0, vol_bars=19)
    t = len(warm) - 1
    sigma = np.std(np.diff(np.log(warm)), ddof=1)
    width = sigma * np.sqrt(3)
    assert 0.01 < width < 0.03                              # the hand-made moves straddle the barriers
    expected = {"up": width, "down": -width, "time": np.log(closes[t + 3] / closes[t])}[expected_value]
    assert_allclose(values[t, 0, 0], expected, rtol=1e-12)
    assert end[t, 0, 0] == t + expected_step


def test_a_barrier_touched_before_the_data_ends_is_known():
    warm = barrier_path()
    entry = warm[-1]
    closes = np.r_[warm, entry * 1.01]
    highs = np.r_[warm, entry * 1.04]                        # the upper barrier at the first step
    lows = np.r_[warm, entry * 1.0]
    values, end = triple_barrier(closes[:, None], highs[:, None], lows[:, None], (3,), 1.0, 1.0, vol_bars=19)
    t = len(warm) - 1
    assert end[t, 0, 0] == t + 1 and values[t, 0, 0] > 0    # the time limit (t + 3) is past the data


def test_path_labels_on_a_hand_made_path():
    close = np.array([[10.0], [9.0], [8.0], [11.0], [12.0], [10.0], [10.0]])
    low = close - 0.5
    entry, exit_, adverse, end = path_labels(close, low, bars=5)
    # from bar 0: the best round trip buys 8 (offset 2) and sells 12 (offset 4)
    assert_allclose([entry[0, 0], exit_[0, 0]], [2 / 5, 4 / 5])
    assert_allclose(adverse[0, 0], 1 - 7.5 / 10)
    assert end[0, 0] == 5
    # from bar 1 (close 9): buy 8 at offset 1, sell 12 at offset 3; lowest low 7.5
    assert_allclose([entry[1, 0], exit_[1, 0], adverse[1, 0]], [1 / 5, 3 / 5, 1 - 7.5 / 9])
    assert np.isnan(entry[2, 0]) and end[2, 0] == -1       # the path runs past the data


def test_make_labels_purges_by_the_latest_label(sample_prices, models_cfg):
    L = make_labels(sample_prices["close"], sample_prices["high"], sample_prices["low"], (1, 3, 5), 5,
                    models_cfg.labels)
    j = sample_prices["symbols"].index("AAPL")
    assert L.sample_end[0, j] == 5 and L.path_end[0, j] == 5
    assert (L.sample_end[-5:, j] == -1).all()
    triple = make_labels(sample_prices["close"], sample_prices["high"], sample_prices["low"], (1, 3, 5), 5,
                         LabelsConfig(kind="triple_barrier", barrier_vol_bars=20, profit_target=1.0, stop_loss=1.0))
    both = (triple.end >= 0) & (L.end >= 0)
    assert (triple.end[both] <= L.end[both]).all()          # a barrier can only end a label earlier
    assert np.isnan(triple.returns[:20]).all()                # the barriers' volatility is warming up


def test_intraday_horizons_in_bars():
    assert horizons_in_bars(["5min", "30min", "1h", "4h", "1d", "3d"], bar_minutes=5) == [1, 6, 12, 48, 78, 234]
    assert horizons_in_bars(["1h", "1d"], bar_minutes=60, session_minutes=390) == [1, 7]
    with pytest.raises(ValueError, match="duplicate"):
        horizons_in_bars(["5min", "4min"], bar_minutes=5)
    with pytest.raises(ValueError, match="expected a number"):
        horizons_in_bars(["soon"], bar_minutes=5)
