"""Volatility: realised volatility of returns and range-based estimators, per bar (not annualised)."""
from __future__ import annotations

import math

from features.formulas import lag, log, maximum, minimum, rmean, rstd, rsum, rvar, sqrt, returns
from features.registry import feature

WINDOWS = (10, 20, 60)


@feature("rv_{n}", group="volatility", grid={"n": (5, 10, 20, 60, 120)})
def realised_volatility(b, n):
    """Sample standard deviation of one-bar log returns over n bars."""
    return rstd(returns(b), n)


@feature("parkinson_{n}", group="volatility", grid={"n": WINDOWS})
def parkinson(b, n):
    """sqrt(mean(ln(high / low)^2) / (4 ln 2)) over n bars (Parkinson 1980)."""
    hl = log(b.high / b.low)
    return sqrt(rmean(hl * hl, n) / (4 * math.log(2)))


@feature("garman_klass_{n}", group="volatility", grid={"n": WINDOWS})
def garman_klass(b, n):
    """sqrt(mean(0.5 ln(high / low)^2 - (2 ln 2 - 1) ln(close / open)^2)) over n bars
    (Garman & Klass 1980)."""
    hl, co = log(b.high / b.low), log(b.close / b.open)
    return sqrt(rmean(0.5 * hl * hl - (2 * math.log(2) - 1) * co * co, n))


def _rogers_satchell(b):
    return log(b.high / b.close) * log(b.high / b.open) + log(b.low / b.close) * log(b.low / b.open)


@feature("rogers_satchell_{n}", group="volatility", grid={"n": (20,)})
def rogers_satchell(b, n):
    """sqrt(mean(ln(H/C) ln(H/O) + ln(L/C) ln(L/O))) over n bars (Rogers & Satchell 1991)."""
    return sqrt(rmean(_rogers_satchell(b), n))


@feature("yang_zhang_{n}", group="volatility", grid={"n": WINDOWS})
def yang_zhang(b, n):
    """sqrt(var(overnight) + k var(open-to-close) + (1 - k) RS), overnight = ln(open / prev close),
    open-to-close = ln(close / open), RS the Rogers-Satchell mean, k = 0.34 / (1.34 + (n+1)/(n-1))
    (Yang & Zhang 2000)."""
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    overnight, intraday = log(b.open / lag(b.close, 1)), log(b.close / b.open)
    return sqrt(rvar(overnight, n) + k * rvar(intraday, n) + (1 - k) * rmean(_rogers_satchell(b), n))


@feature("vol_ratio_{pair[0]}_{pair[1]}", group="volatility", grid={"pair": ((5, 20), (20, 60))})
def volatility_ratio(b, pair):
    """rv_fast / rv_slow: whether volatility is expanding (> 1) or contracting."""
    fast, slow = pair
    return rstd(returns(b), fast) / rstd(returns(b), slow)


@feature("downside_vol_{n}", group="volatility", grid={"n": (20,)})
def downside_volatility(b, n):
    """sqrt(mean(min(r, 0)^2)) over n bars, r the one-bar log return (semi-deviation)."""
    down = minimum(returns(b), 0.0)
    return sqrt(rmean(down * down, n))


@feature("upside_vol_{n}", group="volatility", grid={"n": (20,)})
def upside_volatility(b, n):
    """sqrt(mean(max(r, 0)^2)) over n bars."""
    up = maximum(returns(b), 0.0)
    return sqrt(rmean(up * up, n))


def _moments(r, n):
    r2 = r * r
    m1, m2, m3, m4 = (rsum(p, n) / n for p in (r, r2, r2 * r, r2 * r2))
    var = m2 - m1 * m1
    return m1, m2, m3, m4, var


@feature("skew_{n}", group="volatility", grid={"n": (60,)})
def skewness(b, n):
    """Sample skewness of one-bar log returns over n bars: E[(r - mu)^3] / sigma^3 (population moments)."""
    m1, m2, m3, m4, var = _moments(returns(b), n)
    return (m3 - 3 * m1 * m2 + 2 * m1 * m1 * m1) / (var * sqrt(var))


@feature("kurt_{n}", group="volatility", grid={"n": (60,)})
def kurtosis(b, n):
    """Excess kurtosis of one-bar log returns over n bars: E[(r - mu)^4] / sigma^4 - 3."""
    m1, m2, m3, m4, var = _moments(returns(b), n)
    return (m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 * m1 * m1 * m1) / (var * var) - 3
