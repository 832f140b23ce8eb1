"""The factor researcher's view of out-of-sample scores: does the score rank a bar's symbols by what
they return next?

At every horizon h, for a score (the ensemble's expected return over h, or a baseline) and the
realised forward log return over the next h own bars (``models.labels.forward_returns``: the raw
return whatever label the models trained on, so label kinds compare on one yardstick):

- daily IC (Pearson) and rank IC (Spearman) across the bar's symbols
  (``models.evaluation.daily_correlations``; bars with fewer than ``MIN_CROSS_SECTION`` symbols are
  skipped), their mean, standard deviation, information ratio (mean / std, per bar, not
  annualised) and the share of bars with a positive rank IC;
- a t-statistic of the mean with Newey-West (HAC, Bartlett weights) standard errors: h-bar returns
  of neighbouring bars overlap by h - 1 bars, so the daily series is autocorrelated and a plain t
  overstates; lags = max(h - 1, floor(4 (n / 100) ** (2 / 9))), the horizon's overlap or the
  Newey-West rule of thumb for n bars, whichever is larger;
- quantile mean forward returns: each bar, symbols fall into ``quantiles`` groups by the score's
  rank (quantile ``ceil(Q (rank - 1) / (n - 1))``, at least 1: the bins of ``pandas.qcut``, hence of
  alphalens, for distinct scores; tied scores share a bin), the mean realised return per group,
  then the mean over bars (raw, not demeaned); the top-minus-bottom spread per bar, its mean and
  Newey-West t; the turnover of the top quantile (the share of its names at bar t that were not in
  it at bar t - h, averaged over the bars whose t - h has a top quantile).

Baselines, scored by the same code on the same rows (bar, symbol): ``momentum_12_1`` (the log
return from 252 to 21 own bars ago) and ``reversal_1m`` (minus the last 21 bars' log return), both
causal (bar t and before only). The rows are those where the model, both baselines and the
forward return are all known, so the three compare like for like.

Why not alphalens-reloaded in production: it recomputes forward returns from a price grid on
calendar periods, where ours are own-bar log returns on the run's calendar (a symbol's missing
bar is not a step), and its per-date ``groupby.apply`` with scipy is slow on ~500 symbols x
~1000 bars x 3 horizons x 3 scores; here each statistic is one vectorised groupby (all of them, on
500 symbols x 1000 bars x 3 horizons, in about five seconds). A test checks the daily rank IC, the
quantile assignment, the quantile mean returns and the top turnover against alphalens on one case
(``tests/models/test_factor_evaluation.py``): they agree to rounding.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from models.evaluation import MIN_CROSS_SECTION, daily_correlations
from models.labels import forward_returns

BASELINES = ("momentum_12_1", "reversal_1m")


def past_log_return(close: np.ndarray, far: int, near: int = 0) -> np.ndarray:
    """(T, N) ``log close[i - near] - log close[i - far]`` in each symbol's own bars i (NaN until
    ``far`` own bars precede): the return from ``far`` to ``near`` bars ago. Causal."""
    out = np.full(close.shape, np.nan)
    for j in range(close.shape[1]):
        rows = np.flatnonzero(np.isfinite(close[:, j]))
        logc = np.log(close[rows, j])
        n = len(rows) - far
        if n > 0:
            out[rows[far:], j] = logc[far - near:far - near + n] - logc[:n]
    return out


def momentum_12_1(close: np.ndarray, lookback: int = 252, skip: int = 21) -> np.ndarray:
    """12-1 month momentum (Jegadeesh and Titman 1993): ``log close[t-21] - log close[t-252]``."""
    return past_log_return(close, lookback, skip)


def momentum_12_1_at(close: np.ndarray, t: int, lookback: int = 252, skip: int = 21) -> np.ndarray:
    """(N,) row t of :func:`momentum_12_1`, from the bars up to t only (a live bar's, without the
    whole grid): NaN for a symbol without a bar at t or without ``lookback`` own bars before it."""
    history = np.isfinite(close[: t + 1])
    out = np.full(close.shape[1], np.nan)
    for j in np.flatnonzero(history[t]):
        rows = np.flatnonzero(history[:, j])
        if len(rows) > lookback:
            out[j] = math.log(close[rows[-1 - skip], j]) - math.log(close[rows[-1 - lookback], j])
    return out


def reversal_1m(close: np.ndarray, bars: int = 21) -> np.ndarray:
    """1-month reversal (Jegadeesh 1990): ``-(log close[t] - log close[t-21])``."""
    return -past_log_return(close, bars)


def newey_west_lags(n: int, horizon: int) -> int:
    """max(h - 1, floor(4 (n / 100) ** (2 / 9))): the overlap of h-bar returns, or Newey and
    West's (1994) rule of thumb when that is larger."""
    return max(int(horizon) - 1, int(4 * (max(n, 0) / 100) ** (2 / 9)))


def newey_west_t(values, lags: int) -> float:
    """t-statistic of the mean of a series with Newey-West (HAC, Bartlett kernel, no small-sample
    correction) standard errors: OLS on a constant. NaN with fewer than 3 values or no spread."""
    import statsmodels.api as sm

    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan
    fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC",
                                         cov_kwds={"maxlags": min(int(lags), len(x) - 1), "use_correction": False})
    return float(fit.tvalues[0])


def quantile_of(score: np.ndarray, bars: np.ndarray, quantiles: int) -> np.ndarray:
    """Each row's quantile (1 = lowest score) among its bar's rows: ``ceil(Q (rank - 1) / (n - 1))``,
    at least 1, ranks 1..n with ties averaged. Bars need at least 2 rows."""
    frame = pd.DataFrame({"bar": bars, "s": score})
    by_bar = frame.groupby("bar")["s"]
    rank, n = by_bar.rank(method="average").to_numpy(), by_bar.transform("size").to_numpy()
    return np.maximum(1, np.ceil((rank - 1) * quantiles / (n - 1))).astype(np.int64)


def quantile_returns(score, realised, bars, symbols, horizon: int, quantiles: int) -> dict:
    """Quantile mean forward returns, the top-minus-bottom spread (mean and Newey-West t) and the
    top quantile's turnover over ``horizon`` bars (module docstring). Rows with a NaN and bars with
    fewer than ``MIN_CROSS_SECTION`` rows are left out."""
    frame = pd.DataFrame({"bar": bars, "symbol": symbols, "s": score, "r": realised}).dropna()
    frame = frame[frame.groupby("bar")["s"].transform("size") >= MIN_CROSS_SECTION]
    empty = {"quantile_mean_returns": [math.nan] * quantiles, "spread_mean": math.nan, "spread_t": math.nan,
             "spread_bars": 0, "top_turnover": math.nan}
    if frame.empty:
        return empty
    frame["q"] = quantile_of(frame["s"].to_numpy(), frame["bar"].to_numpy(), quantiles)
    per_bar = frame.groupby(["bar", "q"])["r"].mean().unstack("q").reindex(columns=range(1, quantiles + 1))
    spread = (per_bar[quantiles] - per_bar[1]).dropna()
    return {
        "quantile_mean_returns": per_bar.mean().tolist(),
        "spread_mean": float(spread.mean()) if len(spread) else math.nan,
        "spread_t": newey_west_t(spread, newey_west_lags(len(spread), horizon)),
        "spread_bars": len(spread),
        "top_turnover": top_turnover(frame, quantiles, horizon),
    }


def top_turnover(frame: pd.DataFrame, quantiles: int, horizon: int) -> float:
    """Mean over bars t of the share of the top quantile's symbols at t not in it at t - horizon
    (bars whose t - horizon has no top quantile, unscored or all scores tied, are left out).
    ``frame``: bar, symbol, q."""
    top = frame["q"].to_numpy() == quantiles
    bars, symbols = frame["bar"].to_numpy(np.int64)[top], frame["symbol"].to_numpy(np.int64)[top]
    width = int(symbols.max()) + 1 if len(symbols) else 1
    key = bars * width + symbols
    stayed = np.isin(key - horizon * width, key)          # (t - h, symbol) was in the top quantile too
    eligible = np.isin(bars - horizon, bars)
    if not eligible.any():
        return math.nan
    new = pd.Series(~stayed[eligible], dtype=np.float64)
    return float(new.groupby(bars[eligible]).mean().mean())


def factor_scores(score, realised, bars, symbols, horizon: int, quantiles: int) -> tuple[dict, pd.Series]:
    """Every statistic of one score at one horizon, and its daily rank IC (index: bar)."""
    daily = daily_correlations(score, realised, bars)
    lags = newey_west_lags(len(daily), horizon)
    summary = {"rows": int(np.isfinite(score).sum()), "bars": len(daily), "newey_west_lags": lags}
    for name in ("ic", "rank_ic"):
        series = daily[name]
        mean = float(series.mean()) if len(series) else math.nan
        std = float(series.std()) if len(series) > 1 else math.nan
        summary.update({f"{name}_mean": mean, f"{name}_std": std,
                        f"{name}_ir": mean / std if std > 0 else math.nan,
                        f"{name}_t": newey_west_t(series, lags)})
    summary["rank_ic_positive"] = float((daily["rank_ic"] > 0).mean()) if len(daily) else math.nan
    summary.update(quantile_returns(score, realised, bars, symbols, horizon, quantiles))
    return summary, daily["rank_ic"]


def cross_section(predictions, close: np.ndarray, horizons, decision_horizon: int, folds=(), quantiles: int = 5,
                  time_of=str) -> tuple[dict, list[dict]]:
    """The ``walk_forward.cross_section`` block of metrics.json and, per fold, the model's rank IC
    at the decision horizon (mean and Newey-West t over the fold's test bars).

    predictions: ``models.predictor.Predictions`` (out-of-sample rows; ``expected_return[:, k]`` is
    the score at ``horizons[k]``); close: (T, N) on the run's calendar; folds:
    ``models.walkforward.Fold`` records; time_of: bar -> text (``PanelData.time_of``).
    """
    horizons = [int(h) for h in horizons]
    realised_all, _ = forward_returns(close, horizons)
    bars, symbols = predictions.bars, predictions.symbols
    baselines = {"momentum_12_1": momentum_12_1(close)[bars, symbols], "reversal_1m": reversal_1m(close)[bars, symbols]}
    section = {"quantiles": int(quantiles), "min_symbols": MIN_CROSS_SECTION, "predicted_rows": len(bars),
               "horizons": {}}
    fold_rows = []
    for k, h in enumerate(horizons):
        realised = realised_all[bars, symbols, k]
        scores = {"model": predictions.expected_return[:, k], **baselines}
        rows = np.isfinite(realised) & np.logical_and.reduce([np.isfinite(s) for s in scores.values()])
        block, daily = {}, {}
        for name, score in scores.items():
            block[name], daily[name] = factor_scores(score[rows], realised[rows], bars[rows], symbols[rows], h,
                                                     quantiles)
        section["horizons"][str(h)] = block
        if h != decision_horizon:
            continue
        table = pd.DataFrame(daily).sort_index()
        section["daily_rank_ic"] = {"horizon": h, "dates": [time_of(int(b)) for b in table.index],
                                    **{name: table[name].tolist() for name in scores}}
        model = daily["model"]
        for fold in folds:
            mine = model[(model.index >= fold.test_start) & (model.index <= fold.test_end)]
            fold_rows.append({"fold": fold.index, "rank_ic": float(mine.mean()) if len(mine) else math.nan,
                              "rank_ic_t": newey_west_t(mine, newey_west_lags(len(mine), h))})
    return section, fold_rows
