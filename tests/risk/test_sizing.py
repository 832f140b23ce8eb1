import math

from hypothesis import given, strategies as st

from config import load_config
from risk.sizing import cost_rate, entry_shares, equal_weight_sizes, position_shares, shares_for_value

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


def test_shares_for_value_leave_room_for_costs():
    assert shares_for_value(10_000.0, 50.0, 0.0) == 200
    assert shares_for_value(10_000.0, 50.0, 0.001) == 199        # 10k / (50 x 1.002) = 199.6
    assert shares_for_value(10_000.0, 0.0, 0.001) == shares_for_value(-5.0, 50.0, 0.001) == 0
    assert shares_for_value(10_000.0, math.nan, 0.001) == 0
    costs = load_config().costs
    assert cost_rate(costs) == (costs.commission_bps + costs.slippage_bps) / 1e4


def test_entry_shares_within_the_caps_and_the_cash():
    risk = load_config().risk                  # 10% a position, 2% risk a trade, $1000 at least
    common = dict(equity=100_000.0, price=50.0, stop_distance_pct=0.02, costs=0.0, risk=risk)
    assert entry_shares(0.10, cash=1e9, **common) == 200
    assert entry_shares(0.10, cash=5_000.0, **common) == 100     # the cash left buys 100
    assert entry_shares(0.10, cash=900.0, **common) == 0         # $900 is below the minimum position
    assert entry_shares(0.0, cash=1e9, **common) == 0


@given(prices=st.lists(st.floats(0.5, 5_000), max_size=10), equity=st.floats(1_000, 1e7),
       cash=st.floats(-1_000, 1e7), weight=st.floats(0.01, 0.5), min_value=st.floats(0, 5_000),
       costs=st.floats(0, 0.01))
def test_equal_weight_sizes_spend_at_most_the_cash(prices, equity, cash, weight, min_value, costs):
    named = [(f"S{k}", price) for k, price in enumerate(prices)]
    sizes = equal_weight_sizes(named, equity=equity, cash=cash, weight=weight, min_position_value=min_value,
                               costs=costs)
    price = dict(named)
    spent = sum(size * price[name] for name, size in sizes)
    assert all(size > 0 for _, size in sizes) and [n for n, _ in sizes] == [n for n, _ in named if n in dict(sizes)]
    assert spent <= max(cash, 0.0) * (1 + 1e-12)
    assert all(size * price[name] <= equity * weight * (1 + 1e-12) for name, size in sizes)
