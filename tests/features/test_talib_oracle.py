"""Test 4: features that TA-Lib also computes match TA-Lib on the sample data (each symbol on its
own bars, after the feature's warm-up)."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.features.helpers import feature_scale, full_registry

WITH_ORACLE = [f.name for f in full_registry() if f.definition.oracle is not None]
SYMBOLS_CHECKED = ("AAPL", "KO", "PYPL")  # KO misses days, PYPL starts late


def test_most_technical_features_have_an_oracle():
    technical = [f for f in full_registry() if f.group == "technical"]
    assert sum(f.definition.oracle is not None for f in technical) >= 40


@pytest.mark.parametrize("name", WITH_ORACLE)
def test_matches_talib(name, registry, panel, sample_bars):
    feature = registry[name]
    f = panel.names.index(name)
    for symbol in SYMBOLS_CHECKED:
        bars = sample_bars[symbol]
        arrays = [bars[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]
        expected = np.asarray(feature.definition.oracle(*arrays, **feature.params), dtype=np.float64)
        rows = panel.times.get_indexer(bars.index)
        ours = panel.values[rows, panel.symbols.index(symbol), f]
        # after our warm-up, wherever TA-Lib has a value (its own warm-up may be longer)
        compared = np.isfinite(expected) & (np.arange(len(expected)) >= feature.warmup)
        assert compared.sum() > len(expected) // 2
        assert_allclose(ours[compared], expected[compared], rtol=1e-8, atol=1e-9 * feature_scale(expected),
                        err_msg=f"{name} on {symbol} differs from TA-Lib")
