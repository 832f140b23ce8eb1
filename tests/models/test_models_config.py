"""[models]: defaults validate, the blueprint preset holds the blueprint's numbers, mistakes fail
with their dotted key."""
from pathlib import Path

import pytest

from common.errors import ConfigError
from config import load_config

BLUEPRINT = Path(__file__).resolve().parents[2] / "config" / "blueprint.toml"


def test_blueprint_preset_holds_the_blueprint_numbers():
    m = load_config(BLUEPRINT).models
    x = m.xgboost
    assert (x.n_estimators, x.max_depth, x.learning_rate, x.subsample, x.colsample_bytree,
            x.early_stopping_rounds) == (1000, 6, 0.01, 0.8, 0.8, 50)
    assert m.dense.layers == [512, 256, 128, 64] and m.dense.dropout == 0.3 and m.dense.learning_rate == 0.001
    assert (m.lstm.units, m.lstm.seq_len, m.lstm.top_features) == ([128, 64, 32], 60, 50)
    assert (m.search.draws, m.search.folds) == (50, 5)
    assert (m.train_bars, m.retrain_every, m.horizons) == (252, 21, [1, 3, 5])
    assert m.timing.model == "lstm" and (m.stoploss.min_stop, m.stoploss.max_stop) == (0.005, 0.05)


def test_defaults_keep_the_schedule_and_horizons_of_the_blueprint():
    m = load_config().models
    assert (m.train_bars, m.retrain_every, m.horizons) == (252, 21, [1, 3, 5])
    assert set(m.base_models) == {"xgboost", "lightgbm", "dense", "lstm"}


@pytest.mark.parametrize("overrides, message", [
    ({"models.decision_horizon": 7}, "decision_horizon 7 is not one of horizons"),
    ({"models.horizons": [1, 1]}, "horizons must be distinct"),
    ({"models.xgboost.max_dept": 3}, r"models\.xgboost\.max_dept: unknown key \(did you mean max_depth\?\)"),
    ({"models.search.space.lightgbm.leaves": [3]}, r"search\.space\.lightgbm: unknown parameter\(s\) \['leaves'\]"),
    ({"models.search.space.dense": {"epochs": [1]}}, "only xgboost and lightgbm are searched"),
    ({"models.base_models": ["xgboost", "catboost"]}, r"models\.base_models\.1"),
    ({"models.stoploss.min_stop": 0.06}, "min_stop is above"),
])
def test_mistakes_fail_with_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)
