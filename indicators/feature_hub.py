"""The feature engine inside Backtrader: one :class:`FeatureHub` per strategy reads each bar of its
datas once and gives the strategy the bar's feature rows (and prices).

- Backtest (``runonce=True``): the first row read computes the whole feature panel in batch from
  every data's preloaded arrays (:attr:`FeatureHub.bar_arrays`, which also give the models their
  prices); a row read is then an index into that panel.
- Bar by bar (``runonce=False``, live feeds): the hub reads the current bar of every data that has
  one, once per new timestamp, feeds it to the engine's stream and keeps it as :attr:`FeatureHub.bar`
  (Backtrader calls the strategy on every tick, also when a data did not move: the hub never
  updates twice).

The strategy reads features as numpy rows, never as Backtrader lines::

    def __init__(self):
        self.features = FeatureHub(self, engine)

    def next(self):
        rows = self.features.rows()        # (N symbols, F features), NaN for symbols without a bar
        row = self.features.row(self.data) # (F,) for one symbol
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from engine.compat import bt
from features import FeatureEngine
from features.cache import batch_panel
from features.engine import BAR_FIELDS, BarArrays

_EPOCH = 719163.0  # Backtrader's date number of 1970-01-01


def _timestamps(numbers: np.ndarray) -> pd.DatetimeIndex:
    """Backtrader date numbers (days since year 1, with the time as a fraction) to timestamps,
    rounded to the microsecond as ``bt.num2date`` does."""
    micros = np.round((np.asarray(numbers, dtype=np.float64) - _EPOCH) * 86_400e6).astype(np.int64)
    return pd.DatetimeIndex(micros.astype("datetime64[us]"), name="datetime").as_unit("ns")


class FeatureHub:
    """The feature engine for all the datas of one strategy, and the current bar's feature rows."""

    def __init__(self, strategy: bt.Strategy, engine: FeatureEngine, panel=None):
        """panel: the engine's batch panel of these very bars, when the caller has it already
        (training computed it); runonce then reads it instead of computing it again."""
        self.strategy, self.engine, self._given = strategy, engine, panel
        by_name = {d._name: d for d in strategy.datas}
        missing = [s for s in engine.symbols if s not in by_name]
        if missing:
            raise ValueError(f"the engine's symbols have no data in the strategy: {missing}")
        self.datas = [by_name[s] for s in engine.symbols]
        self.n, self.names = len(self.datas), engine.names
        self._panel = None          # runonce: the batch panel ...
        self._arrays: BarArrays | None = None  # ... the bars it was computed from ...
        self._row_of: dict = {}     # ... and the panel row of each Backtrader date number
        self._stream = None         # bar by bar: the engine's stream ...
        self._now = None            # ... the date number it last advanced to
        self._rows = np.full((self.n, len(self.names)), np.nan)
        # ... and the bar itself: (5, N) open, high, low, close, volume, NaN where a symbol has none
        self.bar = np.full((len(BAR_FIELDS), self.n), np.nan)
        # bar by bar: seconds the stream's update of the latest bar took (the live metrics take it)
        self.update_seconds: float | None = None

    def index(self, data) -> int:
        """The data's position in the engine's symbols (by identity: Backtrader overloads ==)."""
        for j, candidate in enumerate(self.datas):
            if candidate is data:
                return j
        raise ValueError(f"data {getattr(data, '_name', data)!r} is not one of the hub's datas")

    # ---- runonce ---------------------------------------------------------------------------------
    def compute_batch(self) -> None:
        """The whole panel from the datas' preloaded arrays (once per run; through the feature cache,
        ``features.cache.batch_panel``, so a backtest reuses what ``train`` or an earlier run computed)."""
        if self._panel is not None:
            return
        numbers = [np.asarray(data.lines.datetime.array[: data.buflen()], dtype=np.float64) for data in self.datas]
        calendar = np.unique(np.concatenate(numbers)) if numbers else np.array([])
        present = np.zeros((len(calendar), self.n), dtype=bool)
        longest = max((len(stamps) for stamps in numbers), default=0)
        fields = {field: np.full((longest, self.n), np.nan) for field in BAR_FIELDS}
        for j, (data, stamps) in enumerate(zip(self.datas, numbers)):
            present[np.searchsorted(calendar, stamps), j] = True
            for field, values in fields.items():
                values[: len(stamps), j] = getattr(data.lines, field).array[: len(stamps)]
        self._arrays = BarArrays(_timestamps(calendar), present, fields)
        if self._given is not None:
            if not self._given.times.equals(self._arrays.times) or self._given.symbols != self.engine.symbols:
                raise ValueError("the panel given to FeatureHub is not of the strategy's bars")
            self._panel = self._given
        else:
            self._panel = batch_panel(self.engine, self._arrays)
        self._row_of = {float(x): t for t, x in enumerate(calendar)}

    @property
    def panel(self):
        """The batch ``FeaturePanel`` (runonce, once computed), else None."""
        return self._panel

    @property
    def bar_arrays(self) -> BarArrays:
        """(runonce) The datas' preloaded bars as the arrays the batch read: what the models' prices
        come from (``models.dataset.panel_data_from_bars``)."""
        self.compute_batch()
        return self._arrays

    def calendar_index(self) -> int:
        """The current bar's row on the run's calendar: the panel's row (runonce), else the count
        of timestamps the stream has seen, minus one."""
        if self._panel is None and self._runonce():
            self.compute_batch()
        if self._panel is not None:
            return self._row_of[self.strategy.datetime[0]]
        self.advance()
        return self.calendar_bars - 1

    @property
    def calendar_bars(self) -> int:
        """Calendar bars the stream has seen (bar by bar)."""
        return self._stream.calendar_count if self._stream is not None else 0

    # ---- bar by bar --------------------------------------------------------------------------
    def advance(self) -> None:
        """Read the current bar of every data that has one into :attr:`bar` and feed it to the
        stream (once per timestamp)."""
        if self._panel is not None:
            return
        now = self.strategy.datetime[0]
        if now == self._now:
            return
        if self._stream is None:
            self._stream = self.engine.stream()
        present = np.zeros(self.n, dtype=bool)
        prices = np.full((len(BAR_FIELDS), self.n), np.nan)
        for j, data in enumerate(self.datas):
            if len(data) and data.datetime[0] == now:
                present[j] = True
                prices[:, j] = (data.open[0], data.high[0], data.low[0], data.close[0], data.volume[0])
        started = time.perf_counter()
        self._rows = self._stream.update(_timestamps([now])[0], present, *prices)
        self.update_seconds = time.perf_counter() - started
        self.bar, self._now = prices, now

    # ---- what the strategy reads -------------------------------------------------------------
    def rows(self) -> np.ndarray:
        """(N, F) feature rows at the strategy's current bar, symbols in the engine's order."""
        if self._panel is None and self._runonce():
            self.compute_batch()  # no bank did: the datas are preloaded all the same
        if self._panel is not None:
            return self._panel.row(self._row_of[self.strategy.datetime[0]])
        self.advance()
        return self._rows

    def _runonce(self) -> bool:
        """Whether Backtrader runs this strategy in runonce mode (every data preloaded); Cerebro
        keeps what it decided for the run, after live feeds and memory savings, in these two."""
        cerebro = self.strategy.cerebro
        return bool(getattr(cerebro, "_dorunonce", False) and getattr(cerebro, "_dopreload", False))

    def row(self, data) -> np.ndarray:
        """(F,) feature row of one data at the current bar (NaN when it has no bar now)."""
        return self.rows()[self.index(data)]
