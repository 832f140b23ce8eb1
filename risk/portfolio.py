"""Target weights: a long-only mean-variance problem (stated in cvxpy, solved by Clarabel) under
position, sector and name caps.

    maximise   mu'w - risk_aversion x w' Sigma w
    subject to w >= 0, sum(w) <= max_total, w_i <= min(max_weight, kelly_cap_i),
               sum of w over each sector <= max_sector_weight, at most max_names non-zero weights

``mu`` and ``Sigma`` must be in the same units (returns over the same period). The blueprint's
objective is "expected return minus half the variance": risk_aversion 0.5.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import clarabel
import cvxpy as cp
import numpy as np
import pandas as pd
from cvxpy.reductions.solvers.conic_solvers.clarabel_conif import CLARABEL
from scipy import sparse
from sklearn.covariance import LedoitWolf

from risk.kelly import kelly_cap

log = logging.getLogger("risk")

# Solver noise below this is zero (and does not count as a name).
_WEIGHT_EPS = 1e-7
_UNKNOWN_SECTOR = "(unknown sector)"


def shrunk_covariance(returns: np.ndarray | pd.DataFrame, *, min_observations: int = 2) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of per-period returns (rows: periods, columns: assets).

    Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance matrices" (2004),
    via scikit-learn: positive definite even with fewer rows than assets.

    Missing values: a column with fewer than ``min_observations`` values is unknown, and its row and
    column of the result are NaN (:func:`allocate_weights` then leaves that asset out). The others
    are estimated from the rows where all of them have a value, so every entry comes from the same
    dates; under two such rows, from each column's own variance alone (a diagonal matrix).
    """
    data = np.asarray(returns, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"returns must be 2-D (periods x assets), got shape {data.shape}")
    n = data.shape[1]
    out = np.full((n, n), np.nan)
    known = np.flatnonzero(np.sum(np.isfinite(data), axis=0) >= max(min_observations, 2))
    if known.size == 0:
        return out
    sub = data[:, known]
    complete = sub[np.all(np.isfinite(sub), axis=1)]
    if complete.shape[0] >= 2:
        estimate = LedoitWolf(store_precision=False).fit(complete).covariance_  # no inverse: it is not read
    else:
        estimate = np.diag(np.nanvar(sub, axis=0, ddof=1))
    out[np.ix_(known, known)] = estimate
    return out


@dataclass(frozen=True)
class AllocationResult:
    """``weights`` align with the expected returns given (a Series when they were one).

    ``status``: the solver's status ("optimal", ...), "no_candidates" when nothing is worth
    holding, or "fallback"; ``message`` says what was left out or why the fallback was used.
    """

    weights: np.ndarray | pd.Series
    status: str
    fallback_used: bool
    message: str


def _sector_ids(sectors: Sequence) -> np.ndarray:
    # Unknown sectors share one group, so they are capped together (conservative).
    labels = [_UNKNOWN_SECTOR if s is None or (isinstance(s, float) and np.isnan(s)) or s == "" else str(s)
              for s in sectors]
    return pd.factorize(np.asarray(labels, dtype=object))[0]


def _within_caps(w: np.ndarray, caps: np.ndarray, sector_ids: np.ndarray, max_sector: float,
                 max_total: float) -> np.ndarray:
    """Clip into [0, cap], then scale down any sector, then the total, that exceeds its cap.

    Scaling down never breaks a cap already met, so the result satisfies all of them (up to
    floating-point rounding); it removes the solver's tolerance-sized violations.
    """
    w = np.clip(np.nan_to_num(w, nan=0.0), 0.0, caps)
    w[w < _WEIGHT_EPS] = 0.0
    for sid in np.unique(sector_ids):
        members = sector_ids == sid
        total = w[members].sum()
        if total > max_sector:
            w[members] *= max_sector / total
    total = w.sum()
    if total > max_total:
        w *= max_total / total
    return w


def _select(mu: np.ndarray, usable: np.ndarray, held: np.ndarray, max_names: int) -> np.ndarray:
    """Indices of at most ``max_names`` assets: held ones first, then the rest, each by expected return."""
    order = np.argsort(-np.where(usable, mu, -np.inf), kind="stable")
    ranked = [i for i in order if usable[i] and held[i]] + [i for i in order if usable[i] and not held[i]]
    return np.array(ranked[:max_names], dtype=int)


def formulation(size: int) -> tuple[cp.Problem, dict[str, cp.Parameter]]:
    """The mean-variance problem for up to ``size`` names in cvxpy, with its parameters (see
    :meth:`MeanVarianceProblem.inputs` for their values). Unused slots get a zero return, cap and
    risk, so they stay at zero. :class:`MeanVarianceProblem` solves exactly this problem."""
    w = cp.Variable(size, nonneg=True)
    p = {"mu": cp.Parameter(size),
         "factor": cp.Parameter((size, size)),             # sqrt(risk_aversion) x F with F F' = Sigma
         "caps": cp.Parameter(size, nonneg=True),
         "sectors": cp.Parameter((size, size), nonneg=True),   # row s: 1 for the names in sector s
         "max_sector": cp.Parameter(nonneg=True), "max_total": cp.Parameter(nonneg=True)}
    # w' Sigma w as ||F' w||^2: convex by construction, no PSD check on a nearly singular matrix.
    objective = cp.Maximize(p["mu"] @ w - cp.sum_squares(p["factor"].T @ w))
    constraints = [cp.sum(w) <= p["max_total"], w <= p["caps"], p["sectors"] @ w <= p["max_sector"]]
    return cp.Problem(objective, constraints), p


class MeanVarianceProblem:
    """:func:`formulation`'s problem for up to ``size`` names, solved by Clarabel on the matrices cvxpy
    would give it, built here: the same numbers to the last bit and the same solver re-use (one solver
    set up on the first solve, updated with each later one's data), so the weights are cvxpy's
    (``tests/risk/test_portfolio.py`` checks both). cvxpy's own path spends about 1.3 ms a solve (3 ms
    of a live bar) on its parameter update and bookkeeping; building the matrices costs 0.02 ms.

    Clarabel's form: minimise x'Px/2 + q'x subject to Ax + s = b, s in the cones, over x = [w, t]
    (t = F'w: the risk term is t't). A's rows: t = F'w (zero cone), then -w <= 0, sum(w) <= max_total,
    w <= caps, sectors w <= max_sector (non-negative cone). Keep one per sizer and pass it to
    :func:`allocate_weights`.
    """

    def __init__(self, size: int):
        n = self.size = int(size)
        # A in CSC, column w_j: rows 0..n-1 (F[j, :]), n+j (-1), 2n (1), 2n+1+j (1), 3n+1..4n (sectors[:, j]);
        # column t_i: row i (-1). Every F and sectors entry is stored, zero or not, as cvxpy stores them.
        rows = np.array([np.concatenate([np.arange(n), [n + j, 2 * n, 2 * n + 1 + j], 3 * n + 1 + np.arange(n)])
                         for j in range(n)]).reshape(-1)
        self._indices = np.concatenate([rows, np.arange(n)]).astype(np.int64)
        self._indptr = np.concatenate([np.arange(n + 1) * (2 * n + 3), n * (2 * n + 3) + np.arange(1, n + 1)])
        self._signs = np.tile([-1.0, 1.0, 1.0], (n, 1))
        self._P = sparse.csc_array((np.full(n, 2.0), np.arange(n, 2 * n),
                                    np.concatenate([np.zeros(n + 1, np.int64), np.arange(1, n + 1)])),
                                   shape=(2 * n, 2 * n))
        self._cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(3 * n + 1)]
        self._solver = None

    def inputs(self, mu: np.ndarray, cov: np.ndarray, caps: np.ndarray, sector_ids: np.ndarray, *,
               risk_aversion: float) -> dict[str, np.ndarray]:
        """:func:`formulation`'s parameter values (but the two limits) for the ``len(mu)`` names."""
        k = mu.size
        if k > self.size:
            raise ValueError(f"{k} names do not fit a problem of size {self.size}")
        values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
        values = np.clip(values, 0.0, None)  # the nearest PSD matrix: rounding-size negatives to 0
        # Per-bar returns make the objective tiny (~1e-4); scaling it to ~1 leaves the optimum
        # unchanged and lets the solver's absolute tolerances reach the weights' precision.
        scale = 1.0 / max(np.abs(mu).max(), risk_aversion * values.max(initial=0.0), 1e-300)
        factor = np.zeros((self.size, self.size))
        factor[:k, :k] = vectors * np.sqrt(values * risk_aversion * scale)
        sectors = np.zeros((self.size, self.size))
        sectors[sector_ids, np.arange(k)] = 1.0
        return {"mu": np.pad(mu * scale, (0, self.size - k)), "factor": factor,
                "caps": np.pad(caps, (0, self.size - k)), "sectors": sectors}

    def solver_data(self, inputs: dict[str, np.ndarray], max_total: float, max_sector: float):
        """(P, q, A, b, cones): what cvxpy's Clarabel interface passes the solver for these values."""
        n = self.size
        data = np.concatenate([np.hstack([inputs["factor"], self._signs, inputs["sectors"].T]).reshape(-1),
                               np.full(n, -1.0)])
        data[data == 0] = -0.0   # cvxpy's stored zeros are negative zeros
        A = sparse.csc_array((data, self._indices, self._indptr), shape=(4 * n + 1, 2 * n))
        q = np.concatenate([0.0 - inputs["mu"], np.zeros(n)])   # 0.0 - x: a zero return stays +0.0, as cvxpy's
        b = np.concatenate([np.zeros(2 * n), [max_total], inputs["caps"], np.full(n, max_sector)])
        return self._P, q, A, b, self._cones

    def solve(self, mu: np.ndarray, cov: np.ndarray, caps: np.ndarray, sector_ids: np.ndarray, *,
              risk_aversion: float, max_total: float, max_sector: float) -> tuple[np.ndarray | None, str]:
        """Weights of the ``len(mu)`` names (None when not solved) and the solver's status, in cvxpy's
        words ("optimal", "infeasible", ...)."""
        P, q, A, b, cones = self.solver_data(self.inputs(mu, cov, caps, sector_ids, risk_aversion=risk_aversion),
                                             float(max_total), float(max_sector))
        if not self._updated(P, q, A, b):
            settings = clarabel.DefaultSettings()
            settings.verbose = False
            self._solver = clarabel.DefaultSolver(P, q, A, b, cones, settings)
        solution = self._solver.solve()
        status = CLARABEL.STATUS_MAP.get(str(solution.status), cp.SOLVER_ERROR)
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return None, status
        w = np.maximum(np.asarray(solution.x[:mu.size], dtype=float), 0.0)   # as cvxpy's value of a nonneg variable
        if not np.all(np.isfinite(w)):
            return None, f"{status} with non-finite weights"
        return w, status

    def _updated(self, P, q, A, b) -> bool:
        """Whether the last solve's solver took the new data (cvxpy's re-use of a solver)."""
        solver = self._solver
        if solver is None or not solver.is_data_update_allowed():
            return False
        try:
            solver.update(P=P, q=q, A=A, b=b, settings=solver.get_settings())
        except Exception:   # as cvxpy: a solver that takes no update is set up anew
            return False
        return True


def allocate_weights(expected_returns, covariance, sectors: Sequence, *, risk_aversion: float,
                     max_weight: float, max_total: float, max_sector_weight: float, max_names: int,
                     kelly_caps=None, current_weights=None,
                     problem: MeanVarianceProblem | None = None) -> AllocationResult:
    """Long-only target weights over candidates and holdings (see the module docstring).

    - Caps: w_i <= min(max_weight, kelly_caps_i); a missing (NaN) or negative Kelly cap is 0.
    - Left out (weight 0): assets with a missing or non-positive expected return (we buy only what
      we expect to rise), a zero cap, or an unknown variance (NaN on the covariance's diagonal).
    - At most ``max_names``: the names are chosen before solving, so the count holds exactly: the
      held names (``current_weights > 0``) by expected return, then the other names by expected
      return into the free slots (the blueprint's "fill the free slots"). The solver may still give
      a chosen name zero weight. Not the mixed-integer optimum, which can pick differently.
    - Sectors: ``sectors`` aligns with the assets; missing labels form one "unknown" group.
    - Never raises on a solver failure, an infeasible or non-optimal status, or NaNs in the chosen
      names' covariance: a warning on the "risk" logger and the conservative fallback: keep the
      current weights clipped into every cap, and open nothing new (all zero with no holdings).
    - ``problem``: a :class:`MeanVarianceProblem` of size >= max_names to re-use (faster); a new
      one is compiled when None.
    """
    mu = np.asarray(expected_returns, dtype=float)
    n = mu.size
    cov = np.asarray(covariance, dtype=float)
    if mu.ndim != 1 or cov.shape != (n, n) or len(sectors) != n:
        raise ValueError(f"shapes disagree: expected_returns {mu.shape}, covariance {cov.shape}, "
                         f"{len(sectors)} sectors")
    kelly = np.full(n, np.inf) if kelly_caps is None else np.asarray(kelly_caps, dtype=float)
    current = np.zeros(n) if current_weights is None else np.asarray(current_weights, dtype=float)
    if kelly.shape != (n,) or current.shape != (n,):
        raise ValueError("kelly_caps and current_weights must align with expected_returns")
    caps = np.clip(np.minimum(float(max_weight), np.nan_to_num(kelly, nan=0.0, posinf=np.inf)), 0.0, None)
    current = np.nan_to_num(current, nan=0.0)
    sector_ids = _sector_ids(sectors)
    max_total, max_sector = max(float(max_total), 0.0), max(float(max_sector_weight), 0.0)

    def wrap(weights: np.ndarray):
        return pd.Series(weights, index=expected_returns.index) if isinstance(expected_returns, pd.Series) else weights

    usable = np.isfinite(mu) & (mu > 0) & (caps > _WEIGHT_EPS) & np.isfinite(np.diag(cov))
    left_out = int(np.sum(np.isfinite(mu) & (mu > 0) & ~usable))
    note = f"{left_out} name(s) with a positive expected return left out (zero cap or unknown variance)" if left_out else ""
    chosen = _select(mu, usable, current > 0, max(int(max_names), 0))
    if chosen.size == 0 or max_total == 0 or max_sector == 0:
        return AllocationResult(wrap(np.zeros(n)), "no_candidates", False, note or "nothing to hold")

    if problem is None:
        problem = MeanVarianceProblem(chosen.size)
    elif problem.size < chosen.size:
        raise ValueError(f"problem of size {problem.size} is smaller than max_names {max_names}")
    sub_cov = cov[np.ix_(chosen, chosen)]
    try:
        if not np.all(np.isfinite(sub_cov)):
            raise ValueError("covariance has NaN entries between chosen names")
        # sectors renumbered 0.. among the chosen names, one constraint row each
        chosen_sectors = pd.factorize(sector_ids[chosen])[0]
        solved, status = problem.solve(mu[chosen], sub_cov, caps[chosen], chosen_sectors,
                                       risk_aversion=float(risk_aversion), max_total=max_total,
                                       max_sector=max_sector)
        failure = None if solved is not None else f"solver status {status}"
    except Exception as exc:  # any solver or numerical failure must not stop trading decisions
        solved, failure = None, f"{type(exc).__name__}: {exc}"
    if solved is None:
        message = f"portfolio optimisation failed ({failure}); keeping current weights within caps, no new names"
        log.warning(message)
        return AllocationResult(wrap(_within_caps(current, caps, sector_ids, max_sector, max_total)),
                                "fallback", True, message)
    weights = np.zeros(n)
    weights[chosen] = solved
    return AllocationResult(wrap(_within_caps(weights, caps, sector_ids, max_sector, max_total)),
                            status, False, note)


class MeanVarianceSizer:
    """The trading plan's target weights: :func:`allocate_weights` on the shrunk covariance of the
    trailing returns, with quarter-Kelly caps (``risk.kelly``) when win probabilities are given. The
    problem is compiled once for ``risk.max_positions`` names and re-solved each bar; whole shares
    come from ``risk.sizing``."""

    def __init__(self, risk):
        self.risk = risk   # config.schema.RiskConfig
        self.problem = MeanVarianceProblem(risk.max_positions)

    def weights(self, expected_returns: pd.Series, returns: pd.DataFrame, sectors: pd.Series, *,
                current_weights: pd.Series, max_names: int, p_win: pd.Series | None = None,
                expected_gain: pd.Series | None = None, stop_distance: pd.Series | None = None) -> AllocationResult:
        """Weights of the names of ``expected_returns`` (per bar): candidates and holdings.

        returns: trailing per-bar returns (columns: the same names) for the shrunk covariance;
        each name's weight at most ``max_position_weight`` and, when ``p_win`` is given,
        ``kelly_fraction`` x Kelly of its win probability and payoff (expected gain / stop distance)."""
        r = self.risk
        index = expected_returns.index
        names = list(index)
        # numpy on the frame's values and positions: pandas' reindex costs about a millisecond a call
        columns = returns.columns.get_indexer(index)
        values = returns.to_numpy(dtype=float)
        values = values[max(len(values) - r.covariance_bars, 0):]   # as tail(covariance_bars)
        window = np.where(columns >= 0, values[:, columns], np.nan) if len(columns) else values[:, :0]
        cov = shrunk_covariance(window, min_observations=r.min_history_bars)
        caps = None if p_win is None else np.asarray(
            kelly_cap(_aligned(p_win, index), _aligned(expected_gain, index), _aligned(stop_distance, index),
                      r.kelly_fraction), float)
        sector_of = sectors.to_dict()
        return allocate_weights(expected_returns, cov, [sector_of.get(name) for name in names],
                                risk_aversion=r.risk_aversion, max_weight=r.max_position_weight,
                                max_total=r.max_total_weight, max_sector_weight=r.max_sector_weight,
                                max_names=max_names, kelly_caps=caps,
                                current_weights=_aligned(current_weights, index, fill=0.0),
                                problem=self.problem)


def _aligned(series: pd.Series, index: pd.Index, fill: float = np.nan) -> np.ndarray:
    """``series``' values in ``index``'s order, ``fill`` where it has none or NaN (a series on that very
    index, or an equal one, is read as it is)."""
    values = (series.to_numpy(dtype=float) if series.index is index or series.index.equals(index)
              else series.reindex(index).to_numpy(dtype=float))
    return values if np.isnan(fill) else np.where(np.isnan(values), fill, values)
