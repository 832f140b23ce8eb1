"""Volatility forecaster: GARCH(p, q) per symbol (Bollerslev 1986) through the ``arch`` package.

Fitted on each symbol's own-bar log returns (in percent, zero mean) inside the training window.
A forecast at bar s runs the fitted recursion from the window's first return up to s (``arch``'s
``fix`` + ``forecast``), so it reads nothing after s and is the same whether made for one bar live
or for a whole fold at once. The output is the daily volatility expected over the next ``horizon``
bars, ``sqrt(mean of the 1..horizon-step variance forecasts)``, as a fraction.
Fallback, with one debug log line per fit naming the symbols: too few returns, a failed or non-stationary
fit (alpha + beta >= 1) -> the trailing realised volatility at the bar.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from arch import arch_model

from models.prices import own_bars, trailing_volatility

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
        out = trailing_volatility(close, self.realised_bars)[bars, symbols]
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
            first = int(position[found].min())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forecast = self._model(r).fix(params).forecast(horizon=self.horizon, start=first, reindex=False)
            variance = forecast.variance.to_numpy()          # row i: forecasts made at return first + i
            vol = np.sqrt(variance.mean(axis=1)) / 100.0
            out[mine[found]] = vol[position[found] - first]
        return out
