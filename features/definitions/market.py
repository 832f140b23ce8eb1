"""Market regime: the universe's equal-weight index (trend, volatility, drawdown), breadth and
dispersion. One value per bar, the same for every symbol; warm-ups count calendar bars."""
from __future__ import annotations

from features.formulas import (above, cs_mean, cs_std, exp, index_return, pct_change, rcorr, returns, rmax, rmean,
                               rstd, rsum, running_total)
from features.registry import feature


@feature("mkt_ret_{n}", group="market", grid={"n": (1, 5, 20, 60)}, requires=("universe",))
def market_return(b, n):
    """exp(sum of the index's one-bar log returns over n bars) - 1: the equal-weight index's
    n-bar return (index return = mean simple return of the symbols at the bar)."""
    return exp(rsum(index_return(b), n)) - 1


@feature("mkt_trend_{n}", group="market", grid={"n": (50, 200)}, requires=("universe",),
         warmup=lambda tolerance, n: n)
def market_trend(b, n):
    """I_t / SMA(I, n) - 1 for the index level I = exp(running sum of index log returns). The level
    is a running total, but the ratio is scale-free, so it does not depend on where the data began
    (declared warm-up: n bars, checked by the warm-up test)."""
    level = exp(running_total(index_return(b)))
    return level / rmean(level, n) - 1


@feature("mkt_rv_{n}", group="market", grid={"n": (20, 60)}, requires=("universe",))
def market_volatility(b, n):
    """Standard deviation of the index's one-bar log returns over n bars."""
    return rstd(index_return(b), n)


@feature("mkt_drawdown_{n}", group="market", grid={"n": (252,)}, requires=("universe",),
         warmup=lambda tolerance, n: n)
def market_drawdown(b, n):
    """I_t / max(I over n bars) - 1: the index's drawdown from its n-bar high (scale-free, as above)."""
    level = exp(running_total(index_return(b)))
    return level / rmax(level, n) - 1


@feature("breadth_{n}", group="market", grid={"n": (20, 50, 200)}, requires=("universe",))
def breadth(b, n):
    """Share of the symbols with a value whose close is above their n-bar SMA."""
    return cs_mean(above(b.close, rmean(b.close, n)))


@feature("advance_share", group="market", requires=("universe",))
def advance_share(b):
    """Share of the symbols at this bar that closed up."""
    return cs_mean(pct_change(b.close) > 0)


@feature("dispersion_{n}", group="market", grid={"n": (1, 20)}, requires=("universe",))
def dispersion(b, n):
    """Cross-sectional standard deviation of the symbols' n-bar returns."""
    return cs_std(pct_change(b.close, n))


@feature("mkt_avg_corr_{n}", group="market", grid={"n": (20, 60)}, requires=("universe",))
def average_correlation(b, n):
    """Mean over symbols of corr(r_i, r_index) over n bars: how much the market moves as one."""
    return cs_mean(rcorr(returns(b), index_return(b), n))
