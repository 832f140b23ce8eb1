"""Labels: the only code in the project that looks forward.

Everything here reads prices after bar t to describe what happened after t; nothing else in
``models/`` (or anywhere) may. Each label carries the calendar index of the last bar it reads
(its *end*), so training can purge exactly: a label is usable at bar t only when its end <= t
(``models.splits``). ``models.leakage.label_lookahead_check`` verifies both promises.

Conventions
- Arrays are on the run's calendar: (T, N) with NaN where a symbol has no bar. A horizon of h
  bars is counted in the symbol's *own* bars (a day it does not trade is not a step).
- Returns are log returns, ``log(close[t+h] / close[t])``: they add over time and are symmetric.
- A label that is not known from the data given (the path runs past the last bar, or a triple
  barrier's volatility is still warming up) is NaN with end -1.
- Cross-sectional kinds (``excess_return``, ``cross_sectional_rank``) compare a symbol with the
  other symbols whose label is known at the same bar: such a label reads every one of them, so its
  end is the latest of their ends at that bar (the purge then waits for all of them).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.prices import own_bars, trailing_volatility


@dataclass(frozen=True)
class Labels:
    """Forward-looking targets of every (bar, symbol) of a panel.

    returns: (T, N, H) log return over each horizon (or to the first barrier touched);
    end: (T, N, H) int, calendar index of the last bar each label reads, -1 when unknown;
    entry_timing, exit_timing: (T, N) where in the decision horizon the best entry and the best exit
    fall, as fractions in [0, 1] of the horizon (see :func:`path_labels`);
    adverse_excursion: (T, N) largest fall below the entry close within the decision horizon, as a
    positive fraction of the close (the stop-loss model's target);
    path_end: (T, N) int, the last bar the three path labels read.
    """

    horizons: tuple[int, ...]
    returns: np.ndarray
    end: np.ndarray
    entry_timing: np.ndarray
    exit_timing: np.ndarray
    adverse_excursion: np.ndarray
    path_end: np.ndarray

    @property
    def sample_end(self) -> np.ndarray:
        """(T, N) the last bar any label of the row reads; -1 when one of them is unknown. A row
        trains every target at once, so it is purged by its latest label."""
        ends = np.concatenate([self.end, self.path_end[..., None]], axis=2)
        return np.where((ends >= 0).all(axis=2), ends.max(axis=2), -1)


def forward_returns(close: np.ndarray, horizons) -> tuple[np.ndarray, np.ndarray]:
    """Log return from the close of bar t to the close h of the symbol's own bars later.

    close: (T, N). Returns (values (T, N, H), end (T, N, H)); end = calendar index of bar t+h.
    """
    T, N = close.shape
    values = np.full((T, N, len(horizons)), np.nan)
    end = np.full((T, N, len(horizons)), -1, dtype=np.int64)
    for j in range(N):
        rows, c = own_bars(close, j)
        logc = np.log(c)
        for k, h in enumerate(horizons):
            n = len(c) - h
            if n > 0:
                values[rows[:n], j, k] = logc[h:] - logc[:n]
                end[rows[:n], j, k] = rows[h:]
    return values, end


def triple_barrier(close: np.ndarray, high: np.ndarray, low: np.ndarray, horizons,
                   profit_target: float, stop_loss: float, vol_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """Triple-barrier labels (Lopez de Prado, AFML ch. 3), one per horizon h.

    From the close of bar t, the upper barrier is ``profit_target * sigma_t * sqrt(h)`` and the lower
    ``-stop_loss * sigma_t * sqrt(h)`` in log return, sigma_t the trailing ``vol_bars`` daily
    volatility at t (``models.prices.trailing_volatility``). Walking the next h own bars, the
    first bar whose low reaches the lower barrier or whose high reaches the upper one ends the
    label, whose value is that barrier (the stop is assumed hit first when one bar reaches both:
    the cautious reading).
    When neither is touched, the time limit ends it at the close of bar t+h. A barrier touched
    before the data ends labels a row even when its time limit lies beyond the last bar (the label
    is known then, live as in a backtest); an untouched row whose time limit is beyond is unknown.
    Returns (values (T, N, H), end (T, N, H)); end is the bar of the touch or the time limit.
    """
    T, N = close.shape
    sigma = trailing_volatility(close, vol_bars)
    values = np.full((T, N, len(horizons)), np.nan)
    end = np.full((T, N, len(horizons)), -1, dtype=np.int64)
    for j in range(N):
        rows, c = own_bars(close, j)
        hi, lo, s = np.log(high[rows, j]), np.log(low[rows, j]), sigma[rows, j]
        logc = np.log(c)
        for k, h in enumerate(horizons):
            # Every bar with at least one bar after it: a barrier touched before the data ends
            # decides the label even when the time limit lies beyond the last bar.
            n = len(c) - 1
            if n <= 0:
                continue
            ahead = lambda a: np.r_[a, np.full(h, np.nan)]   # NaN past the end never touches
            hi_, lo_, logc_ = ahead(hi), ahead(lo), ahead(logc)
            up = profit_target * s[:n] * math.sqrt(h)
            down = -stop_loss * s[:n] * math.sqrt(h)
            value = logc_[h:h + n] - logc[:n]         # time limit (NaN when beyond the data)
            at = np.full(n, h)
            open_ = np.ones(n, dtype=bool)
            for step in range(1, h + 1):
                hit_down = open_ & (lo_[step:step + n] - logc[:n] <= down)
                hit_up = open_ & ~hit_down & (hi_[step:step + n] - logc[:n] >= up)
                value = np.where(hit_down, down, np.where(hit_up, up, value))
                at = np.where(hit_down | hit_up, step, at)
                open_ &= ~(hit_down | hit_up)
            known = np.flatnonzero(np.isfinite(s[:n]) & np.isfinite(value))
            values[rows[known], j, k] = value[known]
            end[rows[known], j, k] = rows[known + at[known]]
    return values, end


def cross_sectional_end(end: np.ndarray) -> np.ndarray:
    """(T, N, H) each known label's end replaced by the latest end of the bar's known labels (a
    cross-sectional label reads all of them); -1 stays -1."""
    latest = end.max(axis=1, keepdims=True)
    return np.where(end >= 0, np.broadcast_to(latest, end.shape), -1)


def excess_returns(values: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward log returns (T, N, H) minus the equal-weight mean of the symbols' forward log returns
    known at the same bar (the universe's over the same bars): they sum to zero across a bar's
    symbols. Returns (values, end) with end as :func:`cross_sectional_end`."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # a bar with no known label: all NaN
        mean = np.nanmean(values, axis=1, keepdims=True)
    return values - mean, cross_sectional_end(end)


def cross_sectional_ranks(values: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each forward return's rank among the known ones of its bar, scaled to [-0.5, 0.5] (lowest
    -0.5, highest 0.5, ties share their average rank, a lone symbol 0). Returns (values, end) with
    end as :func:`cross_sectional_end`."""
    known = np.isfinite(values)
    ranks = pd.DataFrame(values.transpose(0, 2, 1).reshape(-1, values.shape[1])).rank(axis=1).to_numpy()
    ranks = ranks.reshape(values.shape[0], values.shape[2], values.shape[1]).transpose(0, 2, 1)
    n = known.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(n > 1, (ranks - 1) / (n - 1) - 0.5, 0.0)
    return np.where(known, scaled, np.nan), cross_sectional_end(end)


def path_labels(close: np.ndarray, low: np.ndarray, bars: int):
    """What happens along the next ``bars`` own bars after the close of bar t.

    - entry/exit timing: the pair of closes i < k in t..t+bars with the largest ratio
      close[k] / close[i] (the best long round trip in the window); entry = (i - t) / bars and
      exit = (k - t) / bars, fractions of the horizon (earliest pair on ties);
    - adverse excursion: ``max(0, 1 - min(low[t+1..t+bars]) / close[t])``.
    Returns (entry (T, N), exit (T, N), adverse (T, N), end (T, N)), end = calendar index of t+bars.
    """
    T, N = close.shape
    entry, exit_, adverse = (np.full((T, N), np.nan) for _ in range(3))
    end = np.full((T, N), -1, dtype=np.int64)
    for j in range(N):
        rows, c = own_bars(close, j)
        n = len(c) - bars
        if n <= 0:
            continue
        low_j = low[rows, j]
        best = np.full(n, -np.inf)
        best_i, best_k = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        run_min, run_arg = c[:n].copy(), np.zeros(n, dtype=np.int64)
        lowest = np.full(n, np.inf)
        for k in range(1, bars + 1):
            cur = c[k:k + n]
            ratio = cur / run_min
            better = ratio > best
            best = np.where(better, ratio, best)
            best_i = np.where(better, run_arg, best_i)
            best_k = np.where(better, k, best_k)
            lower = cur < run_min
            run_min = np.where(lower, cur, run_min)
            run_arg = np.where(lower, k, run_arg)
            lowest = np.minimum(lowest, low_j[k:k + n])
        entry[rows[:n], j] = best_i / bars
        exit_[rows[:n], j] = best_k / bars
        adverse[rows[:n], j] = np.maximum(0.0, 1.0 - lowest / c[:n])
        end[rows[:n], j] = rows[bars:]
    return entry, exit_, adverse, end


def make_labels(close: np.ndarray, high: np.ndarray, low: np.ndarray, horizons, decision_horizon: int,
                labels_cfg) -> Labels:
    """All labels of a panel. ``labels_cfg``: ``config.schema.LabelsConfig`` (kind and barriers).
    ``returns`` holds the kind's target: a log return (``forward_return``, ``triple_barrier``), the
    return in excess of the universe's (``excess_return``) or the cross-sectional rank
    (``cross_sectional_rank``); its sign is "rose" or "beat the universe"."""
    horizons = tuple(int(h) for h in horizons)
    if labels_cfg.kind == "triple_barrier":
        values, end = triple_barrier(close, high, low, horizons, labels_cfg.profit_target,
                                     labels_cfg.stop_loss, labels_cfg.barrier_vol_bars)
    else:
        values, end = forward_returns(close, horizons)
        if labels_cfg.kind == "excess_return":
            values, end = excess_returns(values, end)
        elif labels_cfg.kind == "cross_sectional_rank":
            values, end = cross_sectional_ranks(values, end)
    entry, exit_, adverse, path_end = path_labels(close, low, decision_horizon)
    return Labels(horizons, values, end, entry, exit_, adverse, path_end)


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(min|h|d)\s*$", re.IGNORECASE)


def horizons_in_bars(spans, bar_minutes: float, session_minutes: float = 390.0) -> list[int]:
    """Horizons given as trading time ("5min", "30min", "1h", "4h", "1d", "3d": the blueprint's
    intraday set) -> whole bars of ``bar_minutes`` each; a day is one session of
    ``session_minutes`` (NYSE: 390). Rounded up, at least one bar; duplicates are an error."""
    minutes = {"min": 1.0, "h": 60.0, "d": session_minutes}
    out = []
    for span in spans:
        match = _SPAN.match(str(span))
        if not match:
            raise ValueError(f"horizon {span!r}: expected a number and min, h or d (e.g. '30min', '3d')")
        total = float(match.group(1)) * minutes[match.group(2).lower()]
        out.append(max(1, math.ceil(total / bar_minutes - 1e-9)))
    if len(set(out)) != len(out):
        raise ValueError(f"horizons {list(spans)} give duplicate bar counts {out} at {bar_minutes}-minute bars")
    return out
