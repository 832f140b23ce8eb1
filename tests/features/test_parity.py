"""Test 1: the live incremental path (the engine's stream) equals the batch, feature by feature.
(The same through Backtrader, runonce on and off: tests/indicators/test_feature_hub.py.)"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

import pandas as pd

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


def test_headlines_appended_while_streaming_equal_the_batch_built_with_all_of_them(sample_bars, engine_options, news):
    """Live news: an engine started with part of the headlines, given the rest one at a time while it
    streams (each just before the first bar that closes at or after its time, some long before, some
    at a time another headline has), computes what the batch computes from all of them."""
    from features import FeatureEngine
    from features.sources import close_times

    rng = np.random.default_rng(3)
    symbols = list(sample_bars)
    times = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in sample_bars.values()))))
    extra_times = times[rng.integers(len(times) // 2, len(times), 400)] + pd.to_timedelta(
        rng.integers(0, 24 * 60, 400), unit="min")
    extra = pd.DataFrame({"timestamp": extra_times, "symbol": rng.choice(symbols, 400),
                          "headline": "x", "score": rng.uniform(-1, 1, 400)})
    # some share a time with another headline (scores drawn, not rounded: no exact ties in the ranks)
    twins = extra.iloc[::7].assign(score=rng.uniform(-1, 1, len(extra.iloc[::7])))
    every = pd.concat([news, extra, twins], ignore_index=True)
    registry = full_registry().subset([n for n, g in full_registry().groups.items() if g == "sentiment"])
    options = {**engine_options, "news": every}
    batch = FeatureEngine(registry, symbols, **options).batch(sample_bars)

    early = every["timestamp"] < times[len(times) // 2]
    live = FeatureEngine(registry, symbols, **{**options, "news": every[early]})
    later = every[~early].sample(frac=1.0, random_state=1)  # arriving in no particular order
    closes = close_times(times, live.config.daily_close_time)
    due = np.searchsorted(closes, pd.DatetimeIndex(later["timestamp"]).as_unit("ns").asi8, side="left")
    ahead = rng.integers(0, 30, len(later))  # given to the book 0-29 bars before the bar they count for
    give_at = np.maximum(due - ahead, len(times) // 2)
    fields = ("open", "high", "low", "close", "volume")
    stream, rows = live.stream(), []
    for t, stamp in enumerate(times):
        for _, headline in later[give_at == t].iterrows():
            live.news.append(headline["symbol"], pd.Timestamp(headline["timestamp"]).as_unit("ns").value,
                             headline["score"])
        present = np.array([stamp in sample_bars[s].index for s in symbols])
        prices = np.array([[sample_bars[s][f].get(stamp, np.nan) for s in symbols] for f in fields])
        rows.append(stream.update(stamp, present, *prices))
    assert len(live.news) == len(every)
    streamed = np.stack(rows)
    for f, name in enumerate(batch.names):
        values = batch.values[:, :, f]
        assert_allclose(streamed[:, :, f], values, rtol=1e-9, atol=1e-9 * feature_scale(values), equal_nan=True,
                        err_msg=f"{name}: appended headlines give a value the batch does not")
    count = batch.names.index("news_count_1")
    assert np.nansum(batch.values[len(times) // 2:, :, count]) >= 300  # the appended headlines were counted
