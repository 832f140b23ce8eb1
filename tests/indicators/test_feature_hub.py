"""The feature engine inside Backtrader: the rows a strategy reads, with runonce on and off and with
a live-like feed (no preload: bars arrive one by one), equal the engine's batch to 1e-9."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from engine.compat import bt
from features import FeatureEngine, build_registry
from feeds.loader import load_sector_map, load_universe
from feeds.pandas_feed import bars_to_feed
from indicators.feature_hub import FeatureHub
from tests.features.helpers import ROOT

SYMBOLS = ("AAPL", "JPM", "KO", "PYPL")  # PYPL starts late, KO misses days


class RecordFeatures(bt.Strategy):
    """Reads every feature row at every bar (symbols without a bar read NaN), and bar by bar the
    bar the hub read."""

    params = (("engine", None),)

    def __init__(self):
        self.features = FeatureHub(self, self.p.engine)
        self.rows, self.single, self.bars = {}, {}, {}

    def prenext(self):
        self.next()

    def next(self):
        now = bt.num2date(self.datetime[0])
        self.rows[now] = self.features.rows().copy()
        self.single[now] = self.features.row(self.datas[0]).copy()
        if self.features.panel is None:
            self.bars[now] = self.features.bar.copy()


@pytest.fixture(scope="module")
def bars():
    frames = load_universe([ROOT / "data" / "sample" / f"{s}_data.csv" for s in SYMBOLS])
    frames["KO"] = frames["KO"].drop(frames["KO"].index[[400, 401, 950]])
    return frames


@pytest.fixture(scope="module")
def engine(bars):
    return FeatureEngine(build_registry(), list(bars), sectors=load_sector_map(ROOT / "data" / "sectors.csv"))


@pytest.fixture(scope="module")
def expected(engine, bars):
    return engine.batch(bars)


def _run(engine, bars, **modes) -> RecordFeatures:
    cerebro = bt.Cerebro(stdstats=False, **modes)
    for symbol, frame in bars.items():
        cerebro.adddata(bars_to_feed(symbol, frame), name=symbol)
    cerebro.addstrategy(RecordFeatures, engine=engine)
    return cerebro.run()[0]


@pytest.mark.parametrize("modes", [
    pytest.param({"runonce": True, "preload": True}, id="runonce"),
    pytest.param({"runonce": False, "preload": True}, id="next", marks=pytest.mark.slow),
    pytest.param({"runonce": False, "preload": False}, id="live-like", marks=pytest.mark.slow),
])
def test_strategy_rows_equal_batch(modes, engine, bars, expected):
    strategy = _run(engine, bars, **modes)
    assert list(strategy.rows) == list(expected.times)  # one read per calendar bar
    seen = np.stack(list(strategy.rows.values()))
    scale = np.nanmean(np.abs(expected.values), axis=(0, 1))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    off = ~np.isclose(seen, expected.values, rtol=1e-9, atol=0, equal_nan=True) & \
        ~(np.abs(seen - expected.values) <= 1e-9 * scale)
    differing = sorted({expected.names[f] for f in np.nonzero(off)[2]})
    assert not differing, f"features differing from the batch: {differing}"
    single = np.stack(list(strategy.single.values()))
    np.testing.assert_array_equal(np.isnan(single), np.isnan(seen[:, 0]))


def test_bar_by_bar_the_hub_keeps_the_bar_it_read(engine, bars):
    """Bar by bar, ``hub.bar`` is every data's current bar (NaN where a symbol has none): what the
    models' prices are appended from, read once with the features."""
    strategy = _run(engine, bars, runonce=False, preload=True)
    assert list(strategy.bars) == list(strategy.rows)
    for k, field in enumerate(("open", "high", "low", "close", "volume")):
        expected = np.column_stack([bars[s][field].reindex(list(strategy.bars)).to_numpy(float)
                                    for s in engine.symbols])
        np.testing.assert_array_equal(np.stack([bar[k] for bar in strategy.bars.values()]), expected)


def test_runonce_bar_arrays_are_those_of_the_batch(engine, bars):
    strategy = _run(engine, bars, runonce=True)
    arrays = strategy.features.bar_arrays
    expected = engine.bar_arrays(bars)
    assert arrays.times.equals(expected.times)
    np.testing.assert_array_equal(arrays.present, expected.present)
    for field, values in expected.fields.items():
        np.testing.assert_array_equal(arrays.fields[field], values)


class RowsOnly(bt.Strategy):
    """Reads the rows through the hub alone."""

    params = (("engine", None),)

    def __init__(self):
        self.features = FeatureHub(self, self.p.engine)
        self.rows = []

    def prenext(self):
        self.next()

    def next(self):
        self.rows.append(self.features.rows().copy())


def test_hub_reads_the_batch_in_runonce(engine, bars, expected):
    """In runonce the hub computes the panel at the first read."""
    cerebro = bt.Cerebro(stdstats=False, runonce=True)
    for symbol, frame in bars.items():
        cerebro.adddata(bars_to_feed(symbol, frame), name=symbol)
    cerebro.addstrategy(RowsOnly, engine=engine)
    strategy = cerebro.run()[0]
    assert strategy.features.calendar_bars == 0  # no bar went through the stream
    np.testing.assert_array_equal(np.stack(strategy.rows), expected.values)


def test_a_backtest_and_the_command_line_share_the_feature_cache(bars, tmp_path, caplog):
    """The hub keys the cache on Backtrader's preloaded lines, ``train`` and ``features`` on the loaded
    frames: the same bars are the same entry, whichever computed it first."""
    from features.cache import batch_panel
    from features.registry import default_config

    settings = default_config().model_copy(update={"cache": True, "cache_dir": str(tmp_path)})
    engine = FeatureEngine(build_registry(), list(bars), sectors=load_sector_map(ROOT / "data" / "sectors.csv"),
                           config=settings)
    cerebro = bt.Cerebro(stdstats=False, runonce=True)
    for symbol, frame in bars.items():
        cerebro.adddata(bars_to_feed(symbol, frame), name=symbol)
    cerebro.addstrategy(RowsOnly, engine=engine)
    strategy = cerebro.run()[0]
    assert len(list(tmp_path.glob("*.npy"))) == 1
    with caplog.at_level(logging.INFO, logger="features"):
        panel = batch_panel(engine, bars)
    assert [r.getMessage()[:17] for r in caplog.records if r.name == "features"] == ["feature cache hit"]
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(panel.data, strategy.features.panel.data)
