"""Test 6: the checks can fail. Deliberately leaky features, planted in a test registry, are caught:
the next bar's close and a whole-sample mean by the lookahead check, a whole-sample mean and an
EMA with a too-short declared warm-up by the warm-up check; an honest feature passes both."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.checks import lookahead_violations, warmup_violations
from features.formulas import ema, pct_change
from features.engine import FeaturePanel
from features.graph import Node, Op
from features.registry import Context, feature, registry_from_definitions
from features.registry import default_config


class NextBar(Op):
    """x_{t+1}: the future (batch only; a leak cannot stream)."""

    name = "next_bar"

    def batch(self, ctx, x):
        out = np.full(x.shape, np.nan)
        out[:-1] = x[1:]
        return out


class SampleMean(Op):
    """The mean of the whole column: every bar sees every other bar."""

    name = "sample_mean"

    def batch(self, ctx, x):
        return np.broadcast_to(np.nanmean(x, axis=0), x.shape).copy()


@feature("leak_next_close", group="price")
def next_close(b):
    """close_{t+1} / close_t - 1: tomorrow's return, known today."""
    return Node(NextBar(), (b.close,), b.close.scope) / b.close - 1


@feature("leak_sample_mean", group="price")
def sample_mean(b):
    """close / mean(close over the whole sample) - 1."""
    return b.close / Node(SampleMean(), (b.close,), b.close.scope) - 1


@feature("leak_short_warmup_ema", group="price", warmup=10)
def short_warmup(b):
    """close / EMA(close, 200) - 1, declaring 10 bars of warm-up where about 900 are needed."""
    return b.close / ema(b.close, 200) - 1


@feature("honest_ret_5", group="price")
def honest(b):
    """close_t / close_{t-5} - 1."""
    return pct_change(b.close, 5)


@pytest.fixture(scope="module")
def planted():
    definitions = [next_close, sample_mean, short_warmup, honest]
    return registry_from_definitions(definitions, Context(), default_config().seed_tolerance)


@pytest.fixture(scope="module")
def bars(sample_bars):
    return {s: sample_bars[s] for s in ("AAPL", "KO", "PYPL")}


def test_lookahead_check_catches_future_and_whole_sample_values(planted, bars):
    found = {v.feature for v in lookahead_violations(planted, bars, ["2015-03-13", "2016-07-04"])}
    assert found == {"leak_next_close", "leak_sample_mean"}


def test_warmup_check_catches_whole_sample_values_and_short_warmups(planted, bars):
    found = {v.feature for v in warmup_violations(planted, bars, ["2014-06-02"], default_config().history_tolerance)}
    assert found == {"leak_sample_mean", "leak_short_warmup_ema"}


def test_violation_names_feature_symbol_and_time(planted, bars):
    violation = lookahead_violations(planted.subset(["leak_next_close"]), bars, ["2015-03-13"])[0]
    assert violation.feature == "leak_next_close" and violation.symbol in bars
    assert violation.time <= np.datetime64("2015-03-13") and "leak_next_close" in str(violation)


def test_checks_accept_a_function(bars):
    """The ML code passes its own transformation: here, a leaky z-score of the close."""

    def whole_sample_zscore(frames):
        times = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
        data = np.full((1, len(times), len(frames)), np.nan)
        present = np.zeros((len(times), len(frames)), dtype=bool)
        for j, frame in enumerate(frames.values()):
            rows = times.get_indexer(frame.index)
            close = frame["close"].to_numpy()
            data[0, rows, j] = (close - close.mean()) / close.std()
            present[rows, j] = True
        return FeaturePanel(times, list(frames), ["zscore"], data, present)

    assert lookahead_violations(whole_sample_zscore, bars, ["2016-01-04"])
