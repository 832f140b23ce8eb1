"""The ML strategies end to end on real sample data: the walk-forward inside the strategy, its
report section, no lookahead (truncating the future changes nothing before the cut), the same
numbers bar by bar as in a batch backtest, seeded reproducibility, and the trading plan's rules
(sizing, stops, targets, risk gates) in its records.

Most tests use a small model config (LightGBM only, few trees, 6 symbols) so they take seconds;
one runs the default config on the whole sample, as ``python run.py backtest`` does.
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
    "backtest.progress": False,
    "models.base_models": ["lightgbm"], "models.threads": 1,
    "models.train_bars": 126, "models.retrain_every": 63,
    "models.lightgbm.n_estimators": 40, "models.search.draws": 2, "models.search.folds": 2,
    # lower bars than the blueprint's so that a six-symbol run trades at all
    "ml.min_confidence": 0.55, "ml.min_expected_return": 0.0,
}


def small_cfg(strategy="ml", **extra):
    return load_config(overrides={**SMALL, "backtest.strategy": strategy, **extra})


@pytest.fixture(scope="module")
def bars():
    return load_universe([f"data/sample/{s}_data.csv" for s in SYMBOLS])


@pytest.fixture(scope="module")
def small_run(bars):
    """The trading plan (``ml``) on the small config."""
    return run_backtest(small_cfg(), bars)


@pytest.fixture(scope="module")
def equal_run(bars, small_run):
    """``ml_equal_weight`` on the same predictions (the walk-forward is the same: reuse it)."""
    return run_backtest(small_cfg("ml_equal_weight"), bars, walk_forward=small_run.strategy.walk_forward())


def predictions_frame(result) -> pd.DataFrame:
    walk, data = result.strategy.walk_forward()
    frame = walk.predictions.to_frame(walk.horizons, times=data.times, symbols=data.symbols)
    return frame.drop(columns="bar").set_index(["time", "symbol"]).sort_index()


def test_equal_weight_trades_follow_the_entry_rule_and_exit_at_the_horizon(equal_run):
    cfg, trades = equal_run.cfg, equal_run.records.trades
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
    predictions = predictions_frame(equal_run)
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
    assert set(wf["cross_section"]["horizons"]) == {"1", "3", "5"} and "rank_ic_t" in wf["folds"][0]
    for name in ("feature_importance.png", "calibration.png", "fold_accuracy.png", "quantile_returns.png",
                 "cumulative_rank_ic.png"):
        assert name in written
    page = (tmp_path / "report.html").read_text()
    assert "Walk-forward: out-of-sample accuracy against baselines" in page and "Deflated Sharpe" in page
    assert "Cross-sectional evaluation" in page
    json.loads((tmp_path / "metrics.json").read_text())          # strict JSON: no NaN


def test_a_run_with_news_reports_headlines_per_symbol_and_the_sentiment_features(bars, tmp_path):
    from features.sources import load_news

    news_file = "tests/features/data/news.csv"
    result = run_backtest(small_cfg(**{"data.news": news_file}), bars)
    news = result.metrics["news"]
    headlines = load_news(news_file, result.cfg.features.exchange_timezone)
    first, last = (pd.Timestamp(result.metrics["data_range"][k]) for k in ("start", "end"))
    within = headlines[(headlines["timestamp"] >= first) & (headlines["timestamp"] < last + pd.Timedelta(days=1))]
    assert news["headlines"] == {s: int((within["symbol"] == s).sum()) for s in SYMBOLS}
    assert "NVDA" in news["symbols_without"]
    sentiment = result.metrics["walk_forward"]["sentiment_importance"]
    names = result.strategy.features.names
    groups = result.strategy.features.engine.registry.groups
    assert set(sentiment["features"]) == {n for n in names if groups[n] == "sentiment"} and "sent_5" in sentiment["features"]
    assert sentiment["of"] == len(names)
    assert all(1 <= f["rank"] <= len(names) for f in sentiment["features"].values())
    write_run(tmp_path, result, plot=False)
    page = (tmp_path / "report.html").read_text()
    assert "News: headlines per symbol" in page
    assert "Sentiment features&#x27; importance" in page or "Sentiment features' importance" in page


def test_leak_alarm_is_raised_in_the_report(small_run, tmp_path):
    """The alarm's wiring: a section over the threshold puts the warning at the top of the report."""
    import dataclasses

    from reports import model_report

    real = small_run.metrics["walk_forward"]
    assert bool(model_report.leak_alarms(real)) == real["leak_alarm"]
    leaky = dict(real, directional_accuracy=0.61, leak_alarm=True)
    write_run(tmp_path, dataclasses.replace(small_run, metrics={**small_run.metrics, "walk_forward": leaky}),
              plot=False)
    page = (tmp_path / "report.html").read_text()
    assert page.index("Probable leak") < page.index("<h2>Performance</h2>")


def test_changing_the_future_changes_nothing_before_it(bars, small_run):
    """No lookahead through the whole strategy: the run on data cut at a date predicts and trades
    exactly as the full run up to that date."""
    cut = pd.Timestamp("2017-09-01")
    truncated = run_backtest(small_cfg(), {s: f[f.index < cut] for s, f in bars.items()})
    full, part = predictions_frame(small_run), predictions_frame(truncated)
    before = full[full.index.get_level_values("time") < cut]
    assert len(before) > 1000
    pd.testing.assert_frame_equal(before, part.loc[before.index], check_exact=True)
    done = lambda t: t[pd.to_datetime(t["exit_datetime"]) < cut - pd.Timedelta(days=7)].reset_index(drop=True)
    assert len(done(small_run.records.trades)) >= 5
    pd.testing.assert_frame_equal(done(small_run.records.trades), done(truncated.records.trades))
    lines = lambda r: [line for line in r.strategy.decision_lines if line[:10] < str(cut - pd.Timedelta(days=7))[:10]]
    assert lines(small_run) == lines(truncated)


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


def decisions(result) -> pd.DataFrame:
    """The BUY lines of the plan's decision log as a table."""
    pattern = (r"^(?P<date>\S+) \S+ (?P<symbol>\S+) BUY size (?P<size>\d+) entry (?P<entry>[\d.]+) "
               r"target (?P<target>[\d.]+) stop (?P<stop>[\d.]+) confidence (?P<confidence>[\d.]+) "
               r"expected (?P<expected>[-\d.]+) weight (?P<weight>[\d.]+)")
    lines = pd.Series(result.strategy.decision_lines)
    table = lines.str.extract(pattern).dropna()
    return table.astype({c: float for c in table.columns if c not in ("date", "symbol")})


def test_kill_switch_flattens_and_halts(bars, small_run):
    # the limit: just under a new record drawdown the run had, without it, on a bar with positions open
    held = set(small_run.records.positions["datetime"].astype(str))
    record, limit = 0.0, None
    for when, drawdown in zip(small_run.records.equity["datetime"].astype(str), small_run.records.equity["drawdown"]):
        if drawdown > record * 1.01 and when in held:
            limit = drawdown * 0.999
            break
        record = max(record, drawdown)
    cfg = small_cfg(**{"risk.max_drawdown": limit})
    result = run_backtest(cfg, bars, walk_forward=small_run.strategy.walk_forward())
    halted = result.strategy.halted
    assert halted is not None and "below its peak" in halted["reason"]
    trades = result.records.trades
    when = pd.Timestamp(halted["datetime"])
    open_then = trades[(pd.to_datetime(trades["entry_datetime"]) <= when)
                       & (pd.to_datetime(trades["exit_datetime"]) > when)]
    assert len(open_then) and (open_then["exit_reason"] == "kill_switch").all()
    assert (pd.to_datetime(trades["entry_datetime"]) <= when + pd.Timedelta(days=4)).all()   # nothing new after
    assert result.metrics["exit_reasons"].get("kill_switch", 0) == len(open_then)
    assert any("KILL SWITCH" in line for line in result.strategy.decision_lines)
    assert result.metrics["kill_switch"] == halted
    # live restarts: the latch and its record survive a JSON round trip; a changed limit clears both
    from risk.manager import RiskManager

    strategy = result.strategy
    state = json.loads(json.dumps(strategy.export_state()))
    strategy.import_state(state)
    assert strategy.halted == halted and strategy.risk.kill_switch.tripped
    strategy.risk = RiskManager(cfg.risk.model_copy(update={"max_drawdown": 0.5}))
    strategy.import_state(state)
    assert strategy.halted is None and not strategy.risk.kill_switch.tripped


def test_daily_loss_limit_blocks_entries_that_day(bars, small_run):
    cfg = small_cfg(**{"risk.daily_loss_limit": 0.0005})
    result = run_backtest(cfg, bars, walk_forward=small_run.strategy.walk_forward())
    lines = pd.Series(result.strategy.decision_lines)
    blocked = set(lines[lines.str.contains("no new entries")].str[:10])
    assert blocked
    bought = set(decisions(result)["date"])
    assert not blocked & bought
    assert len(bought) < len(set(decisions(small_run)["date"]))


def test_default_ml_plan_on_the_whole_sample(tmp_path):
    """``python run.py backtest`` as shipped: the trading plan with every model of the default
    config on the whole sample. Its records obey the plan's rules."""
    cfg = load_config(overrides={"backtest.progress": False, "models.threads": 1})
    assert cfg.backtest.strategy == "ml"
    result = run_backtest(cfg, load_universe(cfg.data.paths))
    m, risk = result.metrics, cfg.risk
    wf = m["walk_forward"]
    assert wf["models"] == ["xgboost", "lightgbm", "dense", "lstm"] and wf["retrains"] >= 30
    assert 0.45 < wf["directional_accuracy"] < wf["leak_alarm_accuracy"]
    trades = result.records.trades
    assert len(trades) >= 20 and trades[["initial_stop", "target", "confidence", "expected_return",
                                         "equity_at_entry"]].notna().all().all()
    assert (trades["confidence"] >= cfg.ml.min_confidence).all()
    assert (trades["expected_return"] > cfg.ml.min_expected_return).all()
    reasons = set(trades["exit_reason"])
    assert {"stop", "trailing_stop", "target"} <= reasons <= set(("stop", "trailing_stop", "target", "signal", "time",
                                                                  "kill_switch", "end"))
    buys = decisions(result)
    assert len(buys) >= len(trades)                 # a limit order may go unfilled
    equity_log = result.records.equity
    equity = buys["date"].map(dict(zip(equity_log["datetime"].astype(str).str[:10], equity_log["equity"])))
    stop_pct = 1 - buys["stop"] / buys["entry"]
    assert stop_pct.between(risk.stop_min - 1e-4, risk.stop_max + 1e-4).all()        # initial stop 0.5-5%
    assert (buys["target"] > buys["entry"]).all()
    value = buys["size"] * buys["entry"]
    assert (value <= risk.max_position_weight * equity * 1.001).all()                 # 10% a position
    assert (value >= risk.min_position_value * 0.999).all()                           # $1000 at least
    assert (value * stop_pct <= risk.risk_per_trade * equity * 1.001).all()           # 2% risk a trade
    positions = result.records.positions
    assert positions.groupby("datetime")["symbol"].nunique().max() <= risk.max_positions
    # a stop never loosens while a position is held (stop, moved stop, then trailing stop)
    for (_, trade) in trades.iterrows():
        held = positions[(positions["symbol"] == trade["symbol"])
                         & (positions["datetime"] >= trade["entry_datetime"])
                         & (positions["datetime"] < trade["exit_datetime"])]["stop"].dropna()
        assert (held.diff().dropna() >= -1e-9).all(), trade["symbol"]
    written = write_run(tmp_path, result, plot=False)
    assert "decisions.log" in written and "Stops and targets" in (tmp_path / "report.html").read_text()
