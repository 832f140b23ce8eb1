"""Regimes are ordered by volatility; GARCH forecasts are causal, equal batch and bar by bar, and
fall back to realised volatility with a warning."""
import logging

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal

from models.prices import market_features, trailing_volatility
from models.regime import RegimeClassifier
from models.volatility import GarchForecaster


def test_regime_zero_is_the_calmest(sample_prices):
    market = market_features(sample_prices["close"], 20)
    bars = np.arange(20, 800)
    regimes = RegimeClassifier(3, seed=0).fit(market, bars).predict(market, bars)
    assert set(np.unique(regimes)) <= {0, 1, 2}
    mean_vol = [market[bars, 1][regimes == k].mean() for k in np.unique(regimes)]
    assert (np.diff(mean_vol) > 0).all()
    assert RegimeClassifier(3, seed=0).fit(market, bars).predict(market, [0])[0] == -1   # warm-up bar: unknown


def test_regime_labels_are_stable_across_refits(sample_prices):
    market = market_features(sample_prices["close"], 20)
    a = RegimeClassifier(2, seed=0).fit(market, np.arange(20, 600)).predict(market, np.arange(600, 700))
    b = RegimeClassifier(2, seed=5).fit(market, np.arange(20, 600)).predict(market, np.arange(600, 700))
    assert (a == b).mean() > 0.9                            # another seed does not swap the names


def test_garch_forecast_batch_equals_bar_by_bar_and_reads_no_future(sample_prices):
    close = sample_prices["close"][:, :3]
    garch = GarchForecaster(1, 1, horizon=5, realised_bars=20, min_observations=100).fit(close, 600, 252)
    bars = np.repeat(np.arange(600, 620), 3)
    symbols = np.tile(np.arange(3), 20)
    batch = garch.predict(close, bars, symbols)
    single = np.array([garch.predict(close[: b + 1], [b], [j])[0] for b, j in zip(bars, symbols)])
    assert_array_equal(batch, single)
    future_changed = close.copy()
    future_changed[611:] *= 1.5
    assert_array_equal(garch.predict(future_changed, bars, symbols)[bars <= 610], batch[bars <= 610])
    assert (0.003 < batch).all() and (batch < 0.1).all()   # daily volatility of large US stocks


def test_garch_bar_by_bar_carries_the_recursion_on_with_the_batch_numbers(sample_prices):
    """Live, each symbol's recursion is carried on from the bar before (a forecast costs the same
    after any length of session): bit for bit the batch's forecasts, through missing bars, for other
    orders (p, q), after a refit, back to an earlier bar, and not saved with the model."""
    import pickle

    close = sample_prices["close"][:, :3].copy()
    close[640:645, 1] = np.nan                       # a symbol without bars for a while
    close[700, 2] = np.nan
    for p, q in ((1, 1), (2, 1), (1, 2)):
        garch = GarchForecaster(p, q, horizon=5, realised_bars=20, min_observations=100).fit(close, 600, 252)
        bars = np.repeat(np.arange(600, 760), 3)
        symbols = np.tile(np.arange(3), 160)
        batch = garch.predict(close, bars, symbols)
        live = np.concatenate([garch.predict(close[: b + 1], [b] * 3, [0, 1, 2]) for b in range(600, 760)])
        assert_array_equal(live, batch)
        assert len(garch._recursions) == 3
        assert_array_equal(garch.predict(close[:651], [650, 650], [0, 1]), batch[(bars == 650) & (symbols < 2)])
        assert pickle.loads(pickle.dumps(garch))._recursions == {}
        garch.fit(close, 700, 252)
        assert garch._recursions == {}
        later = garch.predict(close, np.repeat([720], 3), np.arange(3))
        for b in range(700, 721):
            live = garch.predict(close[: b + 1], [b] * 3, [0, 1, 2])
        assert_array_equal(live, later)


def test_garch_falls_back_to_realised_volatility_with_a_log_line(sample_prices, caplog):
    close = sample_prices["close"][:, :2]
    with caplog.at_level(logging.DEBUG, logger="models"):
        garch = GarchForecaster(1, 1, horizon=5, realised_bars=20, min_observations=100).fit(close, 90, 252)
    assert "realised volatility instead for 2 symbol(s)" in caplog.text
    out = garch.predict(close, np.array([90, 90]), np.array([0, 1]))
    assert_allclose(out, trailing_volatility(close, 20)[90])


def test_garch_forecasts_equal_arch_package(sample_prices):
    """The in-house recursion gives ``arch``'s own forecasts (fix + forecast) for the same parameters."""
    from arch import arch_model

    from models.volatility import garch_variance_forecasts

    r = 100.0 * np.diff(np.log(sample_prices["close"][:400, 0]))
    for p, q in ((1, 1), (2, 1), (1, 2)):
        fitted = arch_model(r[:300], mean="Zero", vol="GARCH", p=p, q=q, rescale=False).fit(disp="off")
        params = np.asarray(fitted.params, dtype=np.float64)
        expected = arch_model(r, mean="Zero", vol="GARCH", p=p, q=q, rescale=False).fix(params) \
            .forecast(horizon=5, start=250, reindex=False).variance.to_numpy()
        origins = np.arange(250, len(r))
        assert_allclose(garch_variance_forecasts(params, p, q, r, origins, 5), expected, rtol=1e-9)
        # one origin alone reads nothing after it
        assert_allclose(garch_variance_forecasts(params, p, q, r[:261], [260], 5)[0], expected[10], rtol=1e-9)


def test_trailing_volatility_at_equals_the_whole_panel(sample_prices):
    from models.prices import trailing_volatility_at

    close = sample_prices["close"][:, :6].copy()
    close[100:110, 2] = np.nan                          # a symbol without bars for a while
    full = trailing_volatility(close, 20)
    bars = np.repeat(np.arange(0, 400, 7), 6)
    symbols = np.tile(np.arange(6), len(bars) // 6)
    assert_array_equal(trailing_volatility_at(close, bars, symbols, 20), full[bars, symbols])


def test_trailing_volatility_at_one_bar_equals_the_whole_panel(sample_prices):
    from models.prices import trailing_volatility_at

    close = sample_prices["close"][:, :6].copy()
    close[395:398, 2] = np.nan                          # a gap inside the window: that symbol's own bars
    full = trailing_volatility(close, 20)
    for bar in (5, 20, 399, 400):
        symbols = np.array([0, 1, 2, 3, 4, 5, 1])
        assert_array_equal(trailing_volatility_at(close, np.full(7, bar), symbols, 20), full[bar, symbols])
