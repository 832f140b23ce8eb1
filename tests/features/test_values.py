"""Test 5: every feature is finite after its warm-up on the sample data; and a few golden values."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.features.helpers import full_registry

NAMES = full_registry().names


@pytest.mark.parametrize("name", NAMES)
def test_finite_after_warmup(name, panel):
    f = panel.names.index(name)
    values = panel.values[:, :, f]
    missing = panel.present & ~np.isfinite(values)
    # before the warm-up every value is NaN by construction; after it none may be
    own = np.cumsum(panel.present, axis=0) - 1
    feature = full_registry()[name]
    clock = np.arange(len(panel.times))[:, None] if feature.calendar_clock else own
    after = missing & (clock >= feature.warmup)
    assert not after.any(), f"{name}: {after.sum()} non-finite values after the warm-up"
    assert np.isnan(values[panel.present & (clock < feature.warmup)]).all()


def test_values_are_nan_where_a_symbol_has_no_bar(panel):
    assert np.isnan(panel.values[~panel.present]).all()


def test_golden_values_on_aapl(panel, sample_bars):
    """Hand-checkable numbers from the sample CSV (AAPL, 2018-02-07, the last bar)."""
    close = sample_bars["AAPL"]["close"]
    t, j = panel.times.get_loc(close.index[-1]), panel.symbols.index("AAPL")
    row = dict(zip(panel.names, panel.values[t, j]))
    assert_allclose(row["ret_1"], close.iloc[-1] / close.iloc[-2] - 1, rtol=1e-12)
    assert_allclose(row["sma_20"], close.iloc[-20:].mean(), rtol=1e-12)
    assert_allclose(row["ret_252"], close.iloc[-1] / close.iloc[-253] - 1, rtol=1e-12)
    assert row["day_of_week"] == 2.0 and row["month"] == 2.0 and row["days_to_month_end"] == 21.0
    assert 0.0 <= row["cs_rank_ret_20"] <= 1.0
