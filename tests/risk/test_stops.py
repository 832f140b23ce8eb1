import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

from risk.stops import initial_stop_pct, stop_should_move, trailing_stop_fits


def test_initial_stop_known_values(risk_config):
    ref = risk_config.stop_reference_volatility
    assert_allclose(initial_stop_pct(0.02, ref, None, risk_config), 0.02)
    assert_allclose(initial_stop_pct(0.001, ref, "normal", risk_config), 0.005)     # into [0.5%, 5%]
    assert_allclose(initial_stop_pct(0.09, ref, None, risk_config), 0.05)
    assert_allclose(initial_stop_pct(math.nan, ref, None, risk_config), 0.0275)     # no model stop: mid-range
    assert_allclose(initial_stop_pct(0.01, 4 * ref, None, risk_config), 0.02)       # 4x volatility: sqrt(4) = 2x
    assert_allclose(initial_stop_pct(0.01, ref / 4, None, risk_config), 0.005)
    assert_allclose(initial_stop_pct(0.01, math.nan, None, risk_config), 0.01)      # no volatility: unscaled
    assert_allclose(initial_stop_pct(0.02, ref, "stressed", risk_config), 0.026)
    assert_allclose(initial_stop_pct(0.02, ref, "calm", risk_config), 0.016)
    assert initial_stop_pct(0.04, 4 * ref, "stressed", risk_config) == 0.05         # clipped


def test_initial_stop_on_real_volatility_lies_in_range(risk_config, sample_returns):
    vol = sample_returns.rolling(risk_config.stop_volatility_bars).std().iloc[-1]
    stops = [initial_stop_pct(0.015, v, None, risk_config) for v in vol]
    assert min(stops) >= 0.005 and max(stops) <= 0.05
    assert len(set(np.round(stops, 6))) > 10  # the volatility adjustment tells the names apart


def test_unknown_regime_is_an_error(risk_config):
    with pytest.raises(ValueError, match="unknown regime 'bull'"):
        initial_stop_pct(0.5, 0.01, "bull", risk_config)


@given(st.floats(-1, 1) | st.just(math.nan), st.floats(0, 1) | st.just(math.nan),
       st.sampled_from([None, "calm", "normal", "stressed"]))
def test_initial_stop_always_in_range(risk_config, model_stop, volatility, regime):
    stop = initial_stop_pct(model_stop, volatility, regime, risk_config)
    assert risk_config.stop_min <= stop <= risk_config.stop_max


def test_trailing_stop_fits_needs_momentum_and_adx():
    assert trailing_stop_fits(0.02, 30.0, adx_min=25.0)
    assert not trailing_stop_fits(0.02, 25.0, adx_min=25.0)
    assert not trailing_stop_fits(-0.01, 40.0, adx_min=25.0)
    assert not trailing_stop_fits(math.nan, 40.0, adx_min=25.0)


def test_stop_moves_only_when_tightened_by_more_than_the_threshold():
    assert stop_should_move(97.0, 97.6, 100.0, 0.005)        # 0.6 > 0.5% of 100
    assert not stop_should_move(97.0, 97.4, 100.0, 0.005)
    assert not stop_should_move(97.0, 90.0, 100.0, 0.005)    # never loosens
