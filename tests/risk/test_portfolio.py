import logging

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose
from scipy import sparse
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf

from risk.portfolio import MeanVarianceProblem, allocate_weights, formulation, shrunk_covariance

TOL = 1e-9
LIMITS = dict(risk_aversion=0.5, max_weight=0.10, max_total=1.0, max_sector_weight=0.30, max_names=20)


@pytest.fixture(scope="module")
def problem():
    return MeanVarianceProblem(25)


@pytest.fixture(scope="module")
def window(sample_returns):
    """120 real daily returns of the 28 sample stocks ending 2017-06-30."""
    return sample_returns.loc[:"2017-06-30"].tail(120)


def check_caps(weights, *, sectors, max_weight, max_total, max_sector_weight, max_names, kelly_caps=None, **_):
    w = np.asarray(weights, dtype=float)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    assert w.sum() <= max_total + TOL
    caps = np.full(w.size, max_weight) if kelly_caps is None else np.minimum(max_weight, np.nan_to_num(kelly_caps))
    assert np.all(w <= np.clip(caps, 0, None) + TOL)
    assert np.count_nonzero(w) <= max_names
    labels = pd.Series([s if s else "?" for s in sectors])
    assert pd.Series(w).groupby(labels).sum().max() <= max_sector_weight + TOL


# ---- covariance ------------------------------------------------------------------------------
def test_shrunk_covariance_on_real_returns_is_ledoit_wolf_and_positive_definite(window):
    cov = shrunk_covariance(window)
    assert cov.shape == (28, 28)
    assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
    assert_allclose(cov, LedoitWolf().fit(window.to_numpy()).covariance_)


def test_shrunk_covariance_with_a_late_listing(sample_returns):
    # PYPL lists 2015-07-06: 20 of its returns in a 120-row window ending in early August 2015
    window = sample_returns.loc[:"2015-08-03"].tail(120)
    assert window["PYPL"].notna().sum() == 20
    cov = shrunk_covariance(window, min_observations=20)
    complete = window.dropna()
    assert_allclose(cov, LedoitWolf().fit(complete.to_numpy()).covariance_)  # the common dates only
    unknown = shrunk_covariance(window, min_observations=21)
    pypl = window.columns.get_loc("PYPL")
    assert np.isnan(unknown[pypl]).all() and np.isnan(unknown[:, pypl]).all()
    others = np.delete(np.delete(unknown, pypl, 0), pypl, 1)
    assert_allclose(others, LedoitWolf().fit(window.drop(columns="PYPL").to_numpy()).covariance_)


def test_shrunk_covariance_short_and_disjoint_histories():
    data = np.array([[0.01, np.nan], [0.02, np.nan], [np.nan, -0.01], [np.nan, 0.03]])
    assert_allclose(shrunk_covariance(data), np.diag(np.nanvar(data, axis=0, ddof=1)))
    assert np.isnan(shrunk_covariance(np.full((3, 2), np.nan))).all()


# ---- known solutions -------------------------------------------------------------------------
def test_interior_solution_matches_the_closed_form(window):
    # with no cap binding, the optimum of mu'w - l w'Sw is w = S^-1 mu / (2 l): choose mu for a target w
    cov = shrunk_covariance(window[["AAPL", "JPM", "XOM"]])
    target = np.array([0.2, 0.3, 0.1])
    mu = 2 * 0.5 * cov @ target
    result = allocate_weights(mu, cov, ["IT", "Fin", "Energy"], risk_aversion=0.5, max_weight=1.0,
                              max_total=1.0, max_sector_weight=1.0, max_names=3)
    assert result.status == "optimal" and not result.fallback_used
    assert_allclose(result.weights, target, atol=1e-6)


def test_binding_caps_match_scipy(window):
    symbols = ["AAPL", "MSFT", "JPM"]
    cov = shrunk_covariance(window[symbols])
    mu = np.array([0.004, 0.003, 0.002])
    lam, cap, total, sector_cap = 10.0, 0.5, 0.8, 0.6
    result = allocate_weights(mu, cov, ["IT", "IT", "Fin"], risk_aversion=lam, max_weight=cap,
                              max_total=total, max_sector_weight=sector_cap, max_names=3)
    reference = minimize(lambda w: -(mu @ w - lam * w @ cov @ w), x0=np.full(3, 0.1), method="SLSQP",
                         bounds=[(0, cap)] * 3, options={"ftol": 1e-14, "maxiter": 500},
                         constraints=[{"type": "ineq", "fun": lambda w: total - w.sum()},
                                      {"type": "ineq", "fun": lambda w: sector_cap - w[0] - w[1]}])
    assert reference.success
    assert_allclose(result.weights, reference.x, atol=1e-5)
    assert result.weights[0] + result.weights[1] == pytest.approx(sector_cap, abs=1e-7)  # the sector binds


def test_real_universe_respects_caps_and_fills_from_the_best(window, sectors):
    # expected returns: each stock's trailing 60-day mean return (real, causal)
    mu = window.tail(60).mean()
    labels = [sectors[s] for s in mu.index]
    result = allocate_weights(mu, shrunk_covariance(window), labels, **{**LIMITS, "max_names": 5})
    assert isinstance(result.weights, pd.Series) and list(result.weights.index) == list(mu.index)
    check_caps(result.weights, sectors=labels, **{**LIMITS, "max_names": 5})
    assert set(result.weights[result.weights > 0].index) <= set(mu.nlargest(5).index)
    # a held name with a positive expected return keeps its slot ahead of better new names
    held = mu[mu > 0].nsmallest(1).index[0]
    current = pd.Series(0.0, index=mu.index)
    current[held] = 0.05
    kept = allocate_weights(mu, shrunk_covariance(window), labels, current_weights=current,
                            **{**LIMITS, "max_names": 5})
    assert kept.weights[held] > 0 and np.count_nonzero(kept.weights) <= 5


def test_kelly_caps_bind(window, sectors, problem):
    mu = window.tail(60).mean().clip(lower=1e-4)
    kelly = np.full(len(mu), 0.03)
    kelly[:3] = np.nan                                         # no calibrated probability: no position
    labels = [sectors[s] for s in mu.index]
    result = allocate_weights(mu, shrunk_covariance(window), labels, kelly_caps=kelly, problem=problem, **LIMITS)
    check_caps(result.weights, sectors=labels, kelly_caps=kelly, **LIMITS)
    assert np.all(result.weights.iloc[:3] == 0)
    assert result.weights.max() == pytest.approx(0.03, abs=1e-7)


def test_unknown_inputs_are_left_out_not_fatal(window, sectors):
    mu = window.tail(60).mean().abs() + 1e-4
    mu.iloc[0] = np.nan
    cov = shrunk_covariance(window)
    cov[1, :] = cov[:, 1] = np.nan                             # unknown variance
    labels = [sectors[s] for s in mu.index]
    result = allocate_weights(mu, cov, labels, **LIMITS)
    assert not result.fallback_used and result.weights.iloc[0] == 0 and result.weights.iloc[1] == 0
    assert "1 name(s)" in result.message
    nothing = allocate_weights(-mu.abs(), cov, labels, **LIMITS)
    assert nothing.status == "no_candidates" and nothing.weights.sum() == 0


def test_mismatched_shapes_are_a_programming_error():
    with pytest.raises(ValueError, match="shapes disagree"):
        allocate_weights(np.ones(3), np.eye(2), ["a"] * 3, **LIMITS)


# ---- failures --------------------------------------------------------------------------------
def test_solver_failure_falls_back_to_current_weights_within_caps(window, sectors, monkeypatch, caplog):
    def broken_solve(self, *args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(MeanVarianceProblem, "solve", broken_solve)
    mu = window.tail(60).mean().abs() + 1e-4
    labels = [sectors[s] for s in mu.index]
    current = np.zeros(len(mu))
    current[:2] = [0.25, 0.04]                                  # the first above the 10% cap
    with caplog.at_level(logging.WARNING, logger="risk"):
        result = allocate_weights(mu, shrunk_covariance(window), labels, current_weights=current, **LIMITS)
    assert result.fallback_used and result.status == "fallback" and "forced failure" in result.message
    assert any(r.name == "risk" and r.levelno == logging.WARNING and "forced failure" in r.getMessage()
               for r in caplog.records)
    assert_allclose(result.weights.iloc[:2], [0.10, 0.04])
    assert result.weights.iloc[2:].sum() == 0                  # nothing new opened
    empty = allocate_weights(mu, shrunk_covariance(window), labels, **LIMITS)
    assert empty.fallback_used and empty.weights.sum() == 0


def test_a_status_short_of_optimal_falls_back(window, sectors, caplog):
    """The solver stopped by its iteration limit ("MaxIterations", cvxpy's "user_limit"): not a solution."""
    mu = window.tail(60).mean().abs() + 1e-4
    labels = [sectors[s] for s in mu.index]
    problem = MeanVarianceProblem(25)
    assert not allocate_weights(mu, shrunk_covariance(window), labels, problem=problem, **LIMITS).fallback_used
    settings = problem._solver.get_settings()
    settings.max_iter = 1   # kept by the next solve's update, as cvxpy keeps a cached solver's settings
    problem._solver.update(settings=settings)
    with caplog.at_level(logging.WARNING, logger="risk"):
        result = allocate_weights(mu, shrunk_covariance(window), labels, problem=problem, **LIMITS)
    assert result.fallback_used and "user_limit" in result.message and result.weights.sum() == 0
    assert "user_limit" in caplog.text


def test_nan_between_chosen_names_falls_back(window, sectors):
    mu = window.tail(60).mean().abs() + 1e-4
    cov = shrunk_covariance(window)
    cov[0, 1] = cov[1, 0] = np.nan
    mu.iloc[:2] = 0.01                                         # both among the chosen names
    result = allocate_weights(mu, cov, [sectors[s] for s in mu.index], **LIMITS)
    assert result.fallback_used and "NaN" in result.message


# ---- properties ------------------------------------------------------------------------------
@st.composite
def allocation_inputs(draw):
    n = draw(st.integers(1, 30))
    rows = draw(st.integers(1, 8))                             # often fewer rows than names: singular
    factors = draw(arrays(float, (rows, n), elements=st.floats(-0.05, 0.05)))
    cov = factors.T @ factors / rows
    mu = draw(arrays(float, n, elements=st.floats(-0.01, 0.01) | st.just(np.nan)))
    sectors = draw(st.lists(st.sampled_from(["A", "B", "C", "D", None]), min_size=n, max_size=n))
    kelly = draw(st.none() | arrays(float, n, elements=st.floats(-0.1, 0.3) | st.just(np.nan)))
    current = draw(st.none() | arrays(float, n, elements=st.floats(0, 0.3)))
    limits = dict(risk_aversion=draw(st.floats(0, 50)), max_weight=draw(st.floats(0, 0.5)),
                  max_total=draw(st.floats(0, 1)), max_sector_weight=draw(st.floats(0, 1)),
                  max_names=draw(st.integers(1, 25)))
    return mu, cov, sectors, kelly, current, limits


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allocation_inputs())
def test_weights_respect_every_cap(problem, inputs):
    mu, cov, sectors, kelly, current, limits = inputs
    result = allocate_weights(mu, cov, sectors, kelly_caps=kelly, current_weights=current, problem=problem, **limits)
    check_caps(result.weights, sectors=sectors, kelly_caps=kelly, **limits)
    assert not result.fallback_used  # these inputs are all solvable


@settings(deadline=None, max_examples=50)
@given(seed=st.integers(0, 2**32 - 1), names=st.integers(1, 20), kelly=st.booleans())
def test_weights_respect_every_cap_on_real_covariance(problem, window, sectors, seed, names, kelly):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0005, 0.002, window.shape[1])
    caps = rng.uniform(0, 0.15, mu.size) if kelly else None
    labels = [sectors[s] for s in window.columns]
    limits = {**LIMITS, "max_names": names}
    result = allocate_weights(mu, shrunk_covariance(window), labels, kelly_caps=caps, problem=problem, **limits)
    check_caps(result.weights, sectors=labels, kelly_caps=caps, **limits)
    assert result.status == "optimal"


# ---- the direct solve is cvxpy's ------------------------------------------------------------------
def _cases(window, count: int, size: int, seed: int = 11):
    """Random sub-problems of the real window: names, returns, caps, sectors, risk aversion; some
    with a name of zero variance (a singular covariance: exact zeros in the factor)."""
    rng = np.random.default_rng(seed)
    cov_all = shrunk_covariance(window)
    for i in range(count):
        k = int(rng.integers(1, size + 1))
        pick = rng.choice(window.shape[1], size=k, replace=False)
        cov = cov_all[np.ix_(pick, pick)].copy()
        if i % 5 == 0:
            cov[0, :] = cov[:, 0] = 0.0
        yield dict(mu=rng.normal(5e-4, 1e-3, k), cov=cov, caps=rng.choice([0.0, 0.02, 0.1], k),
                   sector_ids=rng.integers(0, 4, k), risk_aversion=float(rng.uniform(0.1, 3.0)))


def _bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=float).view(np.int64)   # tells 0.0 from -0.0


def _give(parameters, problem, case, **limits) -> dict:
    """The cvxpy problem's parameters set to ``problem``'s inputs for ``case``; returns the inputs."""
    inputs = problem.inputs(case["mu"], case["cov"], case["caps"], case["sector_ids"],
                            risk_aversion=case["risk_aversion"])
    for name, value in {**inputs, **limits}.items():
        parameters[name].value = value
    return inputs


def test_solver_data_is_cvxpys_to_the_bit(window):
    size = 12
    problem = MeanVarianceProblem(size)
    cvx, parameters = formulation(size)
    for case in _cases(window, 40, size):
        inputs = _give(parameters, problem, case, max_total=0.9, max_sector=0.3)
        data = cvx.get_problem_data(cp.CLARABEL)[0]
        P, q, A, b, cones = problem.solver_data(inputs, 0.9, 0.3)
        expected_P = sparse.triu(data["P"]).tocsc()   # as cvxpy's Clarabel interface passes it
        for ours, theirs in ((P, expected_P), (A, data["A"])):
            assert ours.shape == theirs.shape
            assert np.array_equal(ours.indptr, theirs.indptr) and np.array_equal(ours.indices, theirs.indices)
            assert np.array_equal(_bits(ours.data), _bits(theirs.data))
        assert np.array_equal(_bits(q), _bits(data["c"])) and np.array_equal(_bits(b), _bits(data["b"]))
        assert [repr(c) for c in cones] == [f"ZeroConeT({data['dims'].zero})",
                                            f"NonnegativeConeT({data['dims'].nonneg})"]


def test_weights_are_cvxpys_to_the_bit_solve_after_solve(window):
    """A run of solves, as a sizer's over a backtest: cvxpy sets Clarabel up on the first and updates
    it on each later one (which gives different last digits than a fresh set-up); so does the direct path."""
    size = 12
    problem = MeanVarianceProblem(size)
    cvx, parameters = formulation(size)
    statuses = set()
    for case in _cases(window, 60, size, seed=3):
        ours, status = problem.solve(case["mu"], case["cov"], case["caps"], case["sector_ids"],
                                     risk_aversion=case["risk_aversion"], max_total=1.0, max_sector=0.3)
        _give(parameters, problem, case, max_total=1.0, max_sector=0.3)
        cvx.solve(solver=cp.CLARABEL)
        assert status == cvx.status
        statuses.add(status)
        theirs = cvx.variables()[0].value[:case["mu"].size]
        assert np.array_equal(_bits(ours), _bits(theirs))
    assert statuses == {cp.OPTIMAL}
