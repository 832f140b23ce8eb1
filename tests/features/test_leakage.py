"""Test 2: no lookahead (cut or garble the bars after t: no value at or before t moves), and
test 3: warm-ups are sufficient (start the data later: past the warm-up, values agree within
``features.history_tolerance``), for every feature of the registry."""
from __future__ import annotations

import pandas as pd
import pytest

from features.checks import lookahead_violations, warmup_violations
from features.registry import default_config
from tests.features.helpers import DELETED_KO_BARS, full_registry

NAMES = full_registry().names
LATE_STARTS = ("2014-01-02", "2015-09-01")


def _cut_times(bars) -> list[pd.Timestamp]:
    ko_missing = bars["AAPL"].index.difference(bars["KO"].index)
    return [pd.Timestamp("2014-06-13"),          # a Friday, mid-sample
            pd.Timestamp("2015-07-04"),          # a Saturday and holiday: nothing trades
            pd.Timestamp("2015-07-06"),          # PYPL's first bar
            ko_missing[0]]                       # a day KO has no bar (deleted)


@pytest.fixture(scope="module")
def lookahead(registry, sample_bars, engine_options):
    found = lookahead_violations(registry, sample_bars, _cut_times(sample_bars), engine_options=engine_options)
    return {v.feature: v for v in reversed(found)}


@pytest.fixture(scope="module")
def history(registry, sample_bars, engine_options):
    found = warmup_violations(registry, sample_bars, LATE_STARTS, default_config().history_tolerance,
                              engine_options=engine_options)
    return {v.feature: v for v in reversed(found)}


@pytest.mark.parametrize("name", NAMES)
def test_feature_unchanged_when_future_bars_change(name, lookahead):
    assert name not in lookahead, str(lookahead.get(name))


@pytest.mark.parametrize("name", NAMES)
def test_feature_independent_of_history_before_warmup(name, history):
    assert name not in history, str(history.get(name))


def test_cut_times_cover_days_without_bars(sample_bars):
    cuts = _cut_times(sample_bars)
    assert cuts[1] not in sample_bars["AAPL"].index
    assert cuts[3] not in sample_bars["KO"].index and cuts[3] in sample_bars["AAPL"].index
    assert len(DELETED_KO_BARS) == 3
