"""The work of a bar does not grow with the history behind it: stepping bar by bar (as live does),
the last bars of a run that started 5 years earlier make exactly as many Python function calls as the
same bars of a run that started 1 year earlier. (Their time is measured, not asserted, by
``benchmarks/per_bar_cost.py``; a count is what a test can check exactly.)"""
import sys

import pandas as pd
import pytest

from config import load_config
from engine.backtest import backtest_cerebro
from engine.compat import bt
from feeds.loader import load_universe
from tests.strategies.test_delisting import HoldEverything

pytestmark = pytest.mark.slow

LAST = 30


class CallCounter(bt.Analyzer):
    """Counts the Python calls made between the ends of consecutive bars, for the last ``LAST`` bars."""

    params = (("total", 0),)

    def start(self):
        self.counts, self.calls = [], 0

    def _count(self, frame, event, arg):
        if event == "call":
            self.calls += 1

    def next(self):
        sys.setprofile(None)
        if self.calls:
            self.counts.append(self.calls)
        self.calls = 0
        if len(self.strategy) >= self.p.total - LAST:
            sys.setprofile(self._count)

    def stop(self):
        sys.setprofile(None)


def calls_per_bar(bars) -> list[int]:
    cerebro = backtest_cerebro(load_config(), bars, strategy_cls=HoldEverything, runonce=False)
    cerebro.addanalyzer(CallCounter, _name="calls", total=len(next(iter(bars.values()))))
    return cerebro.run()[0].analyzers.calls.counts


def test_the_last_bars_cost_the_same_calls_after_5_years_as_after_1():
    universe = load_universe([f"data/sample/{s}_data.csv" for s in ("AAPL", "JPM", "XOM")])
    end = min(frame.index[-1] for frame in universe.values())
    five, one = (calls_per_bar({s: f.loc[end - pd.DateOffset(years=years):end] for s, f in universe.items()})
                 for years in (5, 1))
    assert len(five) == len(one) >= LAST - 2
    assert five == one and min(five) > 500       # every call of every bar, the same
