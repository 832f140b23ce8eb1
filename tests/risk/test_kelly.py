import math

import numpy as np
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

from risk.kelly import kelly_cap, kelly_fraction


def test_kelly_fraction_known_values():
    assert_allclose(kelly_fraction(0.6, 1.0), 0.2)           # even money, 60%: bet 20%
    assert_allclose(kelly_fraction(0.55, 2.0), 0.55 - 0.45 / 2)
    assert kelly_fraction(0.4, 1.0) == 0.0                   # no edge: no bet (floored, never short)
    assert kelly_fraction(1.0, 0.5) == 1.0


def test_kelly_fraction_without_a_usable_input_is_zero():
    assert kelly_fraction(math.nan, 2.0) == 0.0
    assert kelly_fraction(0.7, math.nan) == 0.0
    assert kelly_fraction(0.7, 0.0) == 0.0
    assert kelly_fraction(0.7, -1.0) == 0.0


def test_kelly_fraction_broadcasts_over_arrays():
    out = kelly_fraction(np.array([0.6, 0.4, np.nan]), np.array([1.0, 1.0, 1.0]))
    assert_allclose(out, [0.2, 0.0, 0.0])


def test_kelly_cap_is_a_quarter_kelly_from_gain_over_stop():
    # win 3%, stop 1.5%: payoff 2; f* = 0.6 - 0.4 / 2 = 0.4; a quarter of it: 0.1
    assert_allclose(kelly_cap(0.6, 0.03, 0.015, 0.25), 0.1)
    assert kelly_cap(0.6, 0.03, 0.0, 0.25) == 0.0            # no stop distance: risk unknown, no position
    assert kelly_cap(0.6, -0.01, 0.02, 0.25) == 0.0          # expected loss


@given(st.floats(-1, 2) | st.just(math.nan), st.floats(-10, 10) | st.just(math.nan))
def test_kelly_fraction_is_in_unit_interval(p, b):
    f = kelly_fraction(p, b)
    assert 0.0 <= f <= 1.0
