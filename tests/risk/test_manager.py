import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose

from risk.manager import Candidate, PortfolioView, RiskManager, historical_var

DATE = "2017-06-30"
EQUITY = 100_000.0


@pytest.fixture(scope="module")
def returns(sample_returns):
    return sample_returns.loc[:DATE]


@pytest.fixture(scope="module")
def dollar_volume(sample_prices):
    return {s: float((f["close"] * f["volume"]).loc[:DATE].tail(20).mean()) for s, f in sample_prices.items()}


@pytest.fixture(scope="module")
def assess(risk_config, returns, sectors, dollar_volume):
    def run(symbol, weight, holdings, *, config=risk_config, regime=None, adv=None, frame=None):
        candidate = Candidate(symbol, weight, sectors[symbol], dollar_volume[symbol] if adv is None else adv)
        view = PortfolioView(EQUITY, holdings, {s: sectors[s] for s in holdings},
                             returns if frame is None else frame, regime)
        return RiskManager(config).assess(candidate, view)
    return run


def test_historical_var_known_series():
    series = np.linspace(-0.1, 0.098, 100)               # steps of 0.002
    assert_allclose(historical_var(series, 0.95), 0.092)  # 5th smallest: -0.1 + 4 x 0.002
    assert historical_var(np.abs(series) + 0.01, 0.95) == 0.0  # never a loss: VaR 0
    assert historical_var(np.append(series, np.nan), 0.95) == historical_var(series, 0.95)
    assert math.isnan(historical_var([np.nan], 0.95))


def test_first_position_is_approved_with_known_components(assess, risk_config, returns, dollar_volume):
    result = assess("XOM", 0.10, {})
    var = -np.quantile(0.10 * returns["XOM"].tail(250), 0.05, method="lower")
    expected = {"var": var / 0.02, "correlation": 0.0, "sector": 0.10 / 0.30,
                "liquidity": 0.10 * EQUITY / (0.01 * dollar_volume["XOM"]), "regime": 0.3}
    assert result.components == pytest.approx(expected)
    w = risk_config.score_weights
    assert result.score == pytest.approx(0.3 * expected["var"] + 0.15 * expected["sector"]
                                         + 0.10 * expected["liquidity"] + 0.2 * 0.3)
    assert result.approved and result.size_multiplier == 1.0 and result.delay_bars == 0
    assert not result.use_limit_order and result.reasons == []
    assert w.var + w.correlation + w.sector + w.liquidity + w.regime == pytest.approx(1.0)


def test_correlation_above_the_cap_rejects(assess):
    result = assess("JPM", 0.05, {"BAC": 0.05})           # 60-bar correlation 0.94
    assert not result.approved and result.components["correlation"] == 1.0
    assert any("correlation 0.94" in r for r in result.reasons)


def test_high_correlation_delays_the_entry(assess, returns):
    result = assess("MSFT", 0.05, {"AAPL": 0.05})         # 60-bar correlation 0.68
    assert result.approved and result.delay_bars == 1
    correlation = returns["MSFT"].tail(60).corr(returns["AAPL"].tail(60))
    assert result.components["correlation"] == pytest.approx(correlation / 0.7)


def test_sector_cap_rejects(assess):
    at_cap = assess("NVDA", 0.10, {"INTC": 0.10, "GOOGL": 0.10, "XOM": 0.10})   # IT exactly 30%
    assert at_cap.approved and at_cap.components["sector"] == pytest.approx(1.0)
    result = assess("NVDA", 0.10, {"INTC": 0.10, "GOOGL": 0.10, "AAPL": 0.05})
    assert not result.approved and result.components["sector"] == 1.0
    assert "sector Information Technology would reach 35.0%, above 30%" in result.reasons


def test_adding_to_a_holding_counts_its_weight_once(assess):
    result = assess("JNJ", 0.05, {"JNJ": 0.05, "PFE": 0.10})
    assert result.components["sector"] == pytest.approx(0.20 / 0.30)
    assert result.approved                                 # its correlation with itself does not count


def test_liquidity_limit_order_and_rejection(assess):
    order = 0.05 * EQUITY
    limit_order = assess("XOM", 0.05, {}, adv=order / 0.01 / 0.8)   # uses 80% of the allowance
    assert limit_order.approved and limit_order.use_limit_order
    assert limit_order.components["liquidity"] == pytest.approx(0.8)
    for adv in (order / 0.01 / 1.5, 0.0, math.nan):
        assert not assess("XOM", 0.05, {}, adv=adv).approved


def test_high_var_impact_halves_the_size(assess, risk_config, returns):
    holdings = {s: 0.04 for s in ["AAPL", "JPM", "XOM", "PFE", "WMT", "CAT", "DIS", "NEE", "T", "AMT"]}
    rows = returns[["KO", *holdings]].tail(250).dropna()
    portfolio = rows[list(holdings)].to_numpy() @ np.full(len(holdings), 0.04)
    without = historical_var(portfolio, 0.95)
    limit = without + 0.0008                                # a tight budget left
    config = risk_config.model_copy(update={"var_limit": limit})
    result = assess("KO", 0.10, holdings, config=config)
    assert historical_var(portfolio + 0.10 * rows["KO"].to_numpy(), 0.95) - without > 0.5 * 0.0008
    assert result.size_multiplier == 0.5
    halved = historical_var(portfolio + 0.05 * rows["KO"].to_numpy(), 0.95)
    assert result.components["var"] == pytest.approx(min(halved / limit, 1.0))
    assert any("high VaR impact" in r for r in result.reasons)


def test_var_above_the_limit_rejects(assess, risk_config):
    # 10% of XOM has a VaR of about 0.16%, 5% about 0.08%
    halved = assess("XOM", 0.10, {}, config=risk_config.model_copy(update={"var_limit": 0.001}))
    assert halved.approved and halved.size_multiplier == 0.5
    result = assess("XOM", 0.10, {}, config=risk_config.model_copy(update={"var_limit": 0.0005}))
    assert not result.approved and any("above the limit" in r for r in result.reasons)


def test_regime_and_score_threshold(assess, risk_config):
    calm, stressed = assess("XOM", 0.05, {}, regime="calm"), assess("XOM", 0.05, {}, regime="stressed")
    assert calm.components["regime"] == 0.0 and stressed.components["regime"] == 1.0
    assert stressed.score - calm.score == pytest.approx(risk_config.score_weights.regime)
    strict = assess("XOM", 0.05, {}, config=risk_config.model_copy(update={"approve_below": 0.05}))
    assert not strict.approved and any("risk score" in r for r in strict.reasons)
    with pytest.raises(ValueError, match="unknown regime"):
        assess("XOM", 0.05, {}, regime="bull")


def test_unknown_history_scores_worst_but_does_not_block(assess, returns):
    short = returns.tail(10)
    result = assess("XOM", 0.05, {"JPM": 0.05}, frame=short)
    assert result.components["var"] == 1.0 and result.components["correlation"] == 1.0
    assert any("VaR unknown" in r for r in result.reasons) and any("correlation unknown" in r for r in result.reasons)


def test_gates_block_entries_and_persist(risk_config):
    manager = RiskManager(risk_config)
    assert manager.update_equity("2024-01-02 10:00", 100_000).allowed
    daily = manager.update_equity("2024-01-02 11:00", 94_000)
    assert not daily.allowed and not daily.flatten and "daily loss" in daily.reason
    assert manager.update_equity("2024-01-03 10:00", 95_000).allowed
    killed = manager.update_equity("2024-01-04 10:00", 84_000)
    assert not killed.allowed and killed.flatten and "kill switch" in killed.reason
    restored = RiskManager(risk_config)
    restored.load_state(json.loads(json.dumps(manager.to_dict())))
    assert not restored.update_equity("2024-01-05 10:00", 120_000).allowed  # latched across restarts
    restored.kill_switch.reset(120_000)
    assert restored.update_equity("2024-01-05 11:00", 120_000).allowed


@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_approved_entries_respect_the_hard_caps(assess, risk_config, returns, sectors, data):
    symbols = sorted(sectors)
    symbols = [s for s in symbols if s in returns.columns]
    held = data.draw(st.lists(st.sampled_from(symbols), unique=True, max_size=12))
    holdings = {s: data.draw(st.floats(0.01, 0.10)) for s in held}
    candidate = data.draw(st.sampled_from(symbols))
    weight = data.draw(st.floats(0.001, 0.15))
    result = assess(candidate, weight, holdings, regime=data.draw(st.sampled_from(["calm", "normal", "stressed"])))
    assert all(0.0 <= v <= 1.0 for v in result.components.values())
    assert 0.0 <= result.score <= 1.0 and result.size_multiplier in (0.5, 1.0)
    if result.approved:
        size = weight * result.size_multiplier
        others = {s: w for s, w in holdings.items() if s != candidate}
        exposure = sum(w for s, w in others.items() if sectors[s] == sectors[candidate]) + holdings.get(candidate, 0) + size
        assert exposure <= risk_config.max_sector_weight + 1e-9
        if others:
            window = returns[[candidate, *others]].tail(risk_config.correlation_bars)
            assert window.corr()[candidate].drop(candidate).max() <= risk_config.max_correlation
        assert result.score < risk_config.approve_below
