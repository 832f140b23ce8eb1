"""Executors (``models.executor``): the walk-forward gives the same numbers in this process and on
Ray; results come back in order; a worker killed mid-task is retried; a task that raises fails the
whole map with its error."""
import os
import signal
from dataclasses import fields

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from models.executor import RayExecutor, SerialExecutor, TaskFailed, make_executor
from models.predictor import Predictions
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    executor = RayExecutor(num_cpus=2)
    yield executor
    ray.shutdown()


def _square(offset, x):
    return x * x + offset


def _fail_on_three(_, x):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def _die_once(marker_dir, x):
    """Kills its own worker process the first time it sees item 1, as an out-of-memory kill would."""
    marker = os.path.join(marker_dir, f"seen-{x}")
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def test_serial_maps_in_order_with_the_shared_value():
    executor = make_executor("serial")
    assert executor.map(_square, [3, 1, 2], shared=executor.share(1)) == [10, 2, 5]


def test_serial_task_error_is_raised_as_is():
    with pytest.raises(ValueError, match="bad item 3"):
        SerialExecutor().map(_fail_on_three, [1, 2, 3, 4])


def test_unknown_executor_is_an_error():
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


@pytest.mark.slow
def test_ray_maps_in_order(ray_executor):
    assert ray_executor.map(_square, list(range(8)), shared=ray_executor.share(1)) == [x * x + 1 for x in range(8)]


@pytest.mark.slow
def test_ray_task_error_fails_the_map_with_that_error(ray_executor):
    with pytest.raises(TaskFailed, match=r"task 4 of 5 failed: ValueError: bad item 3") as info:
        ray_executor.map(_fail_on_three, [0, 1, 2, 3, 4])
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.slow
def test_ray_retries_a_task_whose_worker_was_killed(ray_executor, tmp_path):
    assert ray_executor.map(_die_once, [0, 1, 2], shared=str(tmp_path)) == [0, 10, 20]
    assert (tmp_path / "seen-1").exists()          # the first attempt did run, and died


@pytest.mark.slow
def test_walk_forward_on_ray_gives_the_serial_numbers(ray_executor, sample_prices, sample_features):
    """Every model kind (trees, dense net, LSTM), the first window's out-of-fold fits and the folds
    as Ray tasks: predictions, folds and the search count equal the serial run's exactly."""
    cfg = small_models_cfg(base_models=["lightgbm", "dense", "lstm"], **{"dense.epochs": 1, "lstm.epochs": 1})
    data = panel_data(sample_prices, sample_features[0], cfg, symbols=slice(0, 5), bars=slice(0, 380))
    serial = WalkForward(cfg, seed=5).run(data)
    on_ray = WalkForward(cfg, seed=5).run(data, executor=ray_executor)
    for f in fields(Predictions):
        assert_array_equal(getattr(on_ray.predictions, f.name), getattr(serial.predictions, f.name), err_msg=f.name)
    assert len(on_ray.folds) == len(serial.folds) >= 3
    for a, b in zip(on_ray.folds, serial.folds):
        assert (a.fit_bar, a.n_train, a.n_meta, a.n_test, a.model_weights) == \
               (b.fit_bar, b.n_train, b.n_meta, b.n_test, b.model_weights)
        assert_array_equal(a.feature_importance, b.feature_importance)
    assert on_ray.n_configurations == serial.n_configurations
    assert np.isfinite(on_ray.predictions.confidence).all()
