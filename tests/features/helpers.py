"""Helpers shared by the feature tests (constants, the full-context registry, a stream runner)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureEngine, build_registry

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).with_name("data")
SYMBOLS = ("AAPL", "BAC", "JPM", "KO", "MSFT", "PYPL", "WFC", "XOM")
DELETED_KO_BARS = (1150, 1151, 1200)
MACRO_NAMES = ("vix",)
TIMEZONE = "America/New_York"


def full_registry():
    return build_registry(has_news=True, has_macro=list(MACRO_NAMES), has_sectors=True)


def stream_panel(engine: FeatureEngine, bars: dict[str, pd.DataFrame], times: pd.DatetimeIndex) -> np.ndarray:
    """(T, N, F): the engine's stream fed one calendar bar at a time."""
    fields = ("open", "high", "low", "close", "volume")
    prices = np.full((len(fields), len(times), len(engine.symbols)), np.nan)
    present = np.zeros((len(times), len(engine.symbols)), dtype=bool)
    for j, symbol in enumerate(engine.symbols):
        rows = times.get_indexer(bars[symbol].index)
        present[rows, j] = True
        for k, field in enumerate(fields):
            prices[k, rows, j] = bars[symbol][field].to_numpy()
    stream = engine.stream()
    return np.stack([stream.update(times[t], present[t], *prices[:, t]) for t in range(len(times))])


def feature_scale(values: np.ndarray) -> float:
    """Mean |value| of a feature (1 when it has none): the yardstick of tolerances."""
    scale = np.nanmean(np.abs(values)) if np.isfinite(values).any() else 1.0
    return float(scale) if scale > 0 else 1.0
