"""The evaluators' shortcuts give exactly the values of the plain computation: the batch's blocks of
rows and reused arrays, the two ways of ranking within groups, the stream's O(1) rolling extremes,
and the batch from arrays (the Backtrader hub's entry)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

from features import FeatureEngine
from features.engine import _BatchRun
from features.formulas import rmax, rmin, window
from features.graph import CrossSection, Grouping, Smooth, Window, _rank
from features.registry import Context, default_config, feature, registry_from_definitions
from tests.features.helpers import stream_panel


def test_batch_is_the_same_in_blocks_of_a_few_rows(monkeypatch, engine, sample_bars, panel):
    """Elementwise regions, cross-sections, windows and smoothers run a block of rows at a time;
    blocks of 7 rows change no value."""
    for owner, name in ((_BatchRun, "TILE"), (CrossSection, "_ROWS"), (Smooth, "_ROWS"), (Window, "_BLOCK")):
        monkeypatch.setattr(owner, name, 7 * len(engine.symbols))
    assert_array_equal(engine.batch(sample_bars).data, panel.data)


def test_batch_from_arrays_equals_batch_from_frames(engine, sample_bars, panel):
    counts = panel.present.sum(axis=0)
    fields = {}
    for name in ("open", "high", "low", "close", "volume"):
        fields[name] = np.full((counts.max(), len(engine.symbols)), np.nan)
        for j, symbol in enumerate(engine.symbols):
            fields[name][: counts[j], j] = sample_bars[symbol][name].to_numpy()
    assert_array_equal(engine.batch_arrays(panel.times, panel.present, fields).data, panel.data)


def _rank_each_group(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for code in np.unique(codes[codes >= 0]):
        out[:, codes == code] = _rank(x[:, codes == code])
    return out


@pytest.mark.parametrize("rows", [3, 500])  # a stream step (one sort by group and value), a batch
def test_group_rank_equals_the_rank_within_each_group(rows):
    rng = np.random.default_rng(11)
    codes = np.array([2, 0, 1, 0, -1, 2, 2, 1, 0, 2, 1, 1])
    x = rng.integers(0, 4, size=(rows, len(codes))).astype(float)  # many ties
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = np.nan  # group 0 has two columns left: ranks 0 and 1, or 0.5 when alone
    assert_array_equal(Grouping(codes).rank(x), _rank_each_group(x, codes))


def _extremes_registry():
    @feature("hi_{n}", group="price", grid={"n": (1, 3, 40)})
    def highest(b, n):
        """Highest high of n bars."""
        return rmax(b.high, n)

    @feature("lo_{n}", group="price", grid={"n": (3, 40)})
    def lowest(b, n):
        """Lowest low of n bars."""
        return rmin(b.low, n)

    @feature("since_hi_{n}", group="price", grid={"n": (4, 41)})
    def since_high(b, n):
        """Bars since the highest high of n bars."""
        return window("bars_since_max", b.high, n)

    @feature("since_lo_{n}", group="price", grid={"n": (4,)})
    def since_low(b, n):
        """Bars since the lowest low of n bars."""
        return window("bars_since_min", b.low, n)

    return registry_from_definitions([highest, lowest, since_high, since_low], Context(),
                                     default_config().seed_tolerance)


def test_stream_extremes_equal_the_batch_with_ties_gaps_and_missing_bars():
    """The stream keeps each extreme and rescans a window only when its extreme leaves it: prices
    on a coarse grid tie often, NaN breaks windows, and a symbol that skips bars keeps its own
    clock."""
    rng = np.random.default_rng(5)
    days = pd.bdate_range("2020-01-01", periods=300)
    bars = {}
    for k, symbol in enumerate(("A", "B", "C")):
        close = 50 + np.round(np.cumsum(rng.normal(0, 1, len(days))))
        high, low = close + rng.integers(0, 3, len(days)), close - rng.integers(0, 3, len(days))
        high[rng.random(len(days)) < 0.03] = np.nan
        frame = pd.DataFrame({"open": close, "high": high, "low": low, "close": close,
                              "volume": 1e6}, index=pd.DatetimeIndex(days, name="datetime"))
        bars[symbol] = frame.iloc[rng.random(len(days)) > 0.2] if k == 2 else frame
    engine = FeatureEngine(_extremes_registry(), list(bars))
    panel = engine.batch(bars)
    assert_array_equal(stream_panel(engine, bars, panel.times), panel.values)
