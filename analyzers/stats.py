"""Performance statistics of a run, from its records. Pure: pandas, numpy, scipy, quantstats.

Return metrics come from quantstats (a maintained library) on daily returns of the equity curve
(intraday equity is sampled at each day's last bar first), so daily and intraday runs annualise the
same way (252 trading days). Trade metrics are counts and means over ``trades.csv`` rows, so anyone
can re-derive them from the file. Drawdowns are reported as positive fractions (0.15 = 15%).

The probabilistic and deflated Sharpe ratios follow Bailey and Lopez de Prado:
"The Sharpe Ratio Efficient Frontier" (2012) and "The Deflated Sharpe Ratio" (2014). Active-return
figures (excess return, tracking error, information ratio) compare the equity with a benchmark curve
(buy-and-hold) on the same days. The Sharpe ratio's and the information ratio's intervals come from
one moving-block bootstrap (:func:`moving_block_bootstrap`).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

TRADING_DAYS = 252

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantstats as qs


def daily_returns(equity: pd.Series) -> pd.Series:
    """Simple returns of the equity at each day's last bar (the first day's return is dropped)."""
    equity = equity.astype(float)
    daily = equity.groupby(equity.index.normalize()).last()
    return daily.pct_change().dropna()


def drawdown(equity: pd.Series) -> pd.Series:
    """Fraction below the running peak at each bar (0 at a new high)."""
    return 1.0 - equity / equity.cummax()


MIN_CAGR_DAYS = 1.0  # a shorter run (a live session, a short replay) has no CAGR: see return_metrics


def return_metrics(equity: pd.Series) -> dict:
    """total_return, cagr, sharpe, sortino, volatility, max_drawdown (+ duration), calmar.

    CAGR = (1 + total return) ** (365.25 / calendar days) - 1. It is None (and with it the annual
    multiple and the Calmar ratio) when the run spans less than ``MIN_CAGR_DAYS``: compounding a few
    hours' return over the thousands of such spans in a year says nothing (and overflows a float).
    Ratios of a curve without variance (flat, or fewer than 3 daily returns) are their neutral values.
    """
    equity = equity.dropna()
    rets = daily_returns(equity)
    dd = drawdown(equity)
    total = float(equity.iloc[-1] / equity.iloc[0] - 1.0)
    days = (equity.index[-1] - equity.index[0]).total_seconds() / 86400.0
    cagr = _cagr(total, days)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enough = len(rets) > 2 and float(rets.std()) > 1e-12  # a flat or constant-growth curve has no Sharpe
        sharpe = float(qs.stats.sharpe(rets, periods=TRADING_DAYS)) if enough else 0.0
        sortino = float(qs.stats.sortino(rets, periods=TRADING_DAYS)) if enough else 0.0
        vol = float(qs.stats.volatility(rets, periods=TRADING_DAYS)) if len(rets) > 1 else 0.0
    max_dd = float(dd.max())
    return {
        "start_equity": float(equity.iloc[0]),
        "end_equity": float(equity.iloc[-1]),
        "total_return": total,
        "cagr": cagr,
        "annual_multiple": 1.0 + cagr if cagr is not None else None,
        "sharpe": _finite(sharpe),
        "sortino": _finite(sortino),
        "volatility": vol,
        "max_drawdown": max_dd,
        "max_drawdown_duration_days": _longest_underwater_days(equity),
        "calmar": cagr / max_dd if cagr is not None and max_dd > 0 else None,
        "daily_sharpe": float(rets.mean() / rets.std()) if enough else 0.0,  # per-period, for PSR/DSR
        "skew": float(sps.skew(rets)) if enough else 0.0,
        "kurtosis": float(sps.kurtosis(rets, fisher=False)) if enough and len(rets) > 3 else 3.0,
        "n_days": int(len(rets)),
    }


def _cagr(total: float, days: float) -> float | None:
    if days < MIN_CAGR_DAYS:
        return None
    if total <= -1.0:
        return -1.0
    try:
        return float((1.0 + total) ** (1.0 / (days / 365.25)) - 1.0)
    except OverflowError:  # a large gain over a few days: more than a float holds
        return None


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _longest_underwater_days(equity: pd.Series) -> int:
    """Calendar days from a peak to the recovery of that peak (or to the end if it never recovers)."""
    peak_time, peak = equity.index[0], equity.iloc[0]
    longest, underwater = pd.Timedelta(0), False
    for when, value in equity.items():
        if value >= peak:
            if underwater:
                longest = max(longest, when - peak_time)
            peak, peak_time, underwater = value, when, False
        else:
            underwater = True
    if underwater:
        longest = max(longest, equity.index[-1] - peak_time)
    return int(longest.days)


def trade_metrics(trades: pd.DataFrame, n_days: int | None = None) -> dict:
    """Win rate, average win / loss and their ratio, expectancy, profit factor, SQN, holding time.

    Trades still open at the end (``exit_reason == "end"``) are excluded: their pnl is unrealised.
    """
    closed = trades[trades["exit_reason"] != "end"] if len(trades) else trades
    n = int(len(closed))
    out: dict = {"n_trades": n, "n_open_at_end": int(len(trades) - n)}
    if n == 0:
        out.update(win_rate=None, avg_win=None, avg_loss=None, avg_win_loss_ratio=None, expectancy=None,
                   expectancy_pct=None, profit_factor=None, sqn=None, avg_holding_bars=None,
                   avg_holding_days=None, trades_per_day=0.0, exit_reasons={})
        return out
    pnl = closed["pnl"].astype(float)
    pct = closed["pnl_pct"].astype(float)
    wins, losses = pct[pnl > 0], pct[pnl <= 0]
    avg_win = float(wins.mean()) if len(wins) else None
    avg_loss = float(losses.mean()) if len(losses) else None
    held = pd.to_datetime(closed["exit_datetime"]) - pd.to_datetime(closed["entry_datetime"])
    gross_loss = float(-pnl[pnl <= 0].sum())
    out.update(
        win_rate=float((pnl > 0).mean()),
        avg_win=avg_win,
        avg_loss=avg_loss,
        avg_win_loss_ratio=(avg_win / abs(avg_loss)) if avg_win is not None and avg_loss else None,
        expectancy=float(pnl.mean()),
        expectancy_pct=float(pct.mean()),
        profit_factor=float(pnl[pnl > 0].sum() / gross_loss) if gross_loss > 0 else None,
        # Van Tharp's system quality number, as Backtrader's SQN analyzer computes it
        sqn=float(math.sqrt(n) * pnl.mean() / pnl.std()) if n > 1 and pnl.std() > 0 else None,
        avg_holding_bars=float(closed["bars_held"].mean()),
        avg_holding_days=float(held.dt.total_seconds().mean() / 86400.0),
        trades_per_day=float(n / n_days) if n_days else None,
        exit_reasons={str(k): int(v) for k, v in closed["exit_reason"].value_counts().sort_index().items()},
    )
    return out


def stop_target_metrics(trades: pd.DataFrame) -> dict:
    """How the stops and targets worked: mean initial stop and target distances (fractions of the
    entry fill), and per exit reason the trades, their win rate and mean return (closed trades)."""
    closed = trades[trades["exit_reason"] != "end"] if len(trades) else trades
    entry = closed["entry_price"].astype(float)
    stop = 1.0 - pd.to_numeric(closed["initial_stop"], errors="coerce") / entry
    target = pd.to_numeric(closed["target"], errors="coerce") / entry - 1.0
    by_reason = {}
    for reason, group in closed.groupby("exit_reason", sort=True):
        pct = group["pnl_pct"].astype(float)
        by_reason[str(reason)] = {"trades": int(len(group)), "win_rate": float((group["pnl"] > 0).mean()),
                                  "avg_return": float(pct.mean())}
    return {"avg_initial_stop_pct": _finite(float(stop.mean())) if stop.notna().any() else None,
            "avg_target_pct": _finite(float(target.mean())) if target.notna().any() else None,
            "exits_by_reason": by_reason}


def exposure_and_turnover(equity: pd.DataFrame, positions: pd.DataFrame, orders: pd.DataFrame) -> dict:
    """Share of bars with a position, mean gross exposure, annual turnover and costs paid."""
    n_bars = max(len(equity), 1)
    invested_bars = positions["datetime"].nunique() if len(positions) else 0
    gross = positions.groupby("datetime")["value"].apply(lambda v: v.abs().sum()) if len(positions) else None
    eq = equity.set_index("datetime")["equity"]
    mean_gross = float((gross / eq.reindex(gross.index)).sum() / n_bars) if gross is not None else 0.0
    filled = orders[orders["filled_datetime"].notna()] if len(orders) else orders
    traded = float((filled["size"] * filled["price"]).sum()) if len(filled) else 0.0
    years = max((eq.index[-1] - eq.index[0]).days / 365.25, 1e-9) if len(eq) > 1 else 1.0
    return {
        "exposure": invested_bars / n_bars,
        "avg_gross_exposure": mean_gross,
        "turnover": traded / float(eq.mean()) / years if len(eq) else 0.0,
        "commission_paid": float(filled["commission"].sum()) if len(filled) else 0.0,
        "traded_value": traded,
    }


def slippage_paid(traded_value: float, slippage_bps: float) -> float:
    """Slippage cost implied by the configured basis points on the traded (slipped) value."""
    return traded_value * slippage_bps / (1e4 + slippage_bps)


def buy_and_hold(bars: dict[str, pd.DataFrame], cash: float, *, commission_bps: float, slippage_bps: float,
                 calendar: pd.DatetimeIndex) -> pd.DataFrame:
    """Equal-weight buy-and-hold of every symbol, with the same costs and fill rule as the strategy.

    Cash is split equally among the symbols; each is bought with whole shares at the open of its
    second bar in the run (the decision is made on its first bar, filled at the next open, as any
    strategy's order would be), paying commission and slippage, and held to the end. Cash reserved
    for a symbol that starts later waits uninvested until then. Returns equity and cash per bar.
    """
    per_symbol = cash / len(bars)
    cost = (commission_bps + slippage_bps) / 1e4
    equity = pd.Series(0.0, index=calendar)
    cash_left = pd.Series(0.0, index=calendar)
    for frame in bars.values():
        frame = frame.loc[(frame.index >= calendar[0]) & (frame.index <= calendar[-1])]
        if len(frame) < 2:
            equity += per_symbol
            cash_left += per_symbol
            continue
        fill_time, fill_price = frame.index[1], float(frame["open"].iloc[1])
        shares = math.floor(per_symbol / (fill_price * (1 + cost)))
        spent = shares * fill_price * (1 + cost)
        close = frame["close"].reindex(calendar).ffill()
        held = (calendar >= fill_time)
        value = np.where(held, per_symbol - spent + shares * close.fillna(0.0).to_numpy(), per_symbol)
        equity += value
        cash_left += np.where(held, per_symbol - spent, per_symbol)
    out = pd.DataFrame({"equity": equity, "cash": cash_left})
    out.index.name = "datetime"
    out["drawdown"] = drawdown(out["equity"])
    return out


# ---- uncertainty of the Sharpe ratio ------------------------------------------------------------

def probabilistic_sharpe_ratio(sharpe: float, n_obs: int, skew: float, kurtosis: float,
                               benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe > benchmark) given an observed per-period Sharpe over ``n_obs`` returns.

    PSR = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2) )
    with per-period (not annualised) Sharpe ratios and non-excess kurtosis (3 for a normal).
    Bailey and Lopez de Prado (2012), eq. for PSR.
    """
    if n_obs < 2:
        return float("nan")
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if denom <= 0:
        return float("nan")
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return float(sps.norm.cdf(z))


def expected_max_sharpe(n_trials: int, trials_sharpe_variance: float) -> float:
    """Expected maximum Sharpe among ``n_trials`` unskilled trials (Bailey and Lopez de Prado 2014):

    SR0 = sqrt(V) ((1 - gamma) Z^-1(1 - 1/N) + gamma Z^-1(1 - 1/(N e))), gamma = Euler-Mascheroni.
    """
    if n_trials <= 1 or trials_sharpe_variance <= 0:
        return 0.0
    gamma = 0.5772156649015329
    return math.sqrt(trials_sharpe_variance) * (
        (1 - gamma) * sps.norm.ppf(1 - 1.0 / n_trials) + gamma * sps.norm.ppf(1 - 1.0 / (n_trials * math.e)))


def deflated_sharpe_ratio(sharpe: float, n_obs: int, skew: float, kurtosis: float, n_trials: int,
                          trials_sharpe_variance: float) -> float:
    """PSR against the Sharpe the best of ``n_trials`` unskilled configurations would show.

    Per-period Sharpe ratios; ``trials_sharpe_variance`` is the variance of the per-period Sharpe
    ratios across the configurations tried. Bailey and Lopez de Prado (2014).
    """
    return probabilistic_sharpe_ratio(sharpe, n_obs, skew, kurtosis,
                                      benchmark_sharpe=expected_max_sharpe(n_trials, trials_sharpe_variance))


def moving_block_bootstrap(values: pd.Series | np.ndarray, *, n_samples: int = 1000, block: int = 20,
                           seed: int = 0) -> np.ndarray:
    """``n_samples`` resamples of ``values`` (NaNs dropped), each as long as the series, made of blocks of
    ``block`` consecutive values drawn with replacement (Kuensch 1989): blocks keep the short-range
    dependence of daily returns. Returns an (n_samples, n) array; (n_samples, 0) when fewer than two
    blocks' worth of values."""
    r = np.asarray(values, dtype=float)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2 * block:
        return np.empty((n_samples, 0))
    rng = np.random.default_rng(seed)
    n_blocks = int(math.ceil(n / block))
    starts = rng.integers(0, n - block + 1, size=(n_samples, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_samples, -1)[:, :n]
    return r[idx]


def annualised_ratio(samples: np.ndarray, periods: int = TRADING_DAYS) -> np.ndarray:
    """mean / standard deviation x sqrt(periods) of each row (0 where a row has no spread): the Sharpe
    ratio of returns, the information ratio of active returns."""
    sd = samples.std(axis=1, ddof=1)
    return np.where(sd > 0, samples.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0) * math.sqrt(periods)


def bootstrap_interval(values: pd.Series | np.ndarray, statistic=annualised_ratio, *, n_samples: int = 1000,
                       block: int = 20, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """A (1 - alpha) percentile interval of ``statistic`` (rows of resamples -> one value each) by
    :func:`moving_block_bootstrap`; NaNs when the series is too short or has no spread."""
    r = np.asarray(values, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < 2 * block or r.std() == 0:
        return (float("nan"), float("nan"))
    sample = moving_block_bootstrap(r, n_samples=n_samples, block=block, seed=seed)
    lo, hi = np.quantile(statistic(sample), [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap_sharpe_interval(returns: pd.Series | np.ndarray, *, n_samples: int = 1000, block: int = 20,
                              alpha: float = 0.05, seed: int = 0,
                              periods: int = TRADING_DAYS) -> tuple[float, float]:
    """A (1 - alpha) interval for the annualised Sharpe ratio by moving-block bootstrap
    (:func:`bootstrap_interval`)."""
    return bootstrap_interval(returns, lambda sample: annualised_ratio(sample, periods), n_samples=n_samples,
                              block=block, alpha=alpha, seed=seed)


def sharpe_uncertainty(equity: pd.Series, *, n_samples: int, seed: int, n_trials: int | None = None) -> dict:
    """PSR against zero and a bootstrap 95% interval of the annualised Sharpe ratio; with
    ``n_trials`` (configurations tried to get this one), the deflated Sharpe ratio too.

    The configurations a hyperparameter search tries are scored by their models' loss, not by a
    backtest, so there are no per-trial Sharpe ratios to take the variance of: the deflation uses
    the sampling variance of a per-period Sharpe estimate of an unskilled strategy, 1 / (n - 1)
    (Lo 2002), as the spread the best of ``n_trials`` would show by luck.
    """
    rets = daily_returns(equity.dropna())
    out = {"probabilistic_sharpe": None, "sharpe_ci_95": [None, None]}
    if n_trials is not None:
        out.update(deflated_sharpe=None, n_trials=int(n_trials))
    if len(rets) < 3 or rets.std() <= 1e-12:
        return out
    sr, n = float(rets.mean() / rets.std()), len(rets)
    skew, kurtosis = float(sps.skew(rets)), float(sps.kurtosis(rets, fisher=False))
    lo, hi = bootstrap_sharpe_interval(rets, n_samples=n_samples, seed=seed)
    out.update(probabilistic_sharpe=_finite(probabilistic_sharpe_ratio(sr, n, skew, kurtosis)),
               sharpe_ci_95=[_finite(lo), _finite(hi)])
    if n_trials is not None:
        out["deflated_sharpe"] = _finite(deflated_sharpe_ratio(sr, n, skew, kurtosis, max(int(n_trials), 1),
                                                               1.0 / (n - 1)))
    return out


def active_return_metrics(equity: pd.Series, benchmark: pd.Series, *, n_samples: int, seed: int) -> dict:
    """The strategy against a benchmark curve over the same bars (buy-and-hold in metrics.json):

    excess_return         total return of ``equity`` minus the benchmark's, first bar to last
    tracking_error        std(a) x sqrt(252), a = daily return of equity - daily return of the benchmark
    information_ratio     mean(a) / std(a) x sqrt(252) (annualised mean active return / tracking error)
    information_ratio_ci_95  its moving-block bootstrap interval (:func:`bootstrap_interval`, as the Sharpe's)

    Daily returns as :func:`daily_returns` takes them, on the days both curves have. The ratio and its
    interval are None without at least 3 active returns with some spread (the same curve twice has none).
    """
    equity, benchmark = equity.dropna().astype(float), benchmark.dropna().astype(float)
    both = equity.index.intersection(benchmark.index)
    equity, benchmark = equity.loc[both], benchmark.loc[both]
    out = {"excess_return": None, "tracking_error": None, "information_ratio": None,
           "information_ratio_ci_95": [None, None]}
    if len(both) == 0:
        return out
    out["excess_return"] = float(equity.iloc[-1] / equity.iloc[0] - benchmark.iloc[-1] / benchmark.iloc[0])
    active = (daily_returns(equity) - daily_returns(benchmark)).dropna()
    if len(active) < 2:
        return out
    sd = float(active.std())
    out["tracking_error"] = sd * math.sqrt(TRADING_DAYS)
    if len(active) < 3 or sd <= 1e-12:
        return out
    lo, hi = bootstrap_interval(active, n_samples=n_samples, seed=seed)
    out.update(information_ratio=_finite(float(active.mean()) / sd * math.sqrt(TRADING_DAYS)),
               information_ratio_ci_95=[_finite(lo), _finite(hi)])
    return out


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Calendar-month returns, years as rows and months 1..12 as columns (for the heatmap)."""
    month_end = equity.groupby([equity.index.year, equity.index.month]).last()
    first = equity.iloc[0]
    prev = month_end.shift(1).fillna(first)
    table = (month_end / prev - 1.0).unstack()
    table.index.name, table.columns.name = "year", "month"
    return table
