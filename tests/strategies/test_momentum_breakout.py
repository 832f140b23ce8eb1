"""The momentum baseline reads its signals from the bars: they must equal Backtrader's indicators
(``Highest`` of the previous highs, ``ROC``, ``SMA``) exactly, on every bar a decision reads them."""
from pathlib import Path

import pytest

from engine.backtest import backtest_cerebro
from engine.compat import bt
from config import load_config
from feeds.loader import load_bars
from strategies.momentum_breakout import MomentumBreakout

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


class Checked(MomentumBreakout):
    """Keeps Backtrader's indicators beside the strategy and compares them at every tradable bar."""

    def __init__(self):
        super().__init__()
        p = self.rules
        self.reference = {d._name: (bt.ind.Highest(d.high(-1), period=p.breakout_bars, plot=False),
                                    bt.ind.ROC(d.close, period=p.momentum_bars, plot=False),
                                    bt.ind.SMA(d.close, period=p.trend_bars, plot=False)) for d in self.datas}
        self.compared = 0

    def decide(self, now, fresh):
        for d in fresh:
            if self.tradable(d):
                high, roc, sma = self.reference[d._name]
                assert (self.prior_high(d), self.momentum(d), self.trend(d)) == (high[0], roc[0], sma[0]), d._name
                self.compared += 1
        super().decide(now, fresh)


@pytest.mark.parametrize("runonce", [True, False], ids=["vectorised indicators", "bar by bar (live)"])
def test_signals_equal_backtraders_indicators_on_sample_bars(runonce):
    cfg = load_config(overrides={"backtest.progress": False, "momentum_breakout.breakout_bars": 7,
                                 "momentum_breakout.momentum_bars": 11, "momentum_breakout.trend_bars": 5})
    bars = dict(load_bars(SAMPLE / f"{symbol}_data.csv") for symbol in ("AAPL", "PYPL"))  # PYPL starts late
    strategy = backtest_cerebro(cfg, bars, strategy_cls=Checked, runonce=runonce).run()[0]
    assert strategy.compared > 1800 and len(strategy.analyzers.orders.get_analysis()) > 50
