"""The feature engine inside Backtrader: one :class:`FeatureHub` per strategy, and, where a strategy
wants each data's warm-up flag as a line, one :class:`FeatureBank` indicator per data.

- Backtest (``runonce=True``): the first bank's ``once``, or else the first row read, computes the
  whole feature panel in batch from every data's preloaded arrays; a row read is then an index into
  that panel.
- Bar by bar (``runonce=False``, live feeds): the hub runs the engine's stream once per new
  timestamp, over the datas that have a bar at that timestamp (Backtrader calls every indicator's
  ``next`` on every tick, also when its own data did not move: the hub never updates twice).

The strategy reads features as numpy rows, never as Backtrader lines::

    def __init__(self):
        self.features = FeatureHub(self, engine)
        self.banks = [FeatureBank(d, hub=self.features) for d in self.datas]

    def next(self):
        rows = self.features.rows()        # (N symbols, F features), NaN for symbols without a bar
        row = self.banks[0].row()          # (F,) for one symbol

Each bank has a single line, ``warm``: 1.0 once all of its symbol's features are past their warm-up.
The banks are optional: Backtrader advances every indicator's lines each bar, which for 50 datas
costs about a tenth of an empty backtest's time, and ``rows()`` alone computes the panel (runonce)
or advances the stream (bar by bar), so a strategy that only reads rows can do without them.
"""
from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from engine.compat import bt
from features import FeatureEngine
from features.cache import batch_panel
from features.engine import BarArrays

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
        self._row_of: dict = {}     # ... and the panel row of each Backtrader date number
        self._calendar = np.array([])  # ... (the date numbers in order)
        self._stream = None         # bar by bar: the engine's stream ...
        self._now = None            # ... the date number it last advanced to
        self._rows = np.full((self.n, len(self.names)), np.nan)

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
        times = _timestamps(calendar)
        if self._given is not None:
            if not self._given.times.equals(times) or self._given.symbols != self.engine.symbols:
                raise ValueError("the panel given to FeatureHub is not of the strategy's bars")
            self._panel = self._given
        else:
            present = np.zeros((len(calendar), self.n), dtype=bool)
            longest = max((len(stamps) for stamps in numbers), default=0)
            fields = {field: np.full((longest, self.n), np.nan) for field in ("open", "high", "low", "close", "volume")}
            for j, (data, stamps) in enumerate(zip(self.datas, numbers)):
                present[np.searchsorted(calendar, stamps), j] = True
                for field, values in fields.items():
                    values[: len(stamps), j] = getattr(data.lines, field).array[: len(stamps)]
            self._panel = batch_panel(self.engine, BarArrays(times, present, fields))
        self._row_of = {float(x): t for t, x in enumerate(calendar)}
        self._calendar = calendar

    @property
    def panel(self):
        """The batch ``FeaturePanel`` (runonce, once computed), else None."""
        return self._panel

    def price_grid(self, fields=("close", "high", "low")) -> dict[str, np.ndarray]:
        """(runonce) {field: (T, N)} the datas' preloaded prices on the panel's calendar, NaN where a
        symbol has no bar: the prices the models' labels and risk statistics are computed from."""
        self.compute_batch()
        out = {field: np.full((len(self._calendar), self.n), np.nan) for field in fields}
        for j, data in enumerate(self.datas):
            size = data.buflen()
            rows = np.searchsorted(self._calendar, np.asarray(data.lines.datetime.array[:size], dtype=np.float64))
            for field in fields:
                out[field][rows, j] = np.asarray(getattr(data.lines, field).array[:size], dtype=np.float64)
        return out

    def calendar_index(self) -> int:
        """The current bar's row on the run's calendar: the panel's row (runonce), else the count
        of timestamps the stream has seen, minus one."""
        if self._panel is None and self._runonce():
            self.compute_batch()
        if self._panel is not None:
            return self._row_of[self.strategy.datetime[0]]
        self.advance()
        return self.calendar_bars - 1

    def warm_flags(self, data) -> np.ndarray:
        """Per bar of ``data`` (runonce): 1.0 where every feature of its symbol is past its warm-up."""
        size = data.buflen()
        rows = np.searchsorted(self._calendar, np.asarray(data.lines.datetime.array[:size], dtype=np.float64))
        return ((np.arange(size) >= self.max_warmup(False)) & (rows >= self.max_warmup(True))).astype(np.float64)

    def max_warmup(self, calendar_clock: bool) -> int:
        """The longest warm-up among the features counted in own bars (False) or calendar bars (True)."""
        warm = self.engine.warmups[self.engine.calendar_clock == calendar_clock]
        return int(warm.max(initial=0))

    @property
    def calendar_bars(self) -> int:
        """Calendar bars the stream has seen (bar by bar)."""
        return self._stream.calendar_count if self._stream is not None else 0

    # ---- bar by bar --------------------------------------------------------------------------
    def advance(self) -> None:
        """Feed the stream the current bar of every data that has one (once per timestamp)."""
        if self._panel is not None:
            return
        now = self.strategy.datetime[0]
        if now == self._now:
            return
        if self._stream is None:
            self._stream = self.engine.stream()
        present = np.zeros(self.n, dtype=bool)
        prices = np.full((5, self.n), np.nan)
        for j, data in enumerate(self.datas):
            if len(data) and data.datetime[0] == now:
                present[j] = True
                prices[:, j] = (data.open[0], data.high[0], data.low[0], data.close[0], data.volume[0])
        self._rows = self._stream.update(_timestamps([now])[0], present, *prices)
        self._now = now

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


class FeatureBank(bt.Indicator):
    """Carries the feature registry into Backtrader for one data (see the module docstring)."""

    lines = ("warm",)
    params = (("hub", None),)
    plotinfo = dict(plot=False)

    def __init__(self):
        if self.p.hub is None:
            raise ValueError("FeatureBank needs hub=FeatureHub(strategy, engine)")
        self.hub: FeatureHub = self.p.hub
        self.symbol_index = self.hub.index(self.data)
        self._own_bars = 0
        self._flags = None

    def once(self, start, end):
        self.hub.compute_batch()
        if self._flags is None:  # Backtrader calls once twice (oncestart, then the rest)
            self._flags = self.hub.warm_flags(self.data)
        stop = min(end, len(self._flags))
        if start < stop:
            self.lines.warm.array[start:stop] = array("d", self._flags[start:stop].tolist())

    def next(self):
        self.hub.advance()
        if self.data.datetime[0] == self.hub.strategy.datetime[0]:
            self._own_bars += 1
        warm = self._own_bars > self.hub.max_warmup(False) and self.hub.calendar_bars > self.hub.max_warmup(True)
        self.lines.warm[0] = 1.0 if warm else 0.0

    def row(self) -> np.ndarray:
        """(F,) this data's feature row at the current bar."""
        return self.hub.rows()[self.symbol_index]
