"""A trailing stop goes without a take-profit, in a backtest as live (Alpaca's OCO orders take no
trailing stop): ``replace_exits(trailing=True)`` places the stop-trail order alone and forgets the
target, so no later bar re-places or fills a target live could not have had."""
import backtrader as bt

from config import load_config
from engine.backtest import backtest_cerebro
from feeds.loader import load_universe
from strategies.base import PortfolioStrategy


class TrailAfterEntry(PortfolioStrategy):
    """Buys AAPL at its 5th bar with a stop and a target, then asks for a trailing stop with a target."""

    @classmethod
    def required_bars(cls, cfg) -> int:
        return 5

    def __init__(self):
        super().__init__()
        self.trailed = set()   # entry orders whose position was given its trailing stop

    def decide(self, now, fresh):
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is None:
                self.enter_long(d, 10, stop_price=d.close[0] * 0.9, target_price=d.close[0] * 1.5)
            elif plan.entry_datetime is not None and plan.entry_order.ref not in self.trailed:
                self.trailed.add(plan.entry_order.ref)
                self.replace_exits(d, plan, size=10, stop_price=d.close[0] * 0.95, target_price=d.close[0] * 1.5,
                                   trailing=True)
                self.after = [(c.exectype, c.alive()) for c in plan.children]
                self.target_after = (plan.target_price, self.target_levels.get(d._name))


def test_a_trailing_stop_is_placed_without_a_take_profit():
    bars = load_universe(["data/sample/AAPL_data.csv"], end="2013-06-28")
    strategy = backtest_cerebro(load_config(), bars, strategy_cls=TrailAfterEntry).run()[0]
    assert strategy.after == [(bt.Order.StopTrail, True)]
    assert strategy.target_after == (None, None)
