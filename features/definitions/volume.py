"""Volume features: relative volume and its trend, on-balance volume, accumulation/distribution,
money flow, VWAP distance, price-volume correlation."""
from __future__ import annotations

import numpy as np
import talib

from features.formulas import (close_location, diff, ema, log, pct_change, rcorr, rmean, rsum, running_total,
                               rzscore, safe_ratio, sign, typical_price, where)
from features.graph import settle_bars
from features.registry import feature


def _talib_change(line, n):
    """line_t - line_{t-n} of a TA-Lib running total."""
    out = np.full_like(line, np.nan)
    out[n:] = line[n:] - line[:-n]
    return out


@feature("rvol_{n}", group="volume", grid={"n": (5, 20, 60)})
def relative_volume(b, n):
    """volume / SMA(volume, n): today's volume against its recent average."""
    return b.volume / rmean(b.volume, n)


@feature("vol_trend_{pair[0]}_{pair[1]}", group="volume", grid={"pair": ((5, 20), (20, 60))})
def volume_trend(b, pair):
    """SMA(volume, fast) / SMA(volume, slow) - 1: rising or falling participation."""
    fast, slow = pair
    return rmean(b.volume, fast) / rmean(b.volume, slow) - 1


@feature("vol_z_{n}", group="volume", grid={"n": (20, 60)})
def volume_zscore(b, n):
    """z-score of log(1 + volume) over n bars: (x - mean) / std."""
    return rzscore(log(1 + b.volume), n)


@feature("obv_ratio_{n}", group="volume", grid={"n": (10, 20, 60)},
         oracle=lambda o, h, l, c, v, n: _talib_change(talib.OBV(c, v), n) / talib.SUM(v, n))
def obv_ratio(b, n):
    """(OBV_t - OBV_{t-n}) / sum(volume, n), in [-1, 1]: on-balance volume's n-bar change per unit
    of volume (Granville 1963); OBV adds the volume on up closes and subtracts it on down closes."""
    return rsum(sign(diff(b.close)) * b.volume, n) / rsum(b.volume, n)


@feature("cmf_{n}", group="volume", grid={"n": (10, 20)},
         oracle=lambda o, h, l, c, v, n: _talib_change(talib.AD(h, l, c, v), n) / talib.SUM(v, n))
def chaikin_money_flow(b, n):
    """(AD_t - AD_{t-n}) / sum(volume, n) = sum(CLV * volume, n) / sum(volume, n), with
    CLV = ((close - low) - (high - close)) / (high - low): Chaikin money flow, the n-bar change of
    the accumulation/distribution line per unit of volume."""
    return rsum(close_location(b) * b.volume, n) / rsum(b.volume, n)


@feature("adosc_3_10", group="volume", warmup=lambda tolerance: 9 + settle_bars(1 - 2 / 11, tolerance),
         oracle=lambda o, h, l, c, v: talib.ADOSC(h, l, c, v, 3, 10) / talib.SMA(v, 10))
def chaikin_oscillator(b):
    """(EMA(AD, 3) - EMA(AD, 10)) / SMA(volume, 10): Chaikin's oscillator of the
    accumulation/distribution line (TA-Lib ADOSC: both EMAs seeded with the first AD value),
    per unit of average volume. The AD line is a running total, but the difference of two EMAs of
    it does not depend on where it started; warm-up: the 10-bar EMA's seed weight below the
    tolerance (declared, checked by the warm-up test)."""
    ad = running_total(close_location(b) * b.volume)
    return (ema(ad, 3, seed_bars=1) - ema(ad, 10, seed_bars=1)) / rmean(b.volume, 10)


@feature("mfi_{n}", group="volume", grid={"n": (14, 28)},
         oracle=lambda o, h, l, c, v, n: talib.MFI(h, l, c, v, n))
def money_flow_index(b, n):
    """100 * positive flow / (positive + negative flow) over n bars, flow = typical price * volume,
    positive when the typical price rose (Quong & Soudack 1989; TA-Lib MFI)."""
    tp = typical_price(b)
    flow, change = tp * b.volume, diff(tp)
    up, down = rsum(where(change > 0, flow, 0.0), n), rsum(where(change < 0, flow, 0.0), n)
    return safe_ratio(100 * up, up + down, 50.0)


@feature("force_{n}", group="volume", grid={"n": (13,)})
def force_index(b, n):
    """EMA(return * volume / SMA(volume, 50), n): Elder's force index, volume-normalised."""
    return ema(pct_change(b.close) * b.volume / rmean(b.volume, 50), n)


@feature("vwap_dist_{n}", group="volume", grid={"n": (10, 20)})
def vwap_distance(b, n):
    """close / VWAP_n - 1, VWAP_n = sum(typical price * volume, n) / sum(volume, n)."""
    return b.close * rsum(b.volume, n) / rsum(typical_price(b) * b.volume, n) - 1


@feature("up_volume_{n}", group="volume", grid={"n": (10, 20)})
def up_volume_share(b, n):
    """Share of the last n bars' volume traded on up closes."""
    return rsum(where(diff(b.close) > 0, b.volume, 0.0), n) / rsum(b.volume, n)


@feature("pv_corr_{n}", group="volume", grid={"n": (10, 20, 60)})
def price_volume_correlation(b, n):
    """corr(one-bar return, one-bar change of log volume) over n bars."""
    return rcorr(pct_change(b.close), diff(log(1 + b.volume)), n)


@feature("dollar_volume_{n}", group="volume", grid={"n": (20,)})
def dollar_volume(b, n):
    """log(SMA(close * volume, n)): average traded value (size and liquidity)."""
    return log(rmean(b.close * b.volume, n))
