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
from indicators.feature_bank import FeatureBank, FeatureHub
from tests.features.helpers import ROOT

SYMBOLS = ("AAPL", "JPM", "KO", "PYPL")  # PYPL starts late, KO misses days


class RecordFeatures(bt.Strategy):
    """Reads every feature row at every bar (symbols without a bar read NaN)."""

    params = (("engine", None),)

    def __init__(self):
        self.features = FeatureHub(self, self.p.engine)
        self.banks = [FeatureBank(d, hub=self.features) for d in self.datas]
        self.rows, self.single, self.warm = {}, {}, {}

    def prenext(self):
        self.next()

    def next(self):
        now = bt.num2date(self.datetime[0])
        self.rows[now] = self.features.rows().copy()
        self.single[now] = self.banks[0].row().copy()
        self.warm[now] = [b.warm[0] if len(b) else np.nan for b in self.banks]


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


def test_warm_line_turns_on_after_the_longest_warmup(engine, bars):
    strategy = _run(engine, bars, runonce=True)
    warm = np.array(list(strategy.warm.values()))
    j = list(bars).index("AAPL")
    first_warm = int(np.argmax(warm[:, j] == 1.0))
    assert first_warm == max(engine.warmups)  # AAPL trades every calendar bar


def test_bank_needs_a_hub(bars):
    class NoHub(bt.Strategy):
        def __init__(self):
            FeatureBank(self.data)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bars_to_feed("AAPL", bars["AAPL"]), name="AAPL")
    cerebro.addstrategy(NoHub)
    with pytest.raises(ValueError, match="hub"):
        cerebro.run()


class RowsOnly(bt.Strategy):
    """Reads the rows through the hub alone, with no FeatureBank."""

    params = (("engine", None),)

    def __init__(self):
        self.features = FeatureHub(self, self.p.engine)
        self.rows = []

    def prenext(self):
        self.next()

    def next(self):
        self.rows.append(self.features.rows().copy())


def test_hub_without_banks_reads_the_batch_in_runonce(engine, bars, expected):
    """In runonce the hub computes the panel at the first read when no bank did."""
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
