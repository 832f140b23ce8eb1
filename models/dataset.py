"""The models' view of a run: features and prices on one calendar, plus the labels, as plain arrays.

``values[t, j, f]`` is feature f of symbol j at calendar bar t (``features.FeaturePanel.values``),
NaN where the symbol has no bar or a feature is still warming up; ``close``, ``high``, ``low``
are (T, N) on the same calendar. A *row* is a (bar, symbol) pair. Everything here except
:attr:`PanelData.labels` reads bar t and earlier only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.labels import Labels, make_labels


@dataclass(frozen=True)
class PanelData:
    values: np.ndarray                 # (T, N, F) float32 features
    close: np.ndarray                  # (T, N) float64, NaN where the symbol has no bar
    labels: Labels | None              # None when only predicting
    times: pd.DatetimeIndex | None = None
    symbols: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None

    @classmethod
    def build(cls, values, close, high, low, models_cfg, *, times=None, symbols=None, feature_names=None,
              with_labels: bool = True) -> "PanelData":
        """Features as float32 C-contiguous, and the labels of ``models_cfg`` (``ModelsConfig``)
        computed from the prices given: labels that run past the last bar are unknown (NaN)."""
        close = np.asarray(close, dtype=np.float64)
        labels = (make_labels(close, np.asarray(high, np.float64), np.asarray(low, np.float64),
                              models_cfg.horizons, models_cfg.decision_horizon, models_cfg.labels)
                  if with_labels else None)
        return cls(np.ascontiguousarray(values, dtype=np.float32), close, labels,
                   None if times is None else pd.DatetimeIndex(times),
                   None if symbols is None else tuple(symbols),
                   None if feature_names is None else tuple(feature_names))

    @property
    def n_bars(self) -> int:
        return self.values.shape[0]

    def time_of(self, bar: int) -> str:
        """A bar's time stamp as ISO text, the date alone at midnight (its index without times)."""
        if self.times is None:
            return str(int(bar))
        stamp = self.times[bar]
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()


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
