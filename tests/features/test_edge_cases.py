"""Synthetic edge cases: flat prices, zero volume, a symbol with no bars, a single symbol."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from features import FeatureEngine, build_registry
from tests.features.helpers import stream_panel


def _frame(days: pd.DatetimeIndex, close: np.ndarray, volume: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": volume, "openinterest": 0.0}, index=pd.DatetimeIndex(days, name="datetime"))


@pytest.fixture(scope="module")
def edge_bars():
    days = pd.bdate_range("2015-01-01", periods=400)
    rng = np.random.default_rng(3)
    walk = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    flat = np.full(len(days), 20.0)
    quiet = walk.copy()
    volume = rng.uniform(1e5, 1e6, len(days))
    zero_volume = volume.copy()
    zero_volume[100:130] = 0.0
    return {
        "WALK": _frame(days, walk, volume),
        "FLAT": pd.DataFrame({"open": flat, "high": flat, "low": flat, "close": flat, "volume": volume,
                              "openinterest": 0.0}, index=pd.DatetimeIndex(days, name="datetime")),
        "THIN": _frame(days, quiet, zero_volume),
        "LATE": _frame(days[300:], walk[300:], volume[300:]),
    }


def test_no_infinities_and_stream_equals_batch(edge_bars):
    engine = FeatureEngine(build_registry(has_sectors=False), list(edge_bars))
    panel = engine.batch(edge_bars)
    assert not np.isinf(panel.values).any()
    live = stream_panel(engine, edge_bars, panel.times)
    assert_allclose(live, panel.values, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_flat_prices_follow_talib_conventions(edge_bars):
    engine = FeatureEngine(build_registry(has_sectors=False), ["FLAT"])
    row = dict(zip(engine.names, engine.batch({"FLAT": edge_bars["FLAT"]}).values[-1, 0]))
    assert row["rsi_14"] == 50.0 and row["stochf_k_14"] == 50.0 and row["willr_14"] == 0.0
    assert row["bop"] == 0.0 and row["cci_20"] == 0.0 and row["rv_20"] == 0.0 and row["ret_1"] == 0.0


def test_a_symbol_without_bars_is_all_nan(edge_bars):
    engine = FeatureEngine(build_registry(has_sectors=False), ["WALK", "NONE"])
    panel = engine.batch({"WALK": edge_bars["WALK"]})
    assert np.isnan(panel.values[:, 1]).all() and np.isfinite(panel.values[-1, 0, :5]).all()


def test_zero_volume_gives_nan_not_inf_in_volume_ratios(edge_bars):
    engine = FeatureEngine(build_registry(has_sectors=False).subset(["amihud_5", "rvol_5"]), ["THIN"])
    values = engine.batch({"THIN": edge_bars["THIN"]}).values[:, 0]
    assert np.isnan(values[110:125, 0]).all() and not np.isinf(values).any()


def test_to_frame_has_one_row_per_bar_and_symbol(edge_bars):
    engine = FeatureEngine(build_registry(has_sectors=False).subset(["ret_1", "sma_5"]), ["WALK", "LATE"])
    frame = engine.batch({"WALK": edge_bars["WALK"], "LATE": edge_bars["LATE"]}).to_frame()
    assert len(frame) == 400 + 100 and list(frame.columns) == ["symbol", "ret_1", "sma_5"]
    assert frame.index.name == "datetime" and frame.index.is_monotonic_increasing
    single = engine.batch({"WALK": edge_bars["WALK"]}).to_frame(symbol_column=False)
    assert "symbol" not in single.columns
