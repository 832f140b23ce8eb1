"""Real sample data on one calendar, and a small stand-in feature panel (causal pandas features),
so the model tests do not depend on the feature engine."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config import load_config

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
FIELDS = ("open", "high", "low", "close", "volume")


def load_sample(symbols=None) -> dict[str, np.ndarray]:
    """{"times", "symbols", "open", ..., "volume"}: (T, N) arrays on the union calendar, NaN where a
    symbol has no bar (PYPL before 2015-07-06)."""
    frames = {}
    for path in sorted(SAMPLE.glob("*.csv")):
        frame = pd.read_csv(path, parse_dates=["date"]).set_index("date")
        frames[str(frame["Name"].iloc[0])] = frame
    names = sorted(frames) if symbols is None else list(symbols)
    times = pd.DatetimeIndex(sorted(set().union(*(frames[s].index for s in names))))
    out = {"times": times, "symbols": names}
    for f in FIELDS:
        out[f] = np.column_stack([frames[s][f].reindex(times).to_numpy(np.float64) for s in names])
    return out


def standin_features(prices: dict) -> tuple[np.ndarray, list[str]]:
    """(T, N, F) causal features per symbol on its own bars: returns, volatility, moving-average
    ratios, range and volume ratios, distance to the 60-bar high and low."""
    names, columns = None, []
    for j in range(prices["close"].shape[1]):
        rows = np.flatnonzero(np.isfinite(prices["close"][:, j]))
        c, h, l, v = (pd.Series(prices[f][rows, j]) for f in ("close", "high", "low", "volume"))
        r = np.log(c).diff()
        feats = {
            "ret_1": r, "ret_2": np.log(c).diff(2), "ret_5": np.log(c).diff(5), "ret_20": np.log(c).diff(20),
            "vol_5": r.rolling(5).std(), "vol_20": r.rolling(20).std(),
            "ma_ratio_10": c / c.rolling(10).mean() - 1, "ma_ratio_50": c / c.rolling(50).mean() - 1,
            "range": (h - l) / c, "volume_ratio": v / v.rolling(20).mean(),
            "from_high_60": c / h.rolling(60).max() - 1, "from_low_60": c / l.rolling(60).min() - 1,
        }
        names = list(feats)
        block = np.full((len(prices["times"]), len(feats)), np.nan)
        block[rows] = np.column_stack([feats[k].to_numpy() for k in names])
        columns.append(block)
    return np.stack(columns, axis=1), names


@pytest.fixture(scope="session")
def sample_prices():
    return load_sample()


@pytest.fixture(scope="session")
def sample_features(sample_prices):
    return standin_features(sample_prices)


# One thread per model: CI runs the tests on 2 workers over 2 cores, and OpenMP fits with more
# threads than free cores stall at every barrier (seconds instead of tenths).
ONE_THREAD = {"models.threads": 1}


@pytest.fixture(scope="session")
def models_cfg():
    return load_config(overrides=ONE_THREAD).models


def small_models_cfg(**overrides):
    """The default [models] section, sized for unit tests: LightGBM only, short windows, no search."""
    base = {**ONE_THREAD, "models.base_models": ["lightgbm"], "models.train_bars": 150, "models.retrain_every": 50,
            "models.search.schedule": "off", "models.lightgbm.n_estimators": 40,
            "models.ensemble.meta_window_bars": 150}
    base.update({f"models.{k}": v for k, v in overrides.items()})
    return load_config(overrides=base).models


def panel_data(prices, values, cfg, symbols=slice(None), bars=slice(None)):
    """PanelData of a slice of the sample (labels computed from the sliced prices only)."""
    from models.dataset import PanelData

    pick = lambda a: a[bars][:, symbols]
    return PanelData.build(values[bars][:, symbols], pick(prices["close"]), pick(prices["high"]),
                           pick(prices["low"]), cfg, times=prices["times"][bars])
