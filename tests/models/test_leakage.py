"""The leakage checks pass honest labels and fail planted leaks, and a leaked label shows in the
walk-forward's out-of-sample accuracy: the checks are shown able to fail, in both directions."""
import dataclasses

import numpy as np
import pytest

from config.schema import LabelsConfig
from models.evaluation import evaluate
from models.labels import forward_returns
from models.leakage import feature_label_check, label_lookahead_check, project_label_fn
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg

CUTS = (300, 700, 1100)


def prices(sample_prices, n=8):
    return sample_prices["close"][:, :n], sample_prices["high"][:, :n], sample_prices["low"][:, :n]


def shift(values, end, bars):
    """Labels moved ``bars`` later on the calendar: the value at t is the one made for t - bars."""
    out_v, out_e = np.full_like(values, np.nan), np.full_like(end, -1)
    out_v[bars:], out_e[bars:] = values[:-bars], end[:-bars]
    return out_v, out_e


@pytest.mark.parametrize("kind", ["forward_return", "triple_barrier"])
def test_project_labels_pass_the_lookahead_check(sample_prices, models_cfg, kind):
    cfg = models_cfg.model_copy(update={"labels": LabelsConfig(kind=kind, barrier_vol_bars=20, profit_target=1.0,
                                                               stop_loss=1.0)})
    assert label_lookahead_check(project_label_fn(cfg), *prices(sample_prices), CUTS) == []


def test_a_past_return_posing_as_a_label_is_flagged(sample_prices):
    """Shifted the wrong way: the label at t is the return that ended at t, its end still says t + 5."""
    def past_return(close, high, low):
        values, end = forward_returns(close, (5,))
        moved, _ = shift(values, end, 5)
        return moved, np.where(np.isfinite(moved), end, -1)
    problems = label_lookahead_check(past_return, *prices(sample_prices), CUTS)
    assert any("not forward-looking" in p for p in problems)


def test_a_label_that_ends_on_its_own_bar_is_flagged(sample_prices):
    def one_bar_slip(close, high, low):
        return shift(*forward_returns(close, (1,)), 1)     # label at t: the return from t-1 to t
    problems = label_lookahead_check(one_bar_slip, *prices(sample_prices), CUTS)
    assert any("end at or before their own bar" in p for p in problems)


def test_a_label_reading_past_its_declared_end_is_flagged(sample_prices):
    def late(close, high, low):
        values, end = forward_returns(close, (5,))
        return values, np.where(end >= 0, end - 2, -1)       # claims to end 2 bars before it does
    problems = label_lookahead_check(late, *prices(sample_prices), CUTS)
    assert any("read beyond their declared end" in p for p in problems)


def test_feature_check_flags_a_one_bar_timing_slip(sample_prices, sample_features):
    values, names = sample_features
    honest, end = forward_returns(sample_prices["close"], (5,))
    slipped, _ = shift(honest, end, 1)                      # includes the return of bar t itself
    rows = np.isfinite(values).all(axis=2) & np.isfinite(slipped[..., 0]) & np.isfinite(honest[..., 0])
    assert feature_label_check(values[rows], honest[..., 0][rows], names) == []
    problems = feature_label_check(values[rows], slipped[..., 0][rows], names)
    assert problems and "ret_1" in problems[0]


@pytest.mark.slow
def test_a_leaked_label_lifts_out_of_sample_accuracy_and_trips_the_alarm(sample_prices, sample_features):
    """Real sample data, all 28 symbols: the honest 1-bar label scores about a coin flip, the same
    label slipped one bar (it then contains the bar-t return, a feature) scores far above it."""
    cfg = small_models_cfg(horizons=[1], decision_horizon=1, train_bars=252, retrain_every=84,
                           **{"ensemble.meta_window_bars": 252})
    honest_data = panel_data(sample_prices, sample_features[0], cfg)
    labels = honest_data.labels
    leaked_returns, leaked_end = shift(labels.returns, labels.end, 1)
    leaked_data = dataclasses.replace(honest_data, labels=dataclasses.replace(
        labels, returns=leaked_returns, end=np.where(np.isfinite(leaked_returns), np.maximum(leaked_end, 0), -1)))
    scores = {}
    for name, data in (("honest", honest_data), ("leaked", leaked_data)):
        result = WalkForward(cfg, seed=1).run(data)
        scores[name] = evaluate(result.predictions, data.labels, data.close, 1, result.folds, 0.58)
    honest, leaked = scores["honest"], scores["leaked"]
    assert 0.46 < honest["directional_accuracy"] < 0.56 and not honest["leak_alarm"]
    assert leaked["directional_accuracy"] > 0.6 and leaked["leak_alarm"]
    assert leaked["ic"] > 0.3 > abs(honest["ic"])
