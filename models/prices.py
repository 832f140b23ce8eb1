"""Causal price statistics on each symbol's own bars (nothing after bar t is read)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def own_bars(close: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Calendar rows where symbol j has a bar, and its closes there."""
    rows = np.flatnonzero(np.isfinite(close[:, j]))
    return rows, close[rows, j]


def log_returns(close: np.ndarray) -> np.ndarray:
    """(T, N) log return of each symbol's bar over its previous own bar (NaN on its first bar)."""
    out = np.full(close.shape, np.nan)
    for j in range(close.shape[1]):
        rows, c = own_bars(close, j)
        out[rows[1:], j] = np.diff(np.log(c))
    return out


def trailing_volatility(close: np.ndarray, bars: int) -> np.ndarray:
    """(T, N) standard deviation (ddof 1) of the last ``bars`` log returns up to and including bar t,
    on each symbol's own bars."""
    out = np.full(close.shape, np.nan)
    for j in range(close.shape[1]):
        rows, c = own_bars(close, j)
        r = np.diff(np.log(c))
        if len(r) >= bars:
            out[rows[bars:], j] = np.lib.stride_tricks.sliding_window_view(r, bars).std(axis=1, ddof=1)
    return out


def trailing_volatility_at(close: np.ndarray, bars: np.ndarray, symbols: np.ndarray, n: int) -> np.ndarray:
    """``trailing_volatility(close, n)[bars, symbols]`` computed at those rows only (a live bar
    costs a window per symbol, not the whole history)."""
    bars, symbols = np.asarray(bars), np.asarray(symbols)
    out = np.full(len(bars), np.nan)
    slow = np.ones(len(bars), dtype=bool)
    if len(bars) and (bars == bars[0]).all() and bars[0] >= n:  # one bar (live): the symbols at once
        block = close[bars[0] - n: bars[0] + 1][:, symbols]
        slow = ~np.isfinite(block).all(axis=0)  # a gap in the last n + 1 rows: the symbol's own bars
        if not slow.all():
            r = np.diff(np.log(block[:, ~slow]), axis=0)  # as each symbol's own returns, n of them
            out[~slow] = np.ascontiguousarray(r.T).std(axis=1, ddof=1)
    for j in np.unique(symbols[slow]):
        mine = np.flatnonzero((symbols == j) & slow)
        rows, c = own_bars(close[: bars[mine].max() + 1], j)
        r = np.diff(np.log(c))
        if len(r) < n:
            continue
        k = np.searchsorted(rows, bars[mine])  # the bar's position among the symbol's own bars
        ok = (k >= n) & (k < len(rows)) & (rows[np.minimum(k, len(rows) - 1)] == bars[mine])
        if ok.any():
            windows = np.lib.stride_tricks.sliding_window_view(r, n)[k[ok] - n]
            out[mine[ok]] = windows.std(axis=1, ddof=1)
    return out


def market_index(close: np.ndarray) -> np.ndarray:
    """(T,) the equal-weight index's log return: the mean over the symbols trading at t of their
    log returns (:func:`log_returns`), NaN where none has one."""
    r = log_returns(close)
    counts = np.isfinite(r).sum(axis=1)
    index = np.full(len(r), np.nan)
    index[counts > 0] = np.nansum(r[counts > 0], axis=1) / counts[counts > 0]
    return index


def market_features(close: np.ndarray, vol_bars: int, index: np.ndarray | None = None) -> np.ndarray:
    """(T, 2): the equal-weight index's log return (:func:`market_index`; ``index`` when the caller
    keeps it already) and its realised volatility over the last ``vol_bars`` calendar bars (ddof 1)."""
    index = market_index(close) if index is None else index
    vol = pd.Series(index).rolling(vol_bars, min_periods=vol_bars).std().to_numpy()
    return np.column_stack([index, vol])
