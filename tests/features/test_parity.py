"""Test 1: the live incremental path (the engine's stream) equals the batch, feature by feature.
(The same through Backtrader, runonce on and off: tests/indicators/test_feature_hub.py.)"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.features.helpers import feature_scale, full_registry

NAMES = full_registry().names


@pytest.mark.parametrize("name", NAMES)
def test_stream_equals_batch(name, panel, streamed):
    f = panel.names.index(name)
    batch, live = panel.values[:, :, f], streamed[:, :, f]
    assert_allclose(live, batch, rtol=1e-9, atol=1e-9 * feature_scale(batch), equal_nan=True,
                    err_msg=f"{name}: the bar-by-bar value differs from the batch value")


def test_stream_rejects_time_going_backwards(engine, panel):
    stream = engine.stream()
    row = np.ones(len(engine.symbols))
    stream.update(panel.times[1], row > 0, row, row, row, row, row)
    with pytest.raises(ValueError, match="not after"):
        stream.update(panel.times[0], row > 0, row, row, row, row, row)
