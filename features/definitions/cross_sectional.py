"""Cross-sectional features: each symbol against the other symbols of the run at the same bar
(ranks, z-scores, relative strength, beta and correlation to the equal-weight index, sector-relative
values). A symbol without a bar, or without a value yet, takes no part at that bar."""
from __future__ import annotations

from features.formulas import (cs_rank, cs_zscore, index_return, pct_change, rcorr, rcov, rmean, rsi,
                               rstd, rsum, rvar, sector_mean, sector_rank, sqrt, returns, maximum, rmax)
from features.registry import feature


@feature("cs_rank_ret_{n}", group="cross_sectional", grid={"n": (1, 5, 20, 60, 252)}, requires=("universe",))
def rank_return(b, n):
    """Percentile rank (0 lowest, 1 highest) of the n-bar return among the symbols at this bar."""
    return cs_rank(pct_change(b.close, n))


@feature("cs_z_ret_{n}", group="cross_sectional", grid={"n": (5, 20)}, requires=("universe",))
def zscore_return(b, n):
    """(r_i - mean r) / std r of the n-bar return across the symbols at this bar."""
    return cs_zscore(pct_change(b.close, n))


@feature("cs_rank_rv_{n}", group="cross_sectional", grid={"n": (20, 60)}, requires=("universe",))
def rank_volatility(b, n):
    """Percentile rank of n-bar realised volatility among the symbols at this bar."""
    return cs_rank(rstd(returns(b), n))


@feature("cs_rank_rvol_{n}", group="cross_sectional", grid={"n": (20,)}, requires=("universe",))
def rank_relative_volume(b, n):
    """Percentile rank of volume / SMA(volume, n) among the symbols at this bar."""
    return cs_rank(b.volume / rmean(b.volume, n))


@feature("cs_rank_dollar_volume_{n}", group="cross_sectional", grid={"n": (20,)}, requires=("universe",))
def rank_dollar_volume(b, n):
    """Percentile rank of the n-bar average traded value (close * volume)."""
    return cs_rank(rmean(b.close * b.volume, n))


@feature("cs_rank_rsi_{n}", group="cross_sectional", grid={"n": (14,)}, requires=("universe",))
def rank_rsi(b, n):
    """Percentile rank of RSI(n) among the symbols at this bar."""
    return cs_rank(rsi(b.close, n))


@feature("cs_rank_dist_high_{n}", group="cross_sectional", grid={"n": (252,)}, requires=("universe",))
def rank_distance_to_high(b, n):
    """Percentile rank of close / highest high of n bars - 1 (nearest to its 52-week high ranks 1)."""
    return cs_rank(b.close / rmax(b.high, n) - 1)


@feature("cs_rank_close_sma_{n}", group="cross_sectional", grid={"n": (50,)}, requires=("universe",))
def rank_trend(b, n):
    """Percentile rank of close / SMA(close, n) - 1."""
    return cs_rank(b.close / rmean(b.close, n) - 1)


@feature("cs_rank_amihud_{n}", group="cross_sectional", grid={"n": (20,)}, requires=("universe",))
def rank_illiquidity(b, n):
    """Percentile rank of Amihud illiquidity mean(|r| / (close * volume)) over n bars."""
    return cs_rank(rmean(abs(pct_change(b.close)) / (b.close * b.volume), n))


@feature("rel_strength_{n}", group="cross_sectional", grid={"n": (5, 20, 60, 120)}, requires=("universe",))
def relative_strength(b, n):
    """sum over the last n bars of (r_i - r_index), log returns, index = the universe's equal-weight
    index: the symbol's return in excess of the universe's."""
    return rsum(returns(b) - index_return(b), n)


@feature("beta_{n}", group="cross_sectional", grid={"n": (60, 120)}, requires=("universe",))
def beta(b, n):
    """cov(r_i, r_index) / var(r_index) over n bars of log returns."""
    index = index_return(b)
    return rcov(returns(b), index, n) / rvar(index, n)


@feature("corr_index_{n}", group="cross_sectional", grid={"n": (20, 60, 120)}, requires=("universe",))
def index_correlation(b, n):
    """corr(r_i, r_index) over n bars."""
    return rcorr(returns(b), index_return(b), n)


@feature("idio_vol_{n}", group="cross_sectional", grid={"n": (60,)}, requires=("universe",))
def idiosyncratic_volatility(b, n):
    """sqrt(var(r_i) - beta^2 var(r_index)) over n bars: volatility not explained by the index."""
    r, index = returns(b), index_return(b)
    var_index = rvar(index, n)
    beta_ = rcov(r, index, n) / var_index
    return sqrt(maximum(rvar(r, n) - beta_ * beta_ * var_index, 0.0))


@feature("sector_rel_ret_{n}", group="cross_sectional", grid={"n": (5, 20, 60)}, requires=("sectors",))
def sector_relative_return(b, n):
    """r_i - mean r over the symbols of the same sector at this bar (n-bar returns)."""
    r = pct_change(b.close, n)
    return r - sector_mean(r)


@feature("sector_rel_rv_{n}", group="cross_sectional", grid={"n": (20,)}, requires=("sectors",))
def sector_relative_volatility(b, n):
    """rv_i / mean rv over the same sector - 1 (n-bar realised volatility)."""
    rv = rstd(returns(b), n)
    return rv / sector_mean(rv) - 1


@feature("sector_rel_rvol_{n}", group="cross_sectional", grid={"n": (20,)}, requires=("sectors",))
def sector_relative_volume(b, n):
    """Relative volume (volume / SMA(volume, n)) minus its sector mean."""
    rvol = b.volume / rmean(b.volume, n)
    return rvol - sector_mean(rvol)


@feature("sector_rank_ret_{n}", group="cross_sectional", grid={"n": (20, 60)}, requires=("sectors",))
def sector_rank_return(b, n):
    """Percentile rank of the n-bar return within the symbol's sector."""
    return sector_rank(pct_change(b.close, n))
