"""Random search inside the window: configurations counted, best parameters valid, repeatable."""
import numpy as np

from config.schema import LightGBMParams
from models.plugins import LightGBMPlugin
from models.search import random_search
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg


def test_random_search_counts_and_repeats(sample_prices, sample_features, models_cfg):
    cfg = small_models_cfg()
    data = panel_data(sample_prices, sample_features[0], cfg, symbols=slice(0, 5), bars=slice(0, 300))
    walk = WalkForward(cfg, seed=0)
    bars, symbols = walk.predictor.training_rows(data, 299)
    X, y = data.values[bars, symbols], data.labels.returns[bars, symbols]
    end = data.labels.sample_end[bars, symbols]
    space = {"num_leaves": [3, 7], "learning_rate": [0.05, 0.1], "n_estimators": [10, 20]}
    args = (LightGBMPlugin, cfg.lightgbm, space, 3, X, y, bars, end, 3, cfg.embargo_bars, 1, 1)
    first, second = random_search(*args), random_search(*args)
    assert first.n_tried == 3 == len(first.scores)
    assert isinstance(first.best_params, LightGBMParams)
    assert first.best_params.num_leaves in (3, 7)
    assert first.best_params.early_stopping_rounds == cfg.lightgbm.early_stopping_rounds  # back on for the fit
    assert first.best_score == max(s for _, s in first.scores) == second.best_score
    small = random_search(LightGBMPlugin, cfg.lightgbm, {"num_leaves": [3, 7]}, 50, X, y, bars, end, 3, 0, 1, 1)
    assert small.n_tried == 2                                 # a grid smaller than the draws: each point once


def test_walk_forward_counts_every_configuration(sample_prices, sample_features):
    cfg = small_models_cfg(**{"search.schedule": "first", "search.draws": 2, "search.models": ["lightgbm"],
                              "search.space.lightgbm": {"num_leaves": [3, 7], "n_estimators": [10, 20]}})
    data = panel_data(sample_prices, sample_features[0], cfg, symbols=slice(0, 4), bars=slice(0, 330))
    result = WalkForward(cfg, seed=0).run(data)
    assert result.n_configurations == 2 and result.folds[0].configurations == 2
    assert sum(f.configurations for f in result.folds) == 2   # "first": searched once, then reused
    assert np.isfinite(result.predictions.expected_return).all()
