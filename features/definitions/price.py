"""Price features: returns, moving averages, new highs and lows, breakouts, 52-week range, gaps."""
from __future__ import annotations

import numpy as np
import talib

from features.formulas import atr, diff, ema, lag, log, pct_change, rmax, rmean, rmin, rsum, window
from features.registry import feature

RETURN_BARS = (1, 2, 3, 5, 10, 20, 60, 120, 252)
MA_BARS = (5, 10, 20, 50, 100, 200)
YEAR = 252  # trading days in 52 weeks


@feature("ret_{n}", group="price", grid={"n": RETURN_BARS},
         oracle=lambda o, h, l, c, v, n: talib.ROCR(c, n) - 1)
def ret(b, n):
    """close_t / close_{t-n} - 1: simple return over n bars."""
    return pct_change(b.close, n)


@feature("mom_12_1", group="price")
def momentum_12_1(b):
    """close_{t-21} / close_{t-252} - 1: twelve-month momentum skipping the last month
    (Jegadeesh & Titman 1993)."""
    return lag(b.close, 21) / lag(b.close, YEAR) - 1


@feature("sma_{n}", group="price", grid={"n": MA_BARS}, oracle=lambda o, h, l, c, v, n: talib.SMA(c, n))
def sma(b, n):
    """mean(close over the last n bars): simple moving average."""
    return rmean(b.close, n)


@feature("close_sma_{n}", group="price", grid={"n": MA_BARS})
def close_to_sma(b, n):
    """close / SMA(close, n) - 1: price relative to its moving average."""
    return b.close / rmean(b.close, n) - 1


@feature("close_ema_{n}", group="price", grid={"n": (10, 20, 50)},
         oracle=lambda o, h, l, c, v, n: c / talib.EMA(c, n) - 1)
def close_to_ema(b, n):
    """close / EMA(close, n) - 1, the EMA seeded with its first n-bar SMA (TA-Lib EMA). Longer
    horizons use the SMA: an EMA of 200 bars needs about 900 bars to forget its seed."""
    return b.close / ema(b.close, n) - 1


@feature("sma_ratio_{pair[0]}_{pair[1]}", group="price", grid={"pair": ((5, 20), (20, 50), (50, 200))})
def sma_ratio(b, pair):
    """SMA(close, fast) / SMA(close, slow) - 1: moving-average crossover distance."""
    fast, slow = pair
    return rmean(b.close, fast) / rmean(b.close, slow) - 1


@feature("higher_highs_{n}", group="price", grid={"n": (5, 10, 20)})
def higher_highs(b, n):
    """Number of the last n bars whose high exceeds the previous bar's high."""
    return rsum(diff(b.high) > 0, n)


@feature("lower_lows_{n}", group="price", grid={"n": (5, 10, 20)})
def lower_lows(b, n):
    """Number of the last n bars whose low is below the previous bar's low."""
    return rsum(diff(b.low) < 0, n)


@feature("breakout_{n}", group="price", grid={"n": (10, 20, 55)})
def breakout(b, n):
    """(close - highest high of the previous n bars) / ATR(14): how far, in average true ranges,
    the close is above (> 0: a breakout) or below the prior n-bar high (Donchian / turtle rule)."""
    return (b.close - lag(rmax(b.high, n), 1)) / atr(b, 14)


@feature("dist_high_{n}", group="price", grid={"n": (YEAR,)})
def dist_high(b, n):
    """close / highest high of the last n bars - 1: distance to the 52-week high (<= 0)."""
    return b.close / rmax(b.high, n) - 1


@feature("dist_low_{n}", group="price", grid={"n": (YEAR,)})
def dist_low(b, n):
    """close / lowest low of the last n bars - 1: distance above the 52-week low (>= 0)."""
    return b.close / rmin(b.low, n) - 1


@feature("range_pos_{n}", group="price", grid={"n": (20, 60, YEAR)})
def range_position(b, n):
    """(close - lowest low) / (highest high - lowest low) over n bars: 0 at the low, 1 at the high."""
    low = rmin(b.low, n)
    return (b.close - low) / (rmax(b.high, n) - low)


@feature("gap", group="price")
def gap(b):
    """open_t / close_{t-1} - 1: the overnight gap."""
    return b.open / lag(b.close, 1) - 1


@feature("max_ret_{n}", group="price", grid={"n": (20,)})
def max_return(b, n):
    """Largest one-bar return of the last n bars (the 'lottery' effect, Bali et al. 2011)."""
    return rmax(pct_change(b.close), n)


@feature("min_ret_{n}", group="price", grid={"n": (20,)})
def min_return(b, n):
    """Smallest one-bar return of the last n bars."""
    return rmin(pct_change(b.close), n)


def _slope_weights(n: int) -> tuple:
    k = np.arange(n, dtype=np.float64) - (n - 1) / 2
    return tuple(k / (k * k).sum())


@feature("trend_slope_{n}", group="price", grid={"n": (20, 60)},
         oracle=lambda o, h, l, c, v, n: talib.LINEARREG_SLOPE(np.log(c), n))
def trend_slope(b, n):
    """Least-squares slope of log(close) on time over the last n bars (log return per bar):
    sum_k w_k log(close_{t-n+1+k}), w_k = (k - (n-1)/2) / sum_j (j - (n-1)/2)^2."""
    return window("dot", log(b.close), n, _slope_weights(n))
