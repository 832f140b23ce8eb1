"""Optuna search and the search entry point: repeatable for a seed, the same whatever executor runs
the trials and in whatever order, a journal other processes can load, every trial counted; random
search still available with its earlier numbers."""
import math

import numpy as np
import optuna
import pytest
from numpy.testing import assert_allclose

from config import load_config
from common.errors import ConfigError
from config.schema import LightGBMParams
from models.executor import SerialExecutor
from models.plugins import LightGBMPlugin
from models.search import open_storage, optuna_search, random_search, search
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg

SPACE = {"num_leaves": [3, 7, 15], "learning_rate": [0.05, 0.1], "n_estimators": [10, 20]}


@pytest.fixture(scope="module")
def window(sample_prices, sample_features):
    """The first 300 bars of 5 sample symbols: (base params, X, y, bars, label end, embargo)."""
    cfg = small_models_cfg()
    data = panel_data(sample_prices, sample_features[0], cfg, symbols=slice(0, 5), bars=slice(0, 300))
    bars, symbols = WalkForward(cfg, seed=0).predictor.training_rows(data, 299)
    return (cfg.lightgbm, data.values[bars, symbols], data.labels.returns[bars, symbols], bars,
            data.labels.sample_end[bars, symbols], cfg.embargo_bars)


def run_optuna(window, draws=6, seed=1, plugin=LightGBMPlugin, **kw):
    params, X, y, bars, end, embargo = window
    return optuna_search(plugin, params, SPACE, draws, X, y, bars, end, 3, embargo, seed, 1, **kw)


class ReversedExecutor:
    """Runs each map's tasks last to first (as tasks finishing out of order would), results in item
    order; counts what it is asked to share."""

    def __init__(self):
        self.shared, self.tasks = 0, 0

    def share(self, value):
        self.shared += 1
        return value

    def map(self, fn, items, *, shared=None, desc=None, progress=False):
        items = list(items)
        out = [None] * len(items)
        for k in reversed(range(len(items))):
            out[k] = fn(shared, items[k])
        self.tasks += len(items)
        return out


def test_optuna_search_repeats_for_a_seed(window):
    first, second = run_optuna(window), run_optuna(window)
    assert first.scores == second.scores and first.best_params == second.best_params
    assert first.n_tried == 6 == len(first.scores)
    assert isinstance(first.best_params, LightGBMParams)
    assert first.best_score == max(s for _, s in first.scores)
    best_values = next(v for v, s in first.scores if s == first.best_score)
    assert all(getattr(first.best_params, k) == v for k, v in best_values.items())
    assert first.best_params.early_stopping_rounds == window[0].early_stopping_rounds   # back on for the fit
    assert all(set(v) == set(SPACE) and all(v[k] in SPACE[k] for k in v) for v, _ in first.scores)
    assert run_optuna(window, seed=2).scores != first.scores


def test_optuna_results_depend_on_batch_not_on_the_executor(window):
    reversed_executor = ReversedExecutor()
    serial = run_optuna(window, draws=7, batch=3, executor=SerialExecutor())
    shuffled = run_optuna(window, draws=7, batch=3, executor=reversed_executor)
    assert shuffled.scores == serial.scores and shuffled.best_params == serial.best_params
    assert serial.n_tried == 7                                  # batches of 3, 3 and 1
    assert reversed_executor.shared == 1                        # the training rows go out once
    assert 0 < reversed_executor.tasks <= 7                     # a configuration proposed again is not refitted


def test_the_journal_holds_every_trial_for_other_processes(window, tmp_path):
    path = tmp_path / "runs" / "search.journal"
    result = run_optuna(window, storage=path, study_name="lightgbm-bar299")
    assert path.stat().st_size > 0
    study = optuna.load_study(study_name="lightgbm-bar299", storage=open_storage(path))
    assert len(study.trials) == result.n_tried == 6
    assert [t.params for t in study.trials] == [v for v, _ in result.scores]
    assert [t.value for t in study.trials] == [s for _, s in result.scores]
    assert study.best_value == result.best_score
    assert run_optuna(window).scores == result.scores           # the storage changes nothing
    again = run_optuna(window, storage=path, study_name="lightgbm-bar299")
    assert again.scores == result.scores                        # a rerun replaces its study ...
    assert len(optuna.load_study(study_name="lightgbm-bar299", storage=open_storage(path)).trials) == 6
    run_optuna(window, draws=2, storage=path, study_name="xgboost-bar299")
    assert sorted(optuna.get_all_study_names(open_storage(path))) == ["lightgbm-bar299", "xgboost-bar299"]


class SmallLeavesFail(LightGBMPlugin):
    """Predicts a constant (no finite information coefficient) with 3 leaves."""

    def predict(self, X):
        pred = super().predict(X)
        return np.zeros_like(pred) if self.params.num_leaves == 3 else pred


def test_failed_trials_are_told_failed_and_counted(window, tmp_path):
    path = tmp_path / "search.journal"
    result = run_optuna(window, draws=8, plugin=SmallLeavesFail, storage=path, study_name="s")
    failed = [v for v, s in result.scores if s == -math.inf]
    assert failed and all(v["num_leaves"] == 3 for v in failed)
    assert result.n_tried == 8 == len(result.scores)
    assert math.isfinite(result.best_score) and result.best_params.num_leaves != 3
    states = [t.state for t in optuna.load_study(study_name="s", storage=open_storage(path)).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == len(failed)
    assert states.count(optuna.trial.TrialState.COMPLETE) == 8 - len(failed)


def test_a_grid_smaller_than_the_draws_caps_the_trials(window):
    params, X, y, bars, end, embargo = window
    small = optuna_search(LightGBMPlugin, params, {"num_leaves": [3, 7]}, 50, X, y, bars, end, 3, 0, 1, 1)
    assert small.n_tried == 2


def test_random_search_keeps_its_numbers_on_any_executor(window):
    params, X, y, bars, end, embargo = window
    space = {"num_leaves": [3, 7], "learning_rate": [0.05, 0.1], "n_estimators": [10, 20]}
    args = (LightGBMPlugin, params, space, 3, X, y, bars, end, 3, embargo, 1, 1)
    serial, shuffled = random_search(*args), random_search(*args, executor=ReversedExecutor())
    assert shuffled.scores == serial.scores
    # the draws and scores of the search before it ran on an executor
    assert [v for v, _ in serial.scores] == [{"num_leaves": 7, "n_estimators": 20, "learning_rate": 0.1},
                                            {"num_leaves": 3, "n_estimators": 20, "learning_rate": 0.05},
                                            {"num_leaves": 7, "n_estimators": 10, "learning_rate": 0.05}]
    assert_allclose([s for _, s in serial.scores], [0.022514835139401397, 0.0035716953711697297,
                                                    0.022877132226436885], rtol=1e-9)
    assert serial.best_params.n_estimators == 10 and serial.n_tried == 3


def test_search_runs_the_configured_method(window):
    params, X, y, bars, end, embargo = window
    args = (LightGBMPlugin, params, SPACE, 4, X, y, bars, end, 3, embargo, 1, 1)
    assert search("random", *args, batch=2, storage=None).scores == random_search(*args).scores
    assert search("optuna", *args, batch=2).scores == optuna_search(*args, batch=2).scores
    with pytest.raises(ValueError, match="unknown search method 'grid'"):
        search("grid", *args)


def test_search_config_method_and_batch():
    s = load_config().models.search
    assert (s.method, s.batch) == ("optuna", 4)
    assert load_config("config/blueprint.toml").models.search.method == "random"   # the blueprint's own
    with pytest.raises(ConfigError, match=r"models\.search\.batch"):
        load_config(overrides={"models.search.batch": 0})
    with pytest.raises(ConfigError, match=r"models\.search\.method"):
        load_config(overrides={"models.search.method": "tpe"})


@pytest.mark.slow
def test_ray_gives_the_serial_results(window):
    ray = pytest.importorskip("ray")
    from models.executor import RayExecutor

    serial = run_optuna(window, draws=5, batch=3)
    try:
        on_ray = run_optuna(window, draws=5, batch=3, executor=RayExecutor(num_cpus=2))
    finally:
        ray.shutdown()
    assert on_ray.scores == serial.scores and on_ray.best_params == serial.best_params
