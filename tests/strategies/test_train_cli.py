"""``python run.py train``: a model for live use in the registry, with its manifest."""
import json

import pytest

import run
from config import load_config
from features.from_config import engine_from_config
from models import registry

pytestmark = pytest.mark.slow

SMALL_TOML = """
[models]
base_models = ["lightgbm"]
threads = 1
train_bars = 126
retrain_every = 63
[models.lightgbm]
n_estimators = 40
[models.search]
draws = 2
folds = 2
"""


def test_train_writes_a_loadable_model_with_its_manifest(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    out = tmp_path / "registry" / "small"
    data = ["--data", "data/sample/AAPL_data.csv", "--data", "data/sample/KO_data.csv",
            "--data", "data/sample/XOM_data.csv"]
    argv = ["train", *data, "--config", str(config), "--end", "2017-06-30", "--seed", "7", "--out", str(out)]
    assert run.main(argv) == 0
    assert "walk-forward validation" in capsys.readouterr().out
    manifest = json.loads((out / registry.MANIFEST).read_text())
    assert manifest["symbols"] == ["AAPL", "KO", "XOM"] and manifest["seed"] == 7
    assert manifest["training_range"][1] <= "2017-06-30"
    v = manifest["validation_metrics"]
    assert v["folds"] >= 8 and 0 < v["directional_accuracy"] < 1 and v["n_configurations"] == 2
    cfg = load_config(config)
    names = engine_from_config(cfg, manifest["symbols"]).names
    predictor, _ = registry.load(out, names)
    assert predictor.fitted_at is not None
    # an existing model is never overwritten by accident
    assert run.main(argv) == 2
    assert "holds a model already" in capsys.readouterr().err
