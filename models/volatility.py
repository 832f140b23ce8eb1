"""Volatility forecaster: GARCH(p, q) per symbol (Bollerslev 1986), fitted with the ``arch`` package.

Fitted on each symbol's own-bar log returns (in percent, zero mean) inside the training window.
A forecast at bar s runs the fitted recursion from the window's first return up to s and reads
nothing after s, so it is the same whether made for one bar live or for a whole fold at once. The
output is the daily volatility expected over the next ``horizon`` bars, ``sqrt(mean of the
1..horizon-step variance forecasts)``, as a fraction.

The forecast is computed here rather than by ``arch``'s ``fix(...).forecast(...)``, which takes
about a millisecond a symbol (a model object, pandas frames, a Python loop per forecast origin):
57 ms a bar for 50 symbols live. :func:`garch_variance_forecasts` runs the same recursion (arch's
backcast start, its multi-step formula) as one linear filter and a few array operations; a test
checks it against ``arch`` to 1e-9. One deliberate difference: ``arch`` clips the conditional
variance to bounds it derives from the whole return series given (its variance and largest square),
which would let a later return move an earlier forecast; the bounds (1e-6..1e6 times an EWMA of
squared returns) never bind on stock returns, and are left out.

Fallback, with one debug log line per fit naming the symbols: too few returns, a failed or non-stationary
fit (alpha + beta >= 1) -> the trailing realised volatility at the bar.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.signal
from arch import arch_model

from models.prices import own_bars, trailing_volatility_at

log = logging.getLogger("models")


class GarchForecaster:
    def __init__(self, p: int, q: int, horizon: int, realised_bars: int, min_observations: int):
        self.p, self.q, self.horizon = p, q, horizon
        self.realised_bars, self.min_observations = realised_bars, min_observations
        self._fits: dict[int, tuple[int, np.ndarray]] = {}  # symbol -> (first return's calendar bar, params)

    def _model(self, returns_pct):
        return arch_model(returns_pct, mean="Zero", vol="GARCH", p=self.p, q=self.q, rescale=False)

    def fit(self, close: np.ndarray, t: int, window_bars: int, symbols=None) -> "GarchForecaster":
        """Fit every symbol (or ``symbols``) on its returns at calendar bars ``t - window_bars < s <= t``."""
        self._fits = {}
        failed = []
        for j in range(close.shape[1]) if symbols is None else symbols:
            rows, c = own_bars(close[: t + 1], j)
            r_rows, r = rows[1:], 100.0 * np.diff(np.log(c))
            keep = r_rows > t - window_bars
            r_rows, r = r_rows[keep], r[keep]
            if len(r) < self.min_observations:
                failed.append(j)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = self._model(r).fit(disp="off", show_warning=False)
                except (ValueError, np.linalg.LinAlgError):
                    res = None
            params = None if res is None else np.asarray(res.params, dtype=np.float64)
            if params is None or res.convergence_flag != 0 or not np.isfinite(params).all() \
                    or params[1:].sum() >= 1.0:
                failed.append(j)
                continue
            self._fits[j] = (int(r_rows[0]), params)
        if failed:
            # routine on a year of daily returns (a non-stationary fit): a debug line, not a warning
            log.debug("GARCH fit at bar %d: realised volatility instead for %d symbol(s) (columns %s)",
                        t, len(failed), failed)
        return self

    def predict(self, close: np.ndarray, bars: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """(n,) expected daily volatility over the next ``horizon`` bars at each (bar, symbol) row."""
        bars, symbols = np.asarray(bars), np.asarray(symbols)
        out = trailing_volatility_at(close, bars, symbols, self.realised_bars)
        for j in np.unique(symbols):
            if j not in self._fits:
                continue
            start, params = self._fits[j]
            mine = np.flatnonzero(symbols == j)
            rows, c = own_bars(close[: bars[mine].max() + 1], j)
            r_rows, r = rows[1:], 100.0 * np.diff(np.log(c))
            keep = r_rows >= start
            r_rows, r = r_rows[keep], r[keep]
            if len(r_rows) == 0:      # no return since the fit's first: the realised volatility stands
                continue
            position = np.searchsorted(r_rows, bars[mine])
            found = (position < len(r_rows)) & (r_rows[np.minimum(position, len(r_rows) - 1)] == bars[mine])
            if not found.any():
                continue
            variance = garch_variance_forecasts(params, self.p, self.q, r, position[found], self.horizon)
            out[mine[found]] = np.sqrt(variance.mean(axis=1)) / 100.0
        return out


def garch_backcast(returns: np.ndarray) -> float:
    """``arch``'s start of the recursion: the exponentially weighted (0.94) mean of the first 75
    squared returns, the weights normalised to sum to 1."""
    tau = min(75, len(returns))
    weights = 0.94 ** np.arange(tau)
    weights = weights / weights.sum()
    return float(np.sum(returns[:tau] ** 2 * weights))


def garch_variance_forecasts(params: np.ndarray, p: int, q: int, returns: np.ndarray, origins: np.ndarray,
                             horizon: int) -> np.ndarray:
    """(len(origins), horizon): the 1..horizon-step variance forecasts of a zero-mean GARCH(p, q) with
    ``params`` = (omega, alpha_1..p, beta_1..q), made after each return ``returns[s]``, s in ``origins``.

    sigma2[t] = omega + sum_i alpha_i r[t-i]^2 + sum_i beta_i sigma2[t-i], values before the first
    return replaced by :func:`garch_backcast`; a k-step forecast replaces a future r^2 and sigma2 by
    their own forecasts (their expectation). Reads ``returns[: max(origins) + 1]`` only."""
    omega, alpha, beta = params[0], params[1: 1 + p], params[1 + p: 1 + p + q]
    n = int(np.max(origins)) + 1
    r2 = returns[:n] ** 2
    backcast = garch_backcast(returns[:n])
    # the r^2 terms of sigma2[0..n] (sigma2[n]: after the last return), the backcast before the first
    lagged = np.concatenate([np.full(p, backcast), r2])
    drive = np.full(n + 1, omega)
    for i in range(p):
        drive += alpha[i] * lagged[p - 1 - i: p - i + n]
    # sigma2 - sum beta_i sigma2[t-i] = drive: a linear filter whose past outputs are the backcast
    # (its state, as scipy's lfiltic gives it: state m = backcast x (beta_m+1 + ... + beta_q))
    initial = backcast * np.cumsum(beta[::-1])[::-1]
    sigma2 = scipy.signal.lfilter([1.0], np.concatenate([[1.0], -beta]), drive, zi=initial)[0]
    past_r2 = lambda m: np.where(m >= 0, r2[np.maximum(m, 0)], backcast)  # noqa: E731
    past_sigma2 = lambda m: np.where(m >= 0, sigma2[np.maximum(m, 0)], backcast)  # noqa: E731
    origins = np.asarray(origins)
    out = np.empty((len(origins), horizon))
    out[:, 0] = sigma2[origins + 1]
    for k in range(1, horizon):  # forecast k + 1 steps ahead: terms at s + k - i
        f = np.full(len(origins), omega)
        for i in range(p):
            lag = k - 1 - i  # steps after the origin of the term read
            f += alpha[i] * (out[:, lag] if lag >= 0 else past_r2(origins + 1 + lag))
        for i in range(q):
            lag = k - 1 - i
            f += beta[i] * (out[:, lag] if lag >= 0 else past_sigma2(origins + 1 + lag))
        out[:, k] = f
    return out
