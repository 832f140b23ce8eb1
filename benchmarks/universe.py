"""The benchmarks' data: the first clean tickers of the shared S&P 500 folder (a developer's
checkout has ``../shared/data/sp500_5yr``), else the sample universe shipped in ``data/``; and
longer histories stitched from them (:func:`long_history`)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def source_folder() -> Path:
    shared = ROOT.parent / "shared" / "data" / "sp500_5yr"
    return shared if shared.is_dir() else ROOT / "data" / "sample"


def clean_tickers(min_bars: int) -> Iterator[tuple[str, pd.DataFrame]]:
    """(symbol, bars) of each file, in name order, that loads cleanly (a few vendor files have a
    high below the low) and has at least ``min_bars`` bars."""
    from common.errors import DataError
    from feeds.loader import load_bars

    for path in sorted(source_folder().glob("*.csv")):
        try:
            symbol, frame = load_bars(path)
        except DataError:
            continue
        if len(frame) >= min_bars:
            yield symbol, frame


def long_history(bars: dict[str, pd.DataFrame], length: int) -> dict[str, pd.DataFrame]:
    """Each symbol's real bars repeated end to end (prices chained so the series stays continuous)."""
    days = pd.bdate_range("1940-01-01", periods=length, name="datetime")
    out = {}
    for symbol, frame in bars.items():
        close = frame["close"].to_numpy()
        shape = frame[["open", "high", "low"]].to_numpy() / close[:, None]
        growth = np.r_[1.0, close[1:] / close[:-1]]
        repeats = -(-length // len(frame))
        steps = np.tile(growth, repeats)[:length]
        steps[:: len(frame)] = 1.0
        level = close[0] * np.cumprod(steps)
        ohl = np.tile(shape, (repeats, 1))[:length] * level[:, None]
        out[symbol] = pd.DataFrame({"open": ohl[:, 0], "high": np.maximum(ohl[:, 1], level),
                                    "low": np.minimum(ohl[:, 2], level), "close": level,
                                    "volume": np.tile(frame["volume"].to_numpy(), repeats)[:length],
                                    "openinterest": 0.0}, index=days)
    return out
