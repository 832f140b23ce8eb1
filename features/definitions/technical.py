"""Technical indicators, defined as TA-Lib defines them (each is checked against TA-Lib)."""
from __future__ import annotations

import talib

from features.formulas import (adx, atr, diff, directional_indicators, ema, lag, maximum, minimum, pct_change,
                               rmax, rmean, rmin, rsi, rstd, rsum, safe_ratio, typical_price, window)
from features.registry import feature

MACD = {"fast": (12,), "slow": (26,), "signal": (9,)}


def _macd(b, fast, slow, signal):
    """MACD line and signal as TA-Lib computes them (the fast EMA seeded at the slow one's start)."""
    line = ema(b.close, fast, skip=slow - fast) - ema(b.close, slow)
    return line, ema(line, signal)


@feature("rsi_{n}", group="technical", grid={"n": (2, 7, 14, 21, 30)},
         oracle=lambda o, h, l, c, v, n: talib.RSI(c, n))
def rsi_(b, n):
    """100 * avg gain / (avg gain + avg loss) of close changes, Wilder-smoothed over n bars
    (Wilder 1978; TA-Lib RSI). 50 when nothing moved (TA-Lib: 0)."""
    return rsi(b.close, n)


@feature("macd_{fast}_{slow}_{signal}", group="technical", grid=MACD,
         oracle=lambda o, h, l, c, v, fast, slow, signal: talib.MACD(c, fast, slow, signal)[0])
def macd_line(b, fast, slow, signal):
    """EMA(close, fast) - EMA(close, slow) (Appel; TA-Lib MACD)."""
    return _macd(b, fast, slow, signal)[0]


@feature("macd_signal_{fast}_{slow}_{signal}", group="technical", grid=MACD,
         oracle=lambda o, h, l, c, v, fast, slow, signal: talib.MACD(c, fast, slow, signal)[1])
def macd_signal(b, fast, slow, signal):
    """EMA(MACD line, signal)."""
    return _macd(b, fast, slow, signal)[1]


@feature("macd_hist_{fast}_{slow}_{signal}", group="technical", grid=MACD,
         oracle=lambda o, h, l, c, v, fast, slow, signal: talib.MACD(c, fast, slow, signal)[2])
def macd_hist(b, fast, slow, signal):
    """MACD line - signal line."""
    line, sig = _macd(b, fast, slow, signal)
    return line - sig


@feature("macd_norm_{fast}_{slow}", group="technical", grid={"fast": (12,), "slow": (26,)})
def macd_normalised(b, fast, slow):
    """(EMA(close, fast) - EMA(close, slow)) / close: the MACD line in units of price."""
    return _macd(b, fast, slow, 9)[0] / b.close


@feature("macd_hist_norm_{fast}_{slow}_{signal}", group="technical", grid=MACD)
def macd_hist_normalised(b, fast, slow, signal):
    """MACD histogram / close."""
    line, sig = _macd(b, fast, slow, signal)
    return (line - sig) / b.close


@feature("ppo_{fast}_{slow}", group="technical", grid={"fast": (12,), "slow": (26,)},
         oracle=lambda o, h, l, c, v, fast, slow: talib.PPO(c, fast, slow, matype=1))
def ppo(b, fast, slow):
    """100 * (EMA(close, fast) - EMA(close, slow)) / EMA(close, slow): percentage price oscillator."""
    slow_ema = ema(b.close, slow)
    return 100 * (ema(b.close, fast, skip=slow - fast) - slow_ema) / slow_ema


def _bands(b, n, k):
    middle = rmean(b.close, n)
    width = k * rstd(b.close, n, ddof=0)
    return middle + width, middle, middle - width


@feature("bb_upper_{n}_{k}", group="technical", grid={"n": (20,), "k": (2,)},
         oracle=lambda o, h, l, c, v, n, k: talib.BBANDS(c, n, k, k)[0])
def bb_upper(b, n, k):
    """SMA(close, n) + k * std(close, n): upper Bollinger band (population std, as TA-Lib)."""
    return _bands(b, n, k)[0]


@feature("bb_middle_{n}_{k}", group="technical", grid={"n": (20,), "k": (2,)},
         oracle=lambda o, h, l, c, v, n, k: talib.BBANDS(c, n, k, k)[1])
def bb_middle(b, n, k):
    """SMA(close, n): middle Bollinger band."""
    return _bands(b, n, k)[1]


@feature("bb_lower_{n}_{k}", group="technical", grid={"n": (20,), "k": (2,)},
         oracle=lambda o, h, l, c, v, n, k: talib.BBANDS(c, n, k, k)[2])
def bb_lower(b, n, k):
    """SMA(close, n) - k * std(close, n): lower Bollinger band."""
    return _bands(b, n, k)[2]


@feature("bb_width_{n}_{k}", group="technical", grid={"n": (10, 20, 50), "k": (2,)})
def bb_width(b, n, k):
    """(upper - lower) / middle: Bollinger band width (Bollinger 2001)."""
    upper, middle, lower = _bands(b, n, k)
    return (upper - lower) / middle


@feature("bb_pos_{n}_{k}", group="technical", grid={"n": (10, 20, 50), "k": (2,)})
def bb_position(b, n, k):
    """(close - lower) / (upper - lower): position in the Bollinger band (%b)."""
    upper, middle, lower = _bands(b, n, k)
    return (b.close - lower) / (upper - lower)


def _stoch_k(b, n):
    low = rmin(b.low, n)
    return safe_ratio(100 * (b.close - low), rmax(b.high, n) - low, 50.0)


@feature("stoch_k_{n}_{k}_{d}", group="technical", grid={"n": (5, 14), "k": (3,), "d": (3,)},
         oracle=lambda o, h, l, c, v, n, k, d: talib.STOCH(h, l, c, n, k, 0, d, 0)[0])
def stoch_slow_k(b, n, k, d):
    """SMA(fast %K, k), fast %K = 100 (close - lowest low_n) / (highest high_n - lowest low_n)
    (Lane; TA-Lib STOCH slow %K; 50 on a flat window, TA-Lib 0)."""
    return rmean(_stoch_k(b, n), k)


@feature("stoch_d_{n}_{k}_{d}", group="technical", grid={"n": (5, 14), "k": (3,), "d": (3,)},
         oracle=lambda o, h, l, c, v, n, k, d: talib.STOCH(h, l, c, n, k, 0, d, 0)[1])
def stoch_slow_d(b, n, k, d):
    """SMA(slow %K, d): slow %D."""
    return rmean(rmean(_stoch_k(b, n), k), d)


@feature("stochf_k_{n}", group="technical", grid={"n": (14,)},
         oracle=lambda o, h, l, c, v, n: talib.STOCHF(h, l, c, n, 3, 0)[0])
def stoch_fast_k(b, n):
    """100 (close - lowest low_n) / (highest high_n - lowest low_n): fast %K."""
    return _stoch_k(b, n)


@feature("stochrsi_{n}", group="technical", grid={"n": (14,)},
         oracle=lambda o, h, l, c, v, n: talib.STOCHRSI(c, n, n, 3, 0)[0])
def stoch_rsi(b, n):
    """100 (RSI - min RSI_n) / (max RSI_n - min RSI_n): stochastic of RSI(n) over n bars
    (Chande & Kroll 1994; TA-Lib STOCHRSI fast %K)."""
    r = rsi(b.close, n)
    low = rmin(r, n)
    return safe_ratio(100 * (r - low), rmax(r, n) - low, 50.0)


@feature("adx_{n}", group="technical", grid={"n": (7, 14)}, oracle=lambda o, h, l, c, v, n: talib.ADX(h, l, c, n))
def adx_(b, n):
    """Wilder's average directional index: Wilder-smoothed DX = 100 |+DI - -DI| / (+DI + -DI)."""
    return adx(b, n)


@feature("adxr_{n}", group="technical", grid={"n": (14,)}, oracle=lambda o, h, l, c, v, n: talib.ADXR(h, l, c, n))
def adxr(b, n):
    """(ADX_t + ADX_{t-n+1}) / 2: average directional movement rating (TA-Lib ADXR)."""
    a = adx(b, n)
    return (a + lag(a, n - 1)) / 2


@feature("plus_di_{n}", group="technical", grid={"n": (7, 14)},
         oracle=lambda o, h, l, c, v, n: talib.PLUS_DI(h, l, c, n))
def plus_di(b, n):
    """+DI = 100 * Wilder sum of +DM / Wilder sum of true range."""
    return directional_indicators(b, n)[0]


@feature("minus_di_{n}", group="technical", grid={"n": (7, 14)},
         oracle=lambda o, h, l, c, v, n: talib.MINUS_DI(h, l, c, n))
def minus_di(b, n):
    """-DI = 100 * Wilder sum of -DM / Wilder sum of true range."""
    return directional_indicators(b, n)[1]


@feature("dx_{n}", group="technical", grid={"n": (14,)}, oracle=lambda o, h, l, c, v, n: talib.DX(h, l, c, n))
def dx(b, n):
    """100 |+DI - -DI| / (+DI + -DI): directional movement index."""
    plus, minus = directional_indicators(b, n)
    return safe_ratio(100 * abs(plus - minus), plus + minus, 0.0)


@feature("cci_{n}", group="technical", grid={"n": (14, 20, 50)}, oracle=lambda o, h, l, c, v, n: talib.CCI(h, l, c, n))
def cci(b, n):
    """(TP - SMA(TP, n)) / (0.015 * mean |TP - SMA(TP, n)|), TP = (high + low + close) / 3
    (Lambert 1980; TA-Lib CCI; 0 on a flat window)."""
    tp = typical_price(b)
    return safe_ratio(tp - rmean(tp, n), 0.015 * window("mean_abs_dev", tp, n), 0.0)


@feature("willr_{n}", group="technical", grid={"n": (14, 28)}, oracle=lambda o, h, l, c, v, n: talib.WILLR(h, l, c, n))
def williams_r(b, n):
    """-100 (highest high_n - close) / (highest high_n - lowest low_n): Williams %R (TA-Lib WILLR)."""
    high = rmax(b.high, n)
    return safe_ratio(-100 * (high - b.close), high - rmin(b.low, n), 0.0)


@feature("atr_{n}", group="technical", grid={"n": (7, 14, 21)}, oracle=lambda o, h, l, c, v, n: talib.ATR(h, l, c, n))
def atr_(b, n):
    """Wilder-smoothed true range, TR = max(high, prev close) - min(low, prev close) (TA-Lib ATR)."""
    return atr(b, n)


@feature("natr_{n}", group="technical", grid={"n": (7, 14, 21)}, oracle=lambda o, h, l, c, v, n: talib.NATR(h, l, c, n))
def natr(b, n):
    """100 * ATR(n) / close: normalised average true range."""
    return 100 * atr(b, n) / b.close


@feature("aroon_up_{n}", group="technical", grid={"n": (14, 25)},
         oracle=lambda o, h, l, c, v, n: talib.AROON(h, l, n)[1])
def aroon_up(b, n):
    """100 (n - bars since the highest high of the last n + 1 bars) / n (Chande 1995; TA-Lib AROON,
    the most recent high on ties)."""
    return 100 * (n - window("bars_since_max", b.high, n + 1)) / n


@feature("aroon_down_{n}", group="technical", grid={"n": (14, 25)},
         oracle=lambda o, h, l, c, v, n: talib.AROON(h, l, n)[0])
def aroon_down(b, n):
    """100 (n - bars since the lowest low of the last n + 1 bars) / n."""
    return 100 * (n - window("bars_since_min", b.low, n + 1)) / n


@feature("aroon_osc_{n}", group="technical", grid={"n": (14, 25)},
         oracle=lambda o, h, l, c, v, n: talib.AROONOSC(h, l, n))
def aroon_oscillator(b, n):
    """Aroon up - Aroon down."""
    return 100 * (window("bars_since_min", b.low, n + 1) - window("bars_since_max", b.high, n + 1)) / n


@feature("roc_{n}", group="technical", grid={"n": (12, 25)}, oracle=lambda o, h, l, c, v, n: talib.ROC(c, n))
def rate_of_change(b, n):
    """100 (close / close_{t-n} - 1): rate of change (TA-Lib ROC)."""
    return 100 * pct_change(b.close, n)


@feature("mom_{n}", group="technical", grid={"n": (10,)}, oracle=lambda o, h, l, c, v, n: talib.MOM(c, n))
def momentum(b, n):
    """close - close_{t-n}: momentum in price units (TA-Lib MOM)."""
    return diff(b.close, n)


@feature("trix_{n}", group="technical", grid={"n": (15,)}, oracle=lambda o, h, l, c, v, n: talib.TRIX(c, n))
def trix(b, n):
    """100 (E_t / E_{t-1} - 1), E = EMA(EMA(EMA(close, n), n), n): triple-smoothed rate of change
    (Hutson 1983; TA-Lib TRIX)."""
    return 100 * pct_change(ema(ema(ema(b.close, n), n), n))


@feature("ultosc_{a}_{b_}_{c}", group="technical", grid={"a": (7,), "b_": (14,), "c": (28,)},
         oracle=lambda o, h, l, c_, v, a, b_, c: talib.ULTOSC(h, l, c_, a, b_, c))
def ultimate_oscillator(b, a, b_, c):
    """100 (4 A_a + 2 A_b + A_c) / 7, A_n = sum(close - min(low, prev close), n) / sum(true range, n)
    (Williams 1985; TA-Lib ULTOSC)."""
    prev = lag(b.close, 1)
    pressure, tr = b.close - minimum(b.low, prev), maximum(b.high, prev) - minimum(b.low, prev)
    avg = [safe_ratio(rsum(pressure, n), rsum(tr, n), 0.0) for n in (a, b_, c)]
    return 100 * (4 * avg[0] + 2 * avg[1] + avg[2]) / 7


@feature("bop", group="technical", oracle=lambda o, h, l, c, v: talib.BOP(o, h, l, c))
def balance_of_power(b):
    """(close - open) / (high - low): balance of power (TA-Lib BOP; 0 on a bar with no range)."""
    return safe_ratio(b.close - b.open, b.high - b.low, 0.0)


@feature("keltner_pos_{n}", group="technical", grid={"n": (20,)})
def keltner_position(b, n):
    """(close - EMA(close, n)) / (2 ATR(10)): position in the Keltner channel (-1 lower, +1 upper)."""
    return (b.close - ema(b.close, n)) / (2 * atr(b, 10))


@feature("donchian_width_{n}", group="technical", grid={"n": (20,)})
def donchian_width(b, n):
    """(highest high_n - lowest low_n) / close: Donchian channel width."""
    return (rmax(b.high, n) - rmin(b.low, n)) / b.close
