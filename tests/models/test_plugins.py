"""Each plugin round-trips through save/load with identical predictions, and a seeded fit repeats
exactly. Keras plugins import TensorFlow (seconds): marked slow."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from models.dataset import sequences
from models.labels import forward_returns
from models.plugins import PLUGINS, LightGBMPlugin, XGBoostPlugin, load_plugin, make_plugin


@pytest.fixture(scope="module")
def training_set(sample_prices, sample_features):
    """Rows of the first 6 sample symbols at bars 100-499: flat features, 20-bar sequences of 4
    features, and the 1/3/5-bar forward returns."""
    values, _ = sample_features
    y_all, _ = forward_returns(sample_prices["close"], (1, 3, 5))
    bars, symbols = np.meshgrid(np.arange(100, 500), np.arange(6), indexing="ij")
    bars, symbols = bars.ravel(), symbols.ravel()
    ok = np.isfinite(y_all[bars, symbols]).all(axis=1)
    bars, symbols = bars[ok], symbols[ok]
    X = values[bars, symbols].astype(np.float32)
    seq = sequences(values.astype(np.float32), bars, symbols, 20, np.arange(4))
    return {"flat": X, "sequence": seq, "y": y_all[bars, symbols]}


def fit(name, models_cfg, data, seed=7, **overrides):
    plugin = make_plugin(name, models_cfg, seed)
    if overrides:
        plugin = PLUGINS[name](plugin.params.model_copy(update=overrides), seed=seed, threads=models_cfg.threads)
    X = data[plugin.input_kind]
    n = len(X) * 4 // 5
    return plugin.fit(X[:n], data["y"][:n], X_val=X[n:], y_val=data["y"][n:]), X


def check_round_trip(name, models_cfg, data, tmp_path, **overrides):
    plugin, X = fit(name, models_cfg, data, **overrides)
    before = plugin.predict(X[:300])
    assert before.shape == (300, 3) and np.isfinite(before).all()
    plugin.save(tmp_path / name)
    loaded = load_plugin(tmp_path / name)
    assert type(loaded) is type(plugin)
    assert_array_equal(loaded.predict(X[:300]), before)
    # one row at a time equals the batch: predictions do not depend on the batch they come in
    assert_array_equal(np.vstack([loaded.predict(X[i:i + 1]) for i in range(5)]), before[:5])
    again, _ = fit(name, models_cfg, data, **overrides)
    assert_array_equal(again.predict(X[:300]), before)     # same seed, same data: same model


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_tree_plugins_round_trip_and_repeat(name, models_cfg, training_set, tmp_path):
    check_round_trip(name, models_cfg, training_set, tmp_path)
    plugin, X = fit(name, models_cfg, training_set)
    assert plugin.feature_importance().shape == (X.shape[1],)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_tree_predictions_do_not_depend_on_the_thread_count(name, models_cfg, training_set, monkeypatch):
    """A small batch (a live bar's rows) predicts on one thread, a large one on the plugin's threads:
    the same numbers either way, and switching back and forth changes nothing."""
    import models.plugins.trees as trees

    plugin, X = fit(name, models_cfg.model_copy(update={"threads": 2}), training_set)
    assert len(X) > 1000 and plugin.threads == 2
    threaded = plugin.predict(X)
    monkeypatch.setattr(trees, "SMALL_BATCH_ROWS", len(X))   # the same batch, now on one thread
    assert_array_equal(plugin.predict(X), threaded)
    monkeypatch.setattr(trees, "SMALL_BATCH_ROWS", 0)
    assert_array_equal(plugin.predict(X[:50]), threaded[:50])


def test_trees_take_nan_natively(models_cfg, training_set):
    X = training_set["flat"].copy()
    X[::3, 0] = np.nan
    out = make_plugin("lightgbm", models_cfg, 1).fit(X, training_set["y"]).predict(X)
    assert np.isfinite(out).all()


def test_loading_as_another_plugin_is_refused(models_cfg, training_set, tmp_path):
    plugin, _ = fit("lightgbm", models_cfg, training_set)
    plugin.save(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a lightgbm model, not xgboost"):
        XGBoostPlugin.load(tmp_path / "m")


def test_lightgbm_quantile_objective(models_cfg, training_set):
    y = np.abs(training_set["y"][:, 2])
    plugin = LightGBMPlugin(models_cfg.lightgbm, seed=1, threads=1, objective="quantile", alpha=0.8)
    predicted = plugin.fit(training_set["flat"], y).predict(training_set["flat"])[:, 0]
    assert 0.72 < np.mean(y <= predicted) < 0.88                # about 80% of the targets lie below


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [("dense", {}), ("lstm", {}), ("dense", {"patience": 1, "epochs": 3})])
def test_keras_plugins_round_trip_and_repeat(name, overrides, models_cfg, training_set, tmp_path):
    check_round_trip(name, models_cfg, training_set, tmp_path, **overrides)


@pytest.mark.slow
def test_keras_refit_of_a_kept_model_equals_a_fresh_model(models_cfg, training_set):
    """The walk-forward refits one compiled model (weights and optimiser reset): same result as new."""
    X, y = training_set["flat"], training_set["y"]
    kept = make_plugin("dense", models_cfg, 3).fit(X[::2], y[::2] * 2.0)
    kept.fit(X, y)
    fresh = make_plugin("dense", models_cfg, 3).fit(X, y)
    assert_array_equal(kept.predict(X[:200]), fresh.predict(X[:200]))
