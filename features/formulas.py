"""Building blocks that feature definitions are written with: each returns a graph node.

Every helper is a composition of the primitives in :mod:`features.graph`, so it has a batch and a
streaming evaluation for free. Conventions follow TA-Lib where TA-Lib has the function (seeding of
smoothers, population standard deviation in Bollinger bands, windows that include the current bar).
"""
from __future__ import annotations

from dataclasses import dataclass

from features.graph import (CumSum, Lag, MARKET, Node, RollingSum, Smooth, SYMBOL, Window, CrossSection,
                            apply, source, to_panel, warm)


@dataclass(frozen=True)
class Bars:
    """The inputs a definition sees: one symbol's bars (``SYMBOL`` scope) and the context's extras."""

    open: Node
    high: Node
    low: Node
    close: Node
    volume: Node

    @classmethod
    def make(cls) -> "Bars":
        return cls(*(source(name) for name in ("open", "high", "low", "close", "volume")))

    def calendar(self, field: str) -> Node:
        """A field of the bar's timestamp (see ``features.sources.CALENDAR_FIELDS``)."""
        return source(f"calendar:{field}", MARKET)

    def macro(self, name: str) -> Node:
        """A macro series' latest value known at the bar's close."""
        return source(f"macro:{name}", MARKET)

    def news(self, field: str) -> Node:
        """Per-bar aggregate of the symbol's headlines published after its previous bar's close and
        at or before this bar's close (NaN on the symbol's first bar, whose interval has no start)."""
        return source(f"news:{field}", SYMBOL, warmup=1)


# ---- elementwise ---------------------------------------------------------------------------------
def log(x): return apply("log", x)
def exp(x): return apply("exp", x)
def sqrt(x): return apply("sqrt", x)
def sign(x): return apply("sign", x)
def maximum(a, b): return apply("max2", a, b)
def minimum(a, b): return apply("min2", a, b)
def where(cond, a, b): return apply("where", cond, a, b)
def fillna(x, value): return apply("fillna", x, value)
def equal(a, b): return apply("eq", a, b)
def above(a, b):
    """a > b, ties within rounding counting as equal (use against rolling sums and averages)."""
    return apply("above", a, b)
def safe_ratio(a, b, fill):
    """a / b, ``fill`` where b is 0 (TA-Lib's convention for flat windows); NaN stays NaN."""
    return where(equal(b, 0.0), fill, a / b)


# ---- time series ---------------------------------------------------------------------------------
def lag(x: Node, k: int) -> Node:
    return Node(Lag(k), (x,), x.scope) if k else x


def diff(x: Node, k: int = 1) -> Node:
    return x - lag(x, k)


def pct_change(x: Node, k: int = 1) -> Node:
    return x / lag(x, k) - 1


def log_return(x: Node, k: int = 1) -> Node:
    return log(x / lag(x, k))


def running_total(x: Node) -> Node:
    """Sum of x since the data began: start-dependent, only differences of it are usable."""
    return Node(CumSum("sum"), (x,), x.scope)


def rsum(x: Node, n: int) -> Node:
    """Sum over the last n bars (NaN unless all n are valid)."""
    total, count = running_total(x), Node(CumSum("count"), (x,), x.scope)
    return Node(RollingSum(n), (total, count), x.scope)


def rmean(x: Node, n: int) -> Node:
    """Simple moving average over n bars (TA-Lib SMA)."""
    return rsum(x, n) / n


def rvar(x: Node, n: int, ddof: int = 1) -> Node:
    """Rolling variance from running sums: (sum x^2 - (sum x)^2 / n) / (n - ddof), floored at 0."""
    s1 = rsum(x, n)
    return maximum((rsum(x * x, n) - s1 * s1 / n) / (n - ddof), 0.0)


def rstd(x: Node, n: int, ddof: int = 1) -> Node:
    return sqrt(rvar(x, n, ddof))


def rcov(x: Node, y: Node, n: int, ddof: int = 1) -> Node:
    return (rsum(x * y, n) - rsum(x, n) * rsum(y, n) / n) / (n - ddof)


def rcorr(x: Node, y: Node, n: int) -> Node:
    return rcov(x, y, n) / sqrt(rvar(x, n) * rvar(y, n))


def rzscore(x: Node, n: int) -> Node:
    return (x - rmean(x, n)) / rstd(x, n)


def window(kind: str, x: Node, n: int, extra=None, *more: Node) -> Node:
    return Node(Window(kind, n, extra), (x, *more), x.scope)


def rmax(x: Node, n: int) -> Node: return window("max", x, n)
def rmin(x: Node, n: int) -> Node: return window("min", x, n)


def smooth(x: Node, a: float, b: float, m: int, div: float, skip: int = 0) -> Node:
    return Node(Smooth(float(a), float(b), int(m), float(div), int(skip)), (x,), x.scope)


def ema(x: Node, n: int, skip: int = 0, seed_bars: int | None = None) -> Node:
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the SMA of its first n values
    (TA-Lib EMA), or of its first ``seed_bars`` (TA-Lib's ADOSC seeds with the first value).
    ``skip`` passes over that many first values (TA-Lib's MACD seeds its fast EMA at the slow
    EMA's first bar)."""
    a, m = 2.0 / (n + 1), seed_bars or n
    return smooth(x, a, 1.0 - a, m, m, skip)


def wilder(x: Node, n: int, skip: int = 0) -> Node:
    """Wilder's smoothing (alpha = 1 / n) seeded with the mean of the first n values (RSI, ATR, ADX)."""
    return smooth(x, 1.0 / n, 1.0 - 1.0 / n, n, n, skip)


def wilder_sum(x: Node, n: int) -> Node:
    """Wilder's running sum S_t = S_{t-1} * (1 - 1/n) + x_t, seeded with the sum of the first
    n - 1 values (TA-Lib's +DM, -DM and TR in ADX)."""
    return smooth(x, 1.0, 1.0 - 1.0 / n, n - 1, 1.0)


# ---- price helpers -------------------------------------------------------------------------------
def true_range(b: Bars) -> Node:
    """max(high, previous close) - min(low, previous close) (NaN on the first bar, as TA-Lib TRANGE)."""
    prev = lag(b.close, 1)
    return maximum(b.high, prev) - minimum(b.low, prev)


def atr(b: Bars, n: int) -> Node:
    """Average true range: Wilder smoothing of the true range (TA-Lib ATR)."""
    return wilder(true_range(b), n)


def typical_price(b: Bars) -> Node:
    return (b.high + b.low + b.close) / 3


def close_location(b: Bars) -> Node:
    """((close - low) - (high - close)) / (high - low), 0 on a bar with no range (TA-Lib AD)."""
    return safe_ratio((b.close - b.low) - (b.high - b.close), b.high - b.low, 0.0)


def directional_movement(b: Bars) -> tuple[Node, Node]:
    """(+DM, -DM): the up move of the high if it beats the down move of the low, else 0 (TA-Lib)."""
    up, down = diff(b.high), lag(b.low, 1) - b.low
    plus = where((up > 0) * (up > down), up, 0.0)
    minus = where((down > 0) * (down > up), down, 0.0)
    return plus, minus


def directional_indicators(b: Bars, n: int) -> tuple[Node, Node]:
    """(+DI, -DI) = 100 * Wilder sums of +DM, -DM over the Wilder sum of the true range (0 when
    the true range is 0, as TA-Lib)."""
    plus, minus = directional_movement(b)
    tr = wilder_sum(true_range(b), n)
    return safe_ratio(100 * wilder_sum(plus, n), tr, 0.0), safe_ratio(100 * wilder_sum(minus, n), tr, 0.0)


def adx(b: Bars, n: int) -> Node:
    """Wilder's ADX: DX = 100 |+DI - -DI| / (+DI + -DI), smoothed; seeded like TA-Lib (from bar n)."""
    plus, minus = directional_indicators(b, n)
    dx = safe_ratio(100 * abs(plus - minus), plus + minus, 0.0)
    return wilder(dx, n, skip=1)


def rsi(x: Node, n: int) -> Node:
    """100 * avg gain / (avg gain + avg loss), Wilder-smoothed; 50 when the window is flat."""
    change = diff(x)
    gain, loss = wilder(maximum(change, 0.0), n), wilder(maximum(-change, 0.0), n)
    return safe_ratio(100 * gain, gain + loss, 50.0)


def returns(b: Bars) -> Node:
    """One-bar log return of the close."""
    return log_return(b.close)


# ---- universe helpers ----------------------------------------------------------------------------
def cs_rank(x: Node) -> Node:
    """Percentile rank (0..1) among the symbols with a value at this bar."""
    return Node(CrossSection("rank", ""), (to_panel(x),), "panel")


def cs_zscore(x: Node) -> Node:
    return Node(CrossSection("zscore", ""), (to_panel(x),), "panel")


def cs_normalise(x: Node, kind: str, warmup: int) -> Node:
    """x's cross-sectional percentile rank (``kind="rank"``: 0 lowest, 1 highest, ties averaged,
    0.5 alone) or z-score (``"zscore"``: (x - mean) / population std, 0 where the values have no
    spread) at each bar, among the symbols whose x is past its ``warmup`` (counted on x's clock) at
    that bar: a symbol still warming up takes no part in the others' values, and its own value is
    warm when x is. Values within rounding of each other (``features.graph.TIE`` x the bar's largest
    |value|) count as equal: see :class:`features.graph.CrossSection` (``rank_tol``, ``zscore_tol``)."""
    if kind not in ("rank", "zscore"):
        raise ValueError(f"unknown cross-sectional normalisation {kind!r}: 'rank' or 'zscore'")
    return Node(CrossSection(f"{kind}_tol", ""), (to_panel(warm(x, warmup)),), "panel")


def cs_mean(x: Node) -> Node:
    """Equal-weight mean over the symbols with a value at this bar (a market series)."""
    return Node(CrossSection("mean", ""), (to_panel(x),), MARKET)


def cs_std(x: Node) -> Node:
    return Node(CrossSection("std", ""), (to_panel(x),), MARKET)


def sector_mean(x: Node) -> Node:
    """Mean of x over the symbols of the same sector with a value at this bar."""
    return Node(CrossSection("group_mean", "sector"), (to_panel(x),), "panel")


def sector_rank(x: Node) -> Node:
    """Percentile rank of x within its sector at this bar."""
    return Node(CrossSection("group_rank", "sector"), (to_panel(x),), "panel")


def index_return(b: Bars) -> Node:
    """One-bar log return of the universe's equal-weight index: log(1 + mean simple return)."""
    return log(1 + cs_mean(pct_change(b.close)))
