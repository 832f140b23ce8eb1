"""The ``ml`` strategy end to end on real sample data: the walk-forward inside the strategy, its
report section, no lookahead (truncating the future changes nothing before the cut), the same
numbers bar by bar as in a batch backtest, and seeded reproducibility.

Most tests use a small model config (LightGBM only, few trees, 6 symbols) so they take seconds;
one runs the default config on the whole sample, as ``python run.py backtest --strategy ml`` does.
"""
import json

import numpy as np
import pandas as pd
import pytest

from config import load_config
from engine.backtest import run_backtest
from feeds.loader import load_universe
from reports.writer import write_run

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "JPM", "KO", "NVDA", "PYPL", "XOM"]   # PYPL starts in 2015: a late symbol
SMALL = {
    "backtest.strategy": "ml", "backtest.progress": False,
    "models.base_models": ["lightgbm"], "models.threads": 1,
    "models.train_bars": 126, "models.retrain_every": 63,
    "models.lightgbm.n_estimators": 40, "models.search.draws": 2, "models.search.folds": 2,
    # lower bars than the blueprint's so that a six-symbol run trades at all
    "ml.min_confidence": 0.55, "ml.min_expected_return": 0.0,
}


def small_cfg(**extra):
    return load_config(overrides={**SMALL, **extra})


@pytest.fixture(scope="module")
def bars():
    return load_universe([f"data/sample/{s}_data.csv" for s in SYMBOLS])


@pytest.fixture(scope="module")
def small_run(bars):
    return run_backtest(small_cfg(), bars)


def predictions_frame(result) -> pd.DataFrame:
    walk, data = result.strategy.walk_forward()
    frame = walk.predictions.to_frame(walk.horizons, times=data.times, symbols=data.symbols)
    return frame.drop(columns="bar").set_index(["time", "symbol"]).sort_index()


def test_trades_follow_the_entry_rule_and_exit_at_the_horizon(small_run):
    cfg, trades = small_run.cfg, small_run.records.trades
    assert len(trades) > 10
    assert (trades["confidence"] >= cfg.ml.min_confidence).all()
    assert (trades["expected_return"] > cfg.ml.min_expected_return).all()
    assert set(trades["exit_reason"]) <= {"time", "end"}
    closed = trades[trades["exit_reason"] == "time"]
    assert (closed["bars_held"] == cfg.models.decision_horizon).all()
    # equal weights: 1/max_positions of equity at the signal close (the fill at the next open moves it a little)
    weight = trades["size"] * trades["entry_price"] / trades["equity_at_entry"]
    assert weight.median() == pytest.approx(1 / cfg.risk.max_positions, rel=0.02)
    assert weight.max() < 1.15 / cfg.risk.max_positions
    # the trade's confidence is the prediction of the bar it was decided on
    predictions = predictions_frame(small_run)
    first = trades.iloc[0]
    decided = predictions.xs(first["symbol"], level="symbol")["confidence"]
    decided = decided[decided.index < pd.Timestamp(first["entry_datetime"])].iloc[-1]
    assert first["confidence"] == pytest.approx(decided)


def test_walk_forward_section_and_report(small_run, tmp_path):
    m = small_run.metrics
    wf = m["walk_forward"]
    assert wf["retrains"] == len(wf["folds"]) >= 10
    assert wf["horizon"] == 5 and set(wf["by_horizon"]) == {"1", "3", "5"}
    lo, hi = wf["directional_accuracy_ci95"]
    assert lo < wf["directional_accuracy"] < hi
    for fold in wf["folds"]:
        # each fold's training ends before its test starts (purge + embargo, on the calendar)
        assert fold["train_end"] < fold["test_start"] <= fold["test_end"]
    assert set(wf["baselines"]) == {"always_up", "last_return"}
    assert wf["leak_alarm"] == (wf["directional_accuracy"] > 0.58)
    assert wf["n_configurations"] == 2 and m["n_trials"] == 3
    assert 0 <= m["deflated_sharpe"] <= m["probabilistic_sharpe"] <= 1
    assert len(wf["feature_importance"]) == 25
    written = write_run(tmp_path, small_run, plot=True)
    for name in ("feature_importance.png", "calibration.png", "fold_accuracy.png"):
        assert name in written
    page = (tmp_path / "report.html").read_text()
    assert "Walk-forward: out-of-sample accuracy against baselines" in page and "Deflated Sharpe" in page
    json.loads((tmp_path / "metrics.json").read_text())          # strict JSON: no NaN


def test_leak_alarm_is_raised_in_the_report(small_run, tmp_path):
    """The alarm's wiring: a section over the threshold puts the warning at the top of the report."""
    from reports import model_report

    wf = dict(small_run.metrics["walk_forward"], directional_accuracy=0.61, leak_alarm=True)
    assert "Probable leak" in model_report.leak_alarms(wf)[0]
    assert model_report.leak_alarms(small_run.metrics["walk_forward"]) == [] or wf["leak_alarm"]


def test_changing_the_future_changes_nothing_before_it(bars, small_run):
    """No lookahead through the whole strategy: the run on data cut at a date predicts and trades
    exactly as the full run up to that date."""
    cut = pd.Timestamp("2016-09-01")
    truncated = run_backtest(small_cfg(), {s: f[f.index < cut] for s, f in bars.items()})
    full, part = predictions_frame(small_run), predictions_frame(truncated)
    before = full[full.index.get_level_values("time") < cut]
    assert len(before) > 1000
    pd.testing.assert_frame_equal(before, part.loc[before.index], check_exact=True)
    done = lambda t: t[pd.to_datetime(t["exit_datetime"]) < cut - pd.Timedelta(days=7)].reset_index(drop=True)
    pd.testing.assert_frame_equal(done(small_run.records.trades), done(truncated.records.trades))


def test_bar_by_bar_gives_the_batch_numbers(bars, small_run):
    """The live path's mode (runonce off: features from the incremental stream, retrain and predict
    per bar) against the batch backtest: the same predictions and the same trades."""
    stepped = run_backtest(small_cfg(**{"backtest.runonce": False}), bars)
    a, b = predictions_frame(small_run), predictions_frame(stepped)
    assert a.index.equals(b.index)
    np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(small_run.records.trades, stepped.records.trades)


def test_same_seed_same_metrics(bars, small_run):
    again = run_backtest(small_cfg(), bars)
    assert json.dumps(again.metrics, sort_keys=True, default=str) == json.dumps(small_run.metrics, sort_keys=True,
                                                                                  default=str)


def test_default_ml_backtest_on_the_whole_sample(tmp_path):
    """``python run.py backtest --strategy ml`` as shipped: every model of the default config."""
    cfg = load_config(overrides={"backtest.strategy": "ml", "backtest.progress": False, "models.threads": 1})
    result = run_backtest(cfg, load_universe(cfg.data.paths))
    m = result.metrics
    wf = m["walk_forward"]
    assert wf["models"] == ["xgboost", "lightgbm", "dense", "lstm"] and wf["retrains"] >= 30
    assert 0.45 < wf["directional_accuracy"] < wf["leak_alarm_accuracy"]
    assert m["n_trades"] > 0 and m["buy_and_hold"]["total_return"] > 0
    trades = result.records.trades
    assert (trades["confidence"] >= 0.65).all() and (trades["expected_return"] > 0.01).all()
