"""The models' inputs read nothing after their bar."""
import numpy as np
from numpy.testing import assert_array_equal

from models.dataset import GrowingPanel, PanelData, panel_data_from_bars, sequences, valid_rows
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


def test_a_growing_panel_is_the_whole_history_built_at_once(sample_prices, sample_features, models_cfg):
    """Bar by bar (live, replays) the panel grows in place; after each bar its view, and its labels
    when asked, are those of the bars so far built at once, and so is the market index the regime
    model reads (bit for bit: the same numbers reach the models in a backtest and live)."""
    values, names = sample_features
    close, high, low = (sample_prices[f] for f in ("close", "high", "low"))
    symbols = sample_prices["symbols"]
    panel = GrowingPanel(symbols, names, models_cfg, capacity=64)     # grows several times
    for t in range(700):
        data = panel.append(sample_prices["times"][t].to_datetime64(), values[t], close[t], high[t], low[t])
        if t in (0, 63, 64, 699):
            whole = PanelData.build(values[: t + 1], close[: t + 1], high[: t + 1], low[: t + 1], models_cfg,
                                    times=sample_prices["times"][: t + 1])
            assert data.labels is None and data.n_bars == t + 1 and data.symbols == tuple(symbols)
            assert_array_equal(data.values, whole.values)
            assert_array_equal(data.close, whole.close)
            assert data.times.equals(whole.times)
            assert_array_equal(data.market_features(20), market_features(whole.close, 20))
    labelled = panel.labelled()
    whole = PanelData.build(values[:700], close[:700], high[:700], low[:700], models_cfg)
    assert_array_equal(labelled.labels.returns, whole.labels.returns)
    assert_array_equal(labelled.labels.sample_end, whole.labels.sample_end)


def test_panel_data_from_bars_puts_each_symbols_bars_on_the_calendar(models_cfg):
    """The one builder of bars -> features -> PanelData: prices as each frame reindexed on the panel's
    calendar (a symbol that starts late, one that misses days)."""
    from features import FeatureEngine, build_registry
    from feeds.loader import load_universe
    from tests.models.conftest import SAMPLE

    bars = load_universe([SAMPLE / f"{s}_data.csv" for s in ("AAPL", "KO", "PYPL")])
    bars["KO"] = bars["KO"].drop(bars["KO"].index[[10, 11, 500]])
    engine = FeatureEngine(build_registry(has_sectors=False).subset(["ret_1", "sma_5"]), list(bars))
    panel, data = panel_data_from_bars(engine, bars, models_cfg)
    assert data.times.equals(panel.times) and data.symbols == tuple(bars) and data.feature_names == tuple(panel.names)
    assert_array_equal(data.values, panel.values.astype(np.float32))
    close, high, low = (np.column_stack([bars[s][f].reindex(panel.times).to_numpy(float) for s in bars])
                        for f in ("close", "high", "low"))
    assert_array_equal(data.close, close)
    assert_array_equal(data.labels.returns, PanelData.build(panel.values, close, high, low, models_cfg).labels.returns)
