"""A saved model predicts exactly as before; a model trained on another feature list is refused."""
import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from common.errors import UserError
from models import registry
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg


def train(prices, features, cfg):
    values, names = features
    data = panel_data(prices, values, cfg, symbols=slice(0, 5), bars=slice(0, 330))
    result = WalkForward(cfg, seed=5).run(data)
    return data, names, result.predictor


def round_trip(tmp_path, prices, features, cfg):
    data, names, predictor = train(prices, features, cfg)
    manifest = registry.save(predictor, tmp_path / "m", feature_names=names, feature_registry_hash="abc123",
                             config_hash="cfg456", training_range=("2013-02-08", "2014-05-01"),
                             validation_metrics={"directional_accuracy": 0.52, "ic": float("nan")})
    loaded, read = registry.load(tmp_path / "m", names, expected_registry_hash="abc123")
    bars, symbols = np.repeat(np.arange(300, 330), 5), np.tile(np.arange(5), 30)
    before, after = predictor.predict(data, bars, symbols), loaded.predict(data, bars, symbols)
    for field in ("expected_return", "prob_up", "lower", "upper", "volatility", "regime", "entry_timing",
                  "exit_timing", "stop_distance", "base"):
        assert_array_equal(getattr(after, field), getattr(before, field), err_msg=field)
    return manifest, read, names


def test_saved_model_predicts_identically_and_records_its_provenance(tmp_path, sample_prices, sample_features):
    manifest, read, names = round_trip(tmp_path, sample_prices, sample_features, small_models_cfg())
    assert read == json.loads((tmp_path / "m" / "manifest.json").read_text()) == manifest
    assert read["feature_names"] == names and read["seed"] == 5 and read["config_hash"] == "cfg456"
    assert read["validation_metrics"] == {"directional_accuracy": 0.52, "ic": None}
    assert read["library_versions"]["lightgbm"]
    assert set(read["model_ids"]) == {"lightgbm", "timing", "stoploss", "state"}


@pytest.mark.slow
def test_saved_ensemble_of_all_models_predicts_identically(tmp_path, sample_prices, sample_features):
    cfg = small_models_cfg(base_models=["xgboost", "lightgbm", "dense", "lstm"], **{"timing.model": "lstm"})
    round_trip(tmp_path, sample_prices, sample_features, cfg)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, sample_prices, sample_features):
    folder = tmp_path_factory.mktemp("registry") / "m"
    _, names, predictor = train(sample_prices, sample_features, small_models_cfg())
    registry.save(predictor, folder, feature_names=names, feature_registry_hash="abc123", config_hash="c",
                  training_range=("a", "b"))
    return folder, names


@pytest.mark.parametrize("change, message", [
    (lambda n: n[:-1], r"1 feature\(s\) the model needs are not computed by the code: \['from_low_60'\]"),
    (lambda n: n + ["rsi_14"], r"1 feature\(s\) the code computes are unknown to the model: \['rsi_14'\]"),
    (lambda n: [n[1], n[0]] + n[2:], r"another order \(first difference at column 0: model 'ret_1', code 'ret_2'\)"),
])
def test_a_different_feature_list_is_refused(saved, change, message):
    folder, names = saved
    with pytest.raises(UserError, match=message):
        registry.load(folder, change(list(names)))


def test_other_feature_definitions_or_a_missing_manifest_are_refused(saved, tmp_path):
    folder, names = saved
    with pytest.raises(UserError, match="feature definitions"):
        registry.load(folder, names, expected_registry_hash="zzz")
    with pytest.raises(UserError, match="not a model folder"):
        registry.load(tmp_path, names)
