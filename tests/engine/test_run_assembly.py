"""One assembly for every run: a live start's trade gate, and what the strategy contract gives a
strategy that declares nothing of its own."""
import datetime as dt
from pathlib import Path

from config import load_config
from engine.backtest import backtest_cerebro
from feeds.loader import load_universe
from strategies.base import TradeGate
from strategies.momentum_breakout import MomentumBreakout
T = dt.datetime(2024, 1, 2, 10, 0)
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def test_a_trade_gate_is_shut_until_opened_at_a_bar():
    gate = TradeGate()
    assert not gate.allows(T)
    gate.open_at(T)
    # Backtrader's float clock can read a hair before the bar's time: the bar itself is traded
    assert gate.allows(T - dt.timedelta(microseconds=500)) and not gate.allows(T - dt.timedelta(seconds=1))
    assert TradeGate(None).allows(dt.datetime.min)


def test_a_strategy_without_models_or_state_of_its_own_saves_its_plans_only():
    cfg = load_config(overrides={"backtest.progress": False})
    bars = {s: f.iloc[:60] for s, f in load_universe([SAMPLE / "AAPL_data.csv", SAMPLE / "XOM_data.csv"]).items()}
    strategy = backtest_cerebro(cfg, bars, strategy_cls=MomentumBreakout).run()[0]
    assert not MomentumBreakout.trains_models and MomentumBreakout.bars_before_first_training(cfg, []) is None
    assert strategy.walk_forward() is None and strategy.bar_predictions() is None and strategy.halted is None
    assert set(strategy.save_state([])) == {"plans", "stop_levels", "target_levels", "orders"}
