"""The models' view of a run: features and prices on one calendar, plus the labels, as plain arrays.

``values[t, j, f]`` is feature f of symbol j at calendar bar t (``features.FeaturePanel.values``),
NaN where the symbol has no bar or a feature is still warming up; ``close``, ``high``, ``low``
are (T, N) on the same calendar. A *row* is a (bar, symbol) pair. Everything here except
:attr:`PanelData.labels` reads bar t and earlier only.

Bars become a ``PanelData`` in one of two ways, with the same numbers:

- a whole history at once (training, a backtest): :func:`panel_data_from_bars`, the features'
  batch through the feature cache and the prices on its calendar;
- bar by bar (live, replays): :class:`GrowingPanel`, each new bar's feature rows and prices
  appended in place, at a cost that does not grow with the history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from features.cache import batch_panel
from features.engine import BarArrays, FeatureEngine, FeaturePanel
from models.labels import Labels, make_labels
from models.prices import market_features

PRICE_FIELDS = ("close", "high", "low")   # what the labels and the models' price statistics read


@dataclass(frozen=True)
class PanelData:
    values: np.ndarray                 # (T, N, F) float32 features
    close: np.ndarray                  # (T, N) float64, NaN where the symbol has no bar
    labels: Labels | None              # None when only predicting
    times: pd.DatetimeIndex | None = None
    symbols: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    market_index: np.ndarray | None = None   # (T,) ``models.prices.market_index``, where kept bar by bar

    @classmethod
    def build(cls, values, close, high, low, models_cfg, *, times=None, symbols=None, feature_names=None,
              with_labels: bool = True, market_index=None) -> "PanelData":
        """Features as float32 C-contiguous, and the labels of ``models_cfg`` (``ModelsConfig``)
        computed from the prices given: labels that run past the last bar are unknown (NaN)."""
        close = np.asarray(close, dtype=np.float64)
        labels = (make_labels(close, np.asarray(high, np.float64), np.asarray(low, np.float64),
                              models_cfg.horizons, models_cfg.decision_horizon, models_cfg.labels)
                  if with_labels else None)
        return cls(np.ascontiguousarray(values, dtype=np.float32), close, labels,
                   None if times is None else pd.DatetimeIndex(times),
                   None if symbols is None else tuple(symbols),
                   None if feature_names is None else tuple(feature_names), market_index)

    @property
    def n_bars(self) -> int:
        return self.values.shape[0]

    def time_of(self, bar: int) -> str:
        """A bar's time stamp as ISO text, the date alone at midnight (its index without times)."""
        if self.times is None:
            return str(int(bar))
        stamp = self.times[bar]
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()

    def market_features(self, vol_bars: int) -> np.ndarray:
        """(T, 2) ``models.prices.market_features`` of ``close`` (the regime model's inputs)."""
        return market_features(self.close, vol_bars, self.market_index)


def prices_on_calendar(arrays: BarArrays, fields: Sequence[str] = PRICE_FIELDS) -> dict[str, np.ndarray]:
    """{field: (T, N)} each symbol's bars of ``arrays`` on their calendar, NaN where it has none."""
    present = arrays.present
    grids = {}
    for field in fields:
        compact = np.asarray(arrays.fields[field], dtype=np.float64)     # (L, N): symbol j's k-th bar
        own = np.arange(len(compact))[:, None] < present.sum(axis=0)[None, :]
        grid = np.full(present.shape, np.nan)
        grid.T[present.T] = compact.T[own.T]          # symbol by symbol, its bars in order
        grids[field] = grid
    return grids


def panel_data_from_bars(engine: FeatureEngine, bars: Mapping[str, pd.DataFrame] | BarArrays, models_cfg, *,
                         panel: FeaturePanel | None = None, progress: bool = False) -> tuple[FeaturePanel, PanelData]:
    """Bars -> features -> ``PanelData`` with its labels: the engine's batch panel of ``bars``
    ({symbol: OHLCV frame}, or the ``BarArrays`` of an adapter) through the feature cache
    (``features.cache.batch_panel``), unless ``panel``, the batch of these very bars, is given; and
    the prices on the panel's calendar. ``run.py train``, the strategies (a backtest) and the
    benchmarks all start here."""
    arrays = bars if isinstance(bars, BarArrays) else engine.bar_arrays(bars)
    if panel is None:
        panel = batch_panel(engine, arrays, progress)
    prices = prices_on_calendar(arrays)
    return panel, PanelData.build(panel.values, prices["close"], prices["high"], prices["low"], models_cfg,
                                  times=panel.times, symbols=engine.symbols, feature_names=panel.names)


class GrowingPanel:
    """A session's calendar bars appended one at a time (live, replays), in arrays that double when
    full. After each :meth:`append`, :attr:`data` is a ``PanelData`` view of every bar so far, without
    labels; building it, and keeping the market index the regime model reads, costs the same
    whatever the length of the history. :meth:`labelled` adds the labels (over the whole history:
    for a retrain or the report)."""

    def __init__(self, symbols: Sequence[str], feature_names: Sequence[str], models_cfg, capacity: int = 512):
        self.symbols, self.feature_names, self.models_cfg = tuple(symbols), tuple(feature_names), models_cfg
        self.n = 0
        self.values = np.full((capacity, len(self.symbols), len(self.feature_names)), np.nan, dtype=np.float32)
        self.prices = np.full((len(PRICE_FIELDS), capacity, len(self.symbols)), np.nan)
        self.times = np.zeros(capacity, dtype="datetime64[ns]")
        self.market_index = np.full(capacity, np.nan)
        self._last_log_close = np.full(len(self.symbols), np.nan)   # each symbol's latest own bar
        self.data: PanelData | None = None

    def append(self, time, rows: np.ndarray, close: np.ndarray, high: np.ndarray, low: np.ndarray) -> PanelData:
        """Add calendar bar ``time``: (N, F) feature rows and (N,) prices, NaN where a symbol has no
        bar; returns the new :attr:`data`."""
        if self.n == len(self.values):
            grow = len(self.values)
            self.values = np.concatenate([self.values, np.full_like(self.values[:grow], np.nan)])
            self.prices = np.concatenate([self.prices, np.full_like(self.prices[:, :grow], np.nan)], axis=1)
            self.times = np.concatenate([self.times, np.zeros_like(self.times)])
            self.market_index = np.concatenate([self.market_index, np.full(grow, np.nan)])
        t = self.n
        self.values[t] = rows
        self.prices[:, t] = (close, high, low)
        self.times[t] = time
        self.market_index[t] = self._index_return(self.prices[0, t])
        self.n += 1
        self.data = self._view(with_labels=False)
        return self.data

    def labelled(self) -> PanelData:
        """:attr:`data` with the labels of every bar so far."""
        return self._view(with_labels=True)

    def _view(self, with_labels: bool) -> PanelData:
        n = self.n
        return PanelData.build(self.values[:n], *self.prices[:, :n], self.models_cfg, times=self.times[:n],
                               symbols=self.symbols, feature_names=self.feature_names, with_labels=with_labels,
                               market_index=self.market_index[:n])

    def _index_return(self, close: np.ndarray) -> float:
        """``models.prices.market_index`` at the new bar, from each symbol's previous own close
        (the same operations, so the same numbers, as over the whole history)."""
        log_close = np.log(close)
        r = log_close - self._last_log_close            # NaN unless the symbol has this bar and an earlier one
        traded = np.isfinite(close)
        self._last_log_close[traded] = log_close[traded]
        count = int(np.isfinite(r).sum())
        return float(np.nansum(r) / count) if count else np.nan


def valid_rows(data: PanelData, min_feature_fraction: float, bars=None) -> np.ndarray:
    """(T, N) bool (or (len(bars), N) for the given bars): the symbol has a bar and at least
    ``min_feature_fraction`` of its features are finite."""
    rows = slice(None) if bars is None else np.asarray(bars)
    finite = np.isfinite(data.values[rows]).mean(axis=2)
    return np.isfinite(data.close[rows]) & (finite >= min_feature_fraction)


def flat(values: np.ndarray, bars: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(n, F) feature rows."""
    return values[bars, symbols]


def sequences(values: np.ndarray, bars: np.ndarray, symbols: np.ndarray, seq_len: int,
              features: np.ndarray) -> np.ndarray:
    """(n, seq_len, k): for each row, features ``features`` of its symbol at calendar bars
    ``bar - seq_len + 1 .. bar`` (oldest first). Bars before the first bar of the panel are NaN.
    Causal by construction: nothing after the row's bar is read."""
    steps = np.asarray(bars)[:, None] - np.arange(seq_len - 1, -1, -1)[None, :]
    # the rows read, and only those (not a copy of every bar's features: a live bar reads 50 rows)
    out = values[np.clip(steps, 0, None)[:, :, None], np.asarray(symbols)[:, None, None],
                 np.asarray(features)[None, None, :]]
    out[steps < 0] = np.nan
    return out
