"""The walk-forward: no model sees a label ending after a bar it predicts; batch (per fold) and live
(bar by bar, on data cut at each bar) give the same numbers; a seeded rerun is identical; outputs
are in range."""
import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from common.jsonable import to_jsonable
from models.evaluation import evaluate
from models.predictor import RECORD_FIELDS
from models.walkforward import WalkForward
from tests.models.conftest import panel_data, small_models_cfg


@pytest.fixture(scope="module")
def small_run(sample_prices, sample_features):
    cfg = small_models_cfg()
    data = panel_data(sample_prices, sample_features[0], cfg, symbols=slice(0, 6), bars=slice(0, 420))
    return cfg, data, WalkForward(cfg, seed=11).run(data)


def test_every_model_trains_only_on_labels_ended_before_its_test_bars(small_run):
    cfg, data, result = small_run
    assert len(result.folds) >= 4
    walk = WalkForward(cfg, seed=11)
    for fold in result.folds:
        bars, symbols = walk.predictor.training_rows(data, fold.fit_bar)
        assert len(bars) == fold.n_train
        assert data.labels.sample_end[bars, symbols].max() <= fold.fit_bar - cfg.embargo_bars
        assert fold.fit_bar - cfg.train_bars < bars.min()
        assert fold.test_start == fold.fit_bar and fold.train_end < fold.test_start
    p = result.predictions
    assert (np.diff(p.bars) >= 0).all() and p.bars.min() == result.folds[0].test_start


def test_outputs_are_in_range(small_run):
    cfg, data, result = small_run
    p = result.predictions
    H = len(cfg.horizons)
    assert p.expected_return.shape == p.prob_up.shape == (len(p), H) and p.base.shape == (len(p), 1, H)
    assert ((p.prob_up > 0) & (p.prob_up < 1)).all()
    assert_array_equal(p.confidence, p.prob_up[:, cfg.horizons.index(cfg.decision_horizon)])
    known = np.isfinite(p.lower)
    assert (p.lower[known] < p.expected_return[known]).all() and (p.upper[known] > p.expected_return[known]).all()
    assert ((p.entry_timing >= 0) & (p.exit_timing <= 1)).all()
    assert ((p.stop_distance >= cfg.stoploss.min_stop) & (p.stop_distance <= cfg.stoploss.max_stop)).all()
    assert set(np.unique(p.regime)) <= set(range(-1, cfg.regime.n_regimes))
    assert (p.volatility > 0).all()
    frame = p.to_frame(cfg.horizons, data.times, [f"S{j}" for j in range(6)])
    assert len(frame) == len(p) and {"time", "symbol", "prob_up_5", "lower_1", "stop_distance"} <= set(frame)
    grid = p.grid("confidence", data.n_bars, 6)
    assert np.isnan(grid[: result.folds[0].test_start]).all()
    assert_array_equal(grid[p.bars, p.symbols], p.confidence)


def test_a_seeded_rerun_is_identical(small_run):
    cfg, data, result = small_run
    again = WalkForward(cfg, seed=11).run(data)
    assert_array_equal(again.predictions.expected_return, result.predictions.expected_return)
    assert_array_equal(again.predictions.prob_up, result.predictions.prob_up)


@pytest.mark.slow
def test_live_bar_by_bar_on_cut_data_equals_the_batch_run(sample_prices, sample_features):
    """Live: at each bar the data ends there (labels computed from it alone), the model retrains on
    schedule and predicts that bar, the record-only outputs after (``record=False``, then
    ``predict_record``, as the live strategy does once the bar's orders are out). The same numbers as
    the backtest's batch run on all the data."""
    cfg = small_models_cfg()
    symbols, end = slice(0, 4), 330
    full = panel_data(sample_prices, sample_features[0], cfg, symbols=symbols, bars=slice(0, end))
    batch = WalkForward(cfg, seed=3)
    first = batch.first_retrain(full)
    expected = batch.run(full, first=first).predictions
    live, parts = WalkForward(cfg, seed=3), []
    for t in range(first, end):
        cut = panel_data(sample_prices, sample_features[0], cfg, symbols=symbols, bars=slice(0, t + 1))
        if live.is_retrain_bar(t, first):
            live.retrain(cut, t)
        p = live.predict(cut, [t], record=False)
        assert all(np.isnan(getattr(p, name)).all() for name in RECORD_FIELDS)
        for name, values in live.predictor.predict_record(cut, p.bars, p.symbols).items():
            getattr(p, name)[:] = values
        parts.append(p)
    for name in ("expected_return", "prob_up", "lower", "upper", "volatility", "regime", "entry_timing",
                 "exit_timing", "stop_distance", "base"):
        assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(expected, name), err_msg=name)


def test_evaluation_section_has_a_row_per_fold_and_the_baselines(small_run):
    cfg, data, result = small_run
    report = evaluate(result.predictions, data.labels, data.close, cfg.decision_horizon, result.folds, 0.58,
                      data.time_of)
    assert len(report["folds"]) == len(result.folds)
    row = report["folds"][0]
    assert set(row) == {"fold", "train_start", "train_end", "test_start", "test_end", "train_samples",
                        "test_samples", "accuracy", "auc", "ic", "log_loss"}
    assert row["test_start"] == data.time_of(result.folds[0].test_start) and row["train_samples"] > 0
    assert sum(r["test_samples"] for r in report["folds"]) == report["samples"]
    assert 0.3 < report["directional_accuracy"] < 0.7 and not report["leak_alarm"]
    lo, hi = report["directional_accuracy_ci95"]
    assert lo < report["directional_accuracy"] < hi
    assert set(report["baselines"]) == {"always_up", "last_return"}
    assert len(report["reliability"]) == 10
    assert sum(b["count"] for b in report["reliability"]) == report["samples"]
    json.dumps(to_jsonable(report), allow_nan=False)         # metrics.json has no NaN


def test_max_train_rows_fits_on_a_seeded_sample_of_the_window(sample_prices, sample_features):
    """A window with more samples than ``max_train_rows`` trains on a random sample of them: the
    same for the same seed and bar (backtest and live agree), causal like the whole window."""
    from models.predictor import EnsemblePredictor

    whole_cfg = small_models_cfg(max_train_rows=0)
    capped_cfg = small_models_cfg(max_train_rows=300)
    data = panel_data(sample_prices, sample_features[0], whole_cfg, symbols=slice(0, 6), bars=slice(0, 420))
    t = 300
    bars, symbols = EnsemblePredictor(whole_cfg, seed=2).training_rows(data, t)
    assert len(bars) > 300
    capped = EnsemblePredictor(capped_cfg, seed=2).training_rows(data, t)
    assert len(capped[0]) == 300 and np.all(np.diff(capped[0]) >= 0)        # time order kept
    assert set(zip(*capped)) <= set(zip(bars, symbols))
    assert_array_equal(EnsemblePredictor(capped_cfg, seed=2).training_rows(data, t)[1], capped[1])
    assert not np.array_equal(EnsemblePredictor(capped_cfg, seed=3).training_rows(data, t)[1], capped[1])
    result = WalkForward(capped_cfg, seed=2).run(data)
    assert all(f.n_train == min(300, len(EnsemblePredictor(whole_cfg, 2).training_rows(data, f.fit_bar)[0]))
               for f in result.folds)
