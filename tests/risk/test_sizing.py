import math

from hypothesis import given, strategies as st

from risk.sizing import position_shares

CAPS = dict(risk_per_trade=0.02, min_position_value=1000.0, max_position_weight=0.10)


def test_known_sizes():
    # 10% of 100k at $50 = 200 shares; a 2% stop risks 2% x 10k = 200, within 2% of equity
    assert position_shares(0.10, 100_000, 50.0, 0.02, **CAPS) == 200
    # a 25% stop: risk cap 0.02 / 0.25 = 8% of equity -> 8000 / 50 = 160 shares
    assert position_shares(0.10, 100_000, 50.0, 0.25, **CAPS) == 160
    # weight above the position cap is cut to 10%
    assert position_shares(0.50, 100_000, 50.0, 0.02, **CAPS) == 200
    # rounds down: 10k / 33 = 303.03 -> 303 shares
    assert position_shares(0.10, 100_000, 33.0, 0.02, **CAPS) == 303


def test_below_the_minimum_position_is_zero():
    assert position_shares(0.10, 5_000, 50.0, 0.02, **CAPS) == 0        # $500 position
    assert position_shares(0.10, 100_000, 20_000.0, 0.02, **CAPS) == 0  # not one whole share


def test_unmeasurable_risk_is_zero():
    for stop in (0.0, -0.01, math.nan):
        assert position_shares(0.10, 100_000, 50.0, stop, **CAPS) == 0
    assert position_shares(0.10, 100_000, math.nan, 0.02, **CAPS) == 0
    assert position_shares(-0.10, 100_000, 50.0, 0.02, **CAPS) == 0


@given(weight=st.floats(0, 1), equity=st.floats(1_000, 1e8), price=st.floats(0.01, 5_000),
       stop=st.floats(0.001, 0.5), risk=st.floats(0.001, 0.05), max_weight=st.floats(0.01, 1),
       min_value=st.floats(0, 5_000))
def test_shares_respect_every_cap(weight, equity, price, stop, risk, max_weight, min_value):
    shares = position_shares(weight, equity, price, stop, risk_per_trade=risk,
                             min_position_value=min_value, max_position_weight=max_weight)
    assert isinstance(shares, int) and shares >= 0
    allowed = min(weight, max_weight, risk / stop) * equity
    if shares:
        value = shares * price
        assert value >= min_value
        assert value * stop <= risk * equity * (1 + 1e-12)        # risk per trade
        assert value <= max_weight * equity * (1 + 1e-12)
        assert value <= weight * equity * (1 + 1e-12)
    # never more than one share below what the caps allow (whole shares, rounded down)
    if allowed / price >= 1 and math.floor(allowed / price) * price >= min_value:
        assert (shares + 1) * price > allowed * (1 - 1e-12)
