"""``run.py backtest --executor ray``: the whole ``ml`` backtest with its walk-forward trained as Ray
tasks on a local Ray (2 CPUs) writes the metrics.json and orders a serial run writes, byte for byte."""
import json

import pytest

import run
from tests.strategies.test_train_cli import SMALL_TOML

pytestmark = pytest.mark.slow


def test_ray_backtest_writes_the_serial_metrics_and_orders(tmp_path):
    ray = pytest.importorskip("ray")
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML + "[backtest]\nprogress = false\n[executor]\nnum_cpus = 2\n")
    common = ["backtest", "--strategy", "ml", "--config", str(config), "--no-plot", "--seed", "3"]
    try:
        assert run.main([*common, "--out", str(tmp_path / "serial")]) == 0
        assert run.main([*common, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
        assert ray.is_initialized()               # the run did start a local Ray
    finally:
        ray.shutdown()
    for name in ("metrics.json", "orders.csv", "trades.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    # every search trial is in the run's Optuna journal, and counted in the deflated Sharpe's trials
    from models.search import open_storage

    metrics = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    storage = open_storage(tmp_path / "ray" / "search.journal")
    trials = sum(storage.get_n_trials(storage.get_study_id_from_name(study.study_name))
                 for study in storage.get_all_studies())
    assert trials == metrics["walk_forward"]["n_configurations"] > 0
    assert metrics["n_trials"] == trials + 1


def test_ray_address_with_serial_is_refused(capsys):
    assert run.main(["backtest", "--executor", "serial", "--ray-address", "10.0.0.1:6379"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err
