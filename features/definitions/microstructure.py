"""Market microstructure estimated from daily bars: illiquidity, effective spreads, where the close
sits in the bar, range and overnight-gap statistics, volume profile."""
from __future__ import annotations

import math

from features.formulas import (close_location, equal, exp, lag, log, maximum, minimum, pct_change, rcorr, rcov,
                               rmean, rstd, rsum, rvar, rzscore, safe_ratio, sign, sqrt, typical_price, window,
                               returns)
from features.registry import feature

DOLLARS = 1e6  # Amihud's ratio is quoted per million of traded value


@feature("amihud_{n}", group="microstructure", grid={"n": (5, 20, 60)})
def amihud(b, n):
    """mean(|return| / (close * volume)) over n bars, per $1M traded: Amihud (2002) illiquidity."""
    return rmean(abs(pct_change(b.close)) / (b.close * b.volume / DOLLARS), n)


@feature("roll_spread_{n}", group="microstructure", grid={"n": (20, 60)})
def roll_spread(b, n):
    """2 sqrt(max(-cov(r_t, r_{t-1}), 0)) over n bars: Roll's (1984) effective spread, as a
    fraction of price, from the negative autocovariance of returns."""
    r = pct_change(b.close)
    return 2 * sqrt(maximum(-rcov(r, lag(r, 1), n), 0.0))


def _corwin_schultz(b):
    """One two-bar estimate of Corwin & Schultz (2012), negative estimates set to 0."""
    hl, hl_prev = log(b.high / b.low), log(lag(b.high, 1) / lag(b.low, 1))
    beta = hl * hl + hl_prev * hl_prev
    wide = log(maximum(b.high, lag(b.high, 1)) / minimum(b.low, lag(b.low, 1)))
    gamma = wide * wide
    c = 3 - 2 * math.sqrt(2)
    alpha = (sqrt(2 * beta) - sqrt(beta)) / c - sqrt(gamma / c)
    return maximum(2 * (exp(alpha) - 1) / (1 + exp(alpha)), 0.0)


@feature("cs_spread_{n}", group="microstructure", grid={"n": (20, 60)})
def corwin_schultz(b, n):
    """mean over n bars of the Corwin-Schultz spread S = 2 (e^a - 1) / (1 + e^a),
    a = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2)),
    beta = ln(H_t/L_t)^2 + ln(H_{t-1}/L_{t-1})^2, gamma = ln(max(H_t, H_{t-1}) / min(L_t, L_{t-1}))^2,
    negative estimates set to 0 (Corwin & Schultz 2012)."""
    return rmean(_corwin_schultz(b), n)


@feature("clv", group="microstructure")
def clv(b):
    """((close - low) - (high - close)) / (high - low): close location value in [-1, 1]."""
    return close_location(b)


@feature("clv_mean_{n}", group="microstructure", grid={"n": (5, 20)})
def clv_mean(b, n):
    """Mean close location value over n bars: persistent buying (> 0) or selling into the close."""
    return rmean(close_location(b), n)


@feature("range", group="microstructure")
def bar_range(b):
    """(high - low) / close: the bar's range."""
    return (b.high - b.low) / b.close


@feature("range_mean_{n}", group="microstructure", grid={"n": (5, 20)})
def range_mean(b, n):
    """Mean of (high - low) / close over n bars."""
    return rmean((b.high - b.low) / b.close, n)


@feature("range_z_{n}", group="microstructure", grid={"n": (20,)})
def range_zscore(b, n):
    """z-score of today's range (high - low) / close against the last n bars."""
    return rzscore((b.high - b.low) / b.close, n)


def _overnight(b):
    return b.open / lag(b.close, 1) - 1


@feature("gap_mean_{n}", group="microstructure", grid={"n": (5, 20)})
def gap_mean(b, n):
    """Mean overnight return open_t / close_{t-1} - 1 over n bars."""
    return rmean(_overnight(b), n)


@feature("gap_abs_mean_{n}", group="microstructure", grid={"n": (20,)})
def gap_abs_mean(b, n):
    """Mean |open_t / close_{t-1} - 1| over n bars: typical overnight move."""
    return rmean(abs(_overnight(b)), n)


@feature("gap_std_{n}", group="microstructure", grid={"n": (20,)})
def gap_std(b, n):
    """Standard deviation of the overnight return over n bars."""
    return rstd(_overnight(b), n)


@feature("gap_up_share_{n}", group="microstructure", grid={"n": (20,)})
def gap_up_share(b, n):
    """Share of the last n bars that opened above the previous close."""
    return rmean(_overnight(b) > 0, n)


@feature("intraday_ret", group="microstructure")
def intraday_return(b):
    """close / open - 1: the open-to-close return."""
    return b.close / b.open - 1


@feature("intraday_ret_mean_{n}", group="microstructure", grid={"n": (5, 20)})
def intraday_return_mean(b, n):
    """Mean open-to-close return over n bars."""
    return rmean(b.close / b.open - 1, n)


@feature("overnight_share_{n}", group="microstructure", grid={"n": (20,)})
def overnight_share(b, n):
    """sum |overnight log return| / (sum |overnight| + sum |open-to-close log return|) over n bars:
    how much of the movement happens while the market is closed."""
    night, day = rsum(abs(log(b.open / lag(b.close, 1))), n), rsum(abs(log(b.close / b.open)), n)
    return night / (night + day)


@feature("upper_shadow", group="microstructure")
def upper_shadow(b):
    """(high - max(open, close)) / (high - low): the upper wick's share of the range (0 when flat)."""
    return safe_ratio(b.high - maximum(b.open, b.close), b.high - b.low, 0.0)


@feature("lower_shadow", group="microstructure")
def lower_shadow(b):
    """(min(open, close) - low) / (high - low): the lower wick's share of the range."""
    return safe_ratio(minimum(b.open, b.close) - b.low, b.high - b.low, 0.0)


@feature("body_ratio", group="microstructure")
def body_ratio(b):
    """|close - open| / (high - low): the candle body's share of the range."""
    return safe_ratio(abs(b.close - b.open), b.high - b.low, 0.0)


@feature("vp_pos_{n}", group="microstructure", grid={"n": (20, 60)})
def volume_profile_position(b, n):
    """Share of the last n bars' volume traded at a typical price (H + L + C) / 3 at or below
    today's close: where the close sits in the recent volume profile (0 below all, 1 above all)."""
    return window("volume_below", typical_price(b), n, None, b.volume, b.close)


@feature("kyle_lambda_{n}", group="microstructure", grid={"n": (20,)})
def kyle_lambda(b, n):
    """cov(r, s) / var(s) over n bars, s = sign(r) sqrt(close * volume / 1e6): the price impact of
    signed order flow (Kyle 1985, as estimated from bars by Hasbrouck 2009), per sqrt($1M)."""
    r = pct_change(b.close)
    flow = sign(r) * sqrt(b.close * b.volume / DOLLARS)
    return rcov(r, flow, n) / rvar(flow, n)


@feature("zero_ret_share_{n}", group="microstructure", grid={"n": (20,)})
def zero_return_share(b, n):
    """Share of the last n bars with an unchanged close (Lesmond et al. 1999 illiquidity)."""
    return rmean(equal(b.close, lag(b.close, 1)), n)


@feature("variance_ratio_{q}_{n}", group="microstructure", grid={"q": (5,), "n": (60,)})
def variance_ratio(b, q, n):
    """var(q-bar log returns) / (q var(1-bar log returns)) over n bars (Lo & MacKinlay 1988):
    below 1 mean reversion, above 1 trending."""
    return rvar(log(b.close / lag(b.close, q)), n) / (q * rvar(returns(b), n))


@feature("ret_autocorr_{n}", group="microstructure", grid={"n": (20, 60)})
def return_autocorrelation(b, n):
    """corr(r_t, r_{t-1}) over n bars, r the one-bar log return."""
    r = returns(b)
    return rcorr(r, lag(r, 1), n)
