"""The models' inputs read nothing after their bar."""
import numpy as np
from numpy.testing import assert_array_equal

from models.dataset import sequences, valid_rows
from models.prices import market_features
from tests.models.conftest import panel_data


def test_sequences_are_the_trailing_bars_of_the_chosen_features(sample_features):
    values = sample_features[0].astype(np.float32)
    bars, symbols, features = np.array([0, 2, 400]), np.array([3, 0, 27]), np.array([0, 5, 7])
    out = sequences(values, bars, symbols, 4, features)
    assert out.shape == (3, 4, 3)
    assert_array_equal(out[2], values[397:401, 27][:, features])       # oldest first, ends at the bar
    assert np.isnan(out[1, :1]).all() and np.isnan(out[0, :3]).all()  # before the first bar
    later = values.copy()
    later[401:] = 0.0
    assert_array_equal(sequences(later, bars, symbols, 4, features), out, strict=False)


def test_market_features_and_valid_rows_are_causal(sample_prices, sample_features, models_cfg):
    full = market_features(sample_prices["close"], 20)
    cut = market_features(sample_prices["close"][:500], 20)
    assert_array_equal(cut, full[:500])
    data = panel_data(sample_prices, sample_features[0], models_cfg)
    ok = valid_rows(data, 0.9)
    pypl = sample_prices["symbols"].index("PYPL")
    others = np.arange(28) != pypl
    assert not ok[:59].any() and ok[100, others].all()       # the 60-bar features warm up first
    assert not ok[:600, pypl].any()                          # no bar, no row
    assert_array_equal(valid_rows(data, 0.9, [100, 700]), ok[[100, 700]])
    assert data.time_of(0) == "2013-02-08"
