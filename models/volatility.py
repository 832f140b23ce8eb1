"""Volatility forecaster: GARCH(p, q) per symbol (Bollerslev 1986), fitted with the ``arch`` package.

Fitted on each symbol's own-bar log returns (in percent, zero mean) inside the training window.
A forecast at bar s runs the fitted recursion from the window's first return up to s and reads
nothing after s, so it is the same whether made for one bar live or for a whole fold at once (live,
each symbol's recursion is carried on from the bar before, :class:`GarchRecursion`, so a forecast
does not cost more as the session grows). The output is the daily volatility expected over the
next ``horizon`` bars, ``sqrt(mean of the 1..horizon-step variance forecasts)``, as a fraction.

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
        self._recursions: dict[int, GarchRecursion] = {}     # bar by bar: symbol -> its recursion so far

    def __getstate__(self) -> dict:
        # the bar-by-bar recursions hold a session's returns: not part of a saved model
        return {**self.__dict__, "_recursions": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_recursions": {}, **state})

    def _model(self, returns_pct):
        return arch_model(returns_pct, mean="Zero", vol="GARCH", p=self.p, q=self.q, rescale=False)

    def fit(self, close: np.ndarray, t: int, window_bars: int, symbols=None) -> "GarchForecaster":
        """Fit every symbol (or ``symbols``) on its returns at calendar bars ``t - window_bars < s <= t``."""
        self._fits, self._recursions = {}, {}
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
        one_bar = len(bars) > 0 and bool((bars == bars[0]).all())
        for j in np.unique(symbols):
            if j not in self._fits:
                continue
            start, params = self._fits[j]
            mine = np.flatnonzero(symbols == j)
            if one_bar:          # live: the symbol's recursion carried on from the previous bar
                variance = self._forecast_at(close, int(bars[0]), int(j), start, params)
                if variance is not None:
                    out[mine] = np.sqrt(variance.mean()) / 100.0
                continue
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

    def _forecast_at(self, close: np.ndarray, t: int, j: int, start: int, params: np.ndarray) -> np.ndarray | None:
        """(horizon,) variance forecasts of symbol j after its return at bar t, None when it has none
        there; as :func:`garch_variance_forecasts` gives them, at a cost that does not grow with the
        bars since the fit once its backcast is fixed (``BACKCAST_RETURNS`` returns)."""
        recursion = self._recursions.get(j)
        if recursion is not None and recursion.row <= t:
            extended = recursion.extend(close[recursion.row + 1: t + 1, j], t)
            return recursion.forecasts(self.horizon) if extended else None
        self._recursions.pop(j, None)
        rows, c = own_bars(close[: t + 1], j)
        log_close = np.log(c)
        r_rows, r = rows[1:], 100.0 * np.diff(log_close)
        keep = r_rows >= start
        r_rows, r = r_rows[keep], r[keep]
        if len(r) >= BACKCAST_RETURNS:
            at_t = bool(r_rows[-1] == t)
            recursion = self._recursions[j] = GarchRecursion(params, self.p, self.q, r, t, log_close[-1], at_t)
            return recursion.forecasts(self.horizon) if at_t else None
        if len(r) == 0 or r_rows[-1] != t:
            return None
        return garch_variance_forecasts(params, self.p, self.q, r, [len(r) - 1], self.horizon)[0]


BACKCAST_RETURNS = 75   # the returns arch's backcast reads (garch_backcast)


def garch_backcast(returns: np.ndarray) -> float:
    """``arch``'s start of the recursion: the exponentially weighted (0.94) mean of the first 75
    squared returns, the weights normalised to sum to 1."""
    tau = min(BACKCAST_RETURNS, len(returns))
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
    n = int(np.max(origins)) + 1
    r2 = returns[:n] ** 2
    backcast = garch_backcast(returns[:n])
    # sigma2[0..n] (sigma2[n]: after the last return) from the r^2 terms, the backcast before the first
    sigma2, _ = _variances(params, p, q, np.concatenate([np.full(p, backcast), r2]),
                           _initial_state(params, p, q, backcast))
    return _multi_step(params, p, q, r2, sigma2, backcast, np.asarray(origins), horizon)


def _initial_state(params: np.ndarray, p: int, q: int, backcast: float) -> np.ndarray:
    """The recursion's filter state before the first return: past sigma2 all the backcast (as
    scipy's lfiltic gives it: state m = backcast x (beta_m+1 + ... + beta_q))."""
    beta = params[1 + p: 1 + p + q]
    return backcast * np.cumsum(beta[::-1])[::-1]


def _variances(params: np.ndarray, p: int, q: int, lagged: np.ndarray, state: np.ndarray):
    """(sigma2, the filter's state after it): ``len(lagged) - p + 1`` conditional variances, the k-th
    driven by the p squared returns ``lagged[k: k + p]`` before it (oldest first), continuing from
    the filter ``state``. A recursion run in pieces, each from the state the one before left, gives
    the numbers of one run."""
    omega, alpha, beta = params[0], params[1: 1 + p], params[1 + p: 1 + p + q]
    m = len(lagged) - p + 1
    drive = np.full(m, omega)
    for i in range(p):
        drive += alpha[i] * lagged[p - 1 - i: p - 1 - i + m]
    # sigma2 - sum beta_i sigma2[t-i] = drive: a linear filter whose past outputs are in its state
    return scipy.signal.lfilter([1.0], np.concatenate([[1.0], -beta]), drive, zi=state)


def _multi_step(params: np.ndarray, p: int, q: int, r2: np.ndarray, sigma2: np.ndarray, backcast: float,
                origins: np.ndarray, horizon: int) -> np.ndarray:
    """The 1..horizon-step forecasts after returns ``origins`` (indices of ``r2``; ``sigma2[s + 1]``
    is the variance after return s)."""
    omega, alpha, beta = params[0], params[1: 1 + p], params[1 + p: 1 + p + q]
    past_r2 = lambda m: np.where(m >= 0, r2[np.maximum(m, 0)], backcast)  # noqa: E731
    past_sigma2 = lambda m: np.where(m >= 0, sigma2[np.maximum(m, 0)], backcast)  # noqa: E731
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


class GarchRecursion:
    """One symbol's fitted GARCH recursion over its returns so far, carried on as bars come (live): a
    forecast after the latest return costs the same however many came before. Kept by
    :class:`GarchForecaster` once ``BACKCAST_RETURNS`` returns have fixed the backcast; the numbers
    are :func:`garch_variance_forecasts`'s (the same operations on the same values)."""

    def __init__(self, params: np.ndarray, p: int, q: int, returns: np.ndarray, row: int, log_close: float,
                 return_at_row: bool):
        """returns: the symbol's returns (in percent) from the fit's first to its last, at calendar
        bar ``row`` (``return_at_row``) or before; log_close: the log of its last close."""
        self.params, self.p, self.q = params, p, q
        self.backcast = garch_backcast(returns)
        self.keep = max(p, q)          # the past terms a forecast or the next variance reads
        r2 = returns ** 2
        sigma2, self._state = _variances(params, p, q, np.concatenate([np.full(p, self.backcast), r2]),
                                         _initial_state(params, p, q, self.backcast))
        self._r2, self._sigma2 = r2[-self.keep:], sigma2[-(self.keep + 1):]   # r2[..n-1], sigma2[..n]
        self.row, self._log_close = row, log_close
        self._return_at_row = return_at_row

    def extend(self, closes: np.ndarray, row: int) -> bool:
        """Take the symbol's closes at calendar bars ``self.row + 1 .. row`` (NaN where it has no
        bar); returns whether it has a return at ``row``."""
        if row == self.row:
            return self._return_at_row
        self._return_at_row = bool(np.isfinite(closes[-1]))
        closes = closes[np.isfinite(closes)]
        if len(closes):
            log_close = np.log(closes)
            r2 = (100.0 * np.diff(np.concatenate([[self._log_close], log_close]))) ** 2
            before = self._r2[len(self._r2) - (self.p - 1):]          # the p - 1 last squared returns
            sigma2, self._state = _variances(self.params, self.p, self.q, np.concatenate([before, r2]), self._state)
            self._r2 = np.concatenate([self._r2, r2])[-self.keep:]
            self._sigma2 = np.concatenate([self._sigma2, sigma2])[-(self.keep + 1):]
            self._log_close = log_close[-1]
        self.row = row
        return self._return_at_row

    def forecasts(self, horizon: int) -> np.ndarray:
        """(horizon,) the 1..horizon-step variance forecasts after the latest return."""
        return _multi_step(self.params, self.p, self.q, self._r2, self._sigma2, self.backcast,
                           np.array([self.keep - 1]), horizon)[0]
