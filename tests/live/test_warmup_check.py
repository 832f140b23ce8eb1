"""The live warm-up check and the ML strategies: without ``--model`` they train their own model before
their first prediction, so ``live.warmup_bars`` must cover the bars that first training needs (where
``WalkForwardSignals`` first trains, on real data); with a registry model, only the features' warm-up."""
from pathlib import Path

import pytest

from common.errors import UserError
from config import load_config
from engine.live import check_warmup_bars, warmup_needed
from features.from_config import engine_from_config
from feeds.loader import load_universe
from models.dataset import panel_data_from_bars
from models.walkforward import WalkForward
from strategies import get_strategy

ROOT = Path(__file__).resolve().parents[2]
MODEL = "trained@0123456789ab"  # what run.py live --model resolves a registry model to


def test_the_bars_needed_are_where_the_walk_forward_first_trains_on_real_data():
    """Real sample bars starting together, as a live start's history does: the walk-forward's first
    retrain bar (WalkForward.first_retrain, which WalkForwardSignals calls) is the number the check asks."""
    cfg = load_config()
    bars = load_universe([ROOT / "data" / "sample" / f"{s}_data.csv" for s in ("AAPL", "JPM", "XOM")])
    engine = engine_from_config(cfg, sorted(bars))
    _, data = panel_data_from_bars(engine, bars, cfg.models)
    first_training = WalkForward(cfg.models, cfg.backtest.seed).first_retrain(data)
    assert warmup_needed(cfg, get_strategy("ml"))[0] == first_training
    # with a registry model: the longest feature warm-up, as for any strategy
    assert warmup_needed(cfg, get_strategy("ml"), model=MODEL) == warmup_needed(cfg, get_strategy("momentum_breakout"))


@pytest.mark.parametrize("name", ["ml", "ml_equal_weight"])
def test_an_ml_strategy_without_a_model_needs_its_first_training_in_the_warmup(name):
    cfg = load_config(overrides={"backtest.strategy": name})
    strategy = get_strategy(name)
    needed, who = warmup_needed(cfg, strategy)
    assert needed > cfg.live.warmup_bars  # the default 320 covers a registry model only
    with pytest.raises(UserError) as error:
        check_warmup_bars(cfg, strategy)
    assert str(error.value) == (
        f"live.warmup_bars = {cfg.live.warmup_bars} is too short: the strategy {name} (training its own model "
        f"first: models.train_bars = {cfg.models.train_bars} bars after its features' warm-up) needs {needed} bars "
        f"of history before the first live bar; set live.warmup_bars to at least {needed}, or trade a registry "
        f"model with --model NAME (trained with `python run.py train --out models/registry/NAME`)")
    check_warmup_bars(cfg, strategy, model=MODEL)
    check_warmup_bars(load_config(overrides={"backtest.strategy": name, "live.warmup_bars": needed}), strategy)
    with pytest.raises(UserError):
        check_warmup_bars(load_config(overrides={"backtest.strategy": name, "live.warmup_bars": needed - 1}),
                          strategy)

