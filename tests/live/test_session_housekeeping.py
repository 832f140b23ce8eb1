"""A live session freezes what survives each bar (so the collector's full passes, which would pause a
later bar's orders, stay small) and thaws everything when it ends."""
import gc
from pathlib import Path

from config import load_config
from engine.live import run_replay
from feeds.loader import load_universe
from strategies.momentum_breakout import MomentumBreakout

ROOT = Path(__file__).resolve().parents[2]


class FreezeWatch(MomentumBreakout):
    """The baseline strategy, noting how many objects are frozen at each bar."""

    frozen: list[int] = []

    def next(self):
        FreezeWatch.frozen.append(gc.get_freeze_count())
        super().next()


def test_the_heap_is_frozen_between_bars_and_thawed_after_the_session(tmp_path):
    cfg = load_config(overrides={"backtest.strategy": "momentum_breakout", "backtest.progress": False})
    universe = load_universe([ROOT / "data" / "sample" / f"{s}_data.csv" for s in ("AAPL", "XOM")])
    run_replay(cfg, {s: frame.iloc[:60] for s, frame in universe.items()}, strategy_cls=FreezeWatch,
               journal_dir=tmp_path)
    assert len(FreezeWatch.frozen) == 60 and min(FreezeWatch.frozen[1:]) > 0
    assert gc.get_freeze_count() == 0
