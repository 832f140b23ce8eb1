"""The blueprint's "current system" and the lasting baseline: momentum + breakout, fixed stops.

Each bar, for every symbol with a bar now:
- entry: the close breaks above the highest high of the previous ``breakout_bars`` bars and the
  return over ``momentum_bars`` is above ``min_momentum``; candidates ranked by that return fill the
  free slots (``risk.max_positions``), each at ``position_weight`` of equity (capped by
  ``risk.max_position_weight``, skipped below ``risk.min_position_value``);
- a real stop order ``stop_pct`` below the signal close (the blueprint's fixed 2-3% stop);
- exits: the stop; ``signal`` when the close falls below its ``trend_bars`` moving average;
  ``time`` after ``max_hold_bars`` bars.
All numbers come from ``[momentum_breakout]`` and ``[risk]`` in the config.

The three signals are read from the bars when a decision needs them, with Backtrader's own arithmetic
(``Highest``, ``ROC``, ``SMA``), rather than kept as indicators: three indicator objects per symbol cost
about 3 ms a bar for 50 symbols live, where they would be updated for every symbol on every bar.
"""
from __future__ import annotations

import math

from risk.sizing import cost_rate, equal_weight_sizes
from strategies.base import PortfolioStrategy
from strategies.ranking import fill_slots


class MomentumBreakout(PortfolioStrategy):
    @classmethod
    def required_bars(cls, cfg) -> int:
        p = cfg.momentum_breakout
        return max(p.breakout_bars + 1, p.momentum_bars + 1, p.trend_bars)

    def __init__(self):
        super().__init__()
        self.rules = self.cfg.momentum_breakout
        self.by_name = {d._name: d for d in self.datas}

    # the signals at the current bar (``tradable`` guarantees the history they read)
    def prior_high(self, d) -> float:
        """The highest high of the ``breakout_bars`` bars before this one."""
        return max(d.high.get(ago=-1, size=self.rules.breakout_bars))

    def momentum(self, d) -> float:
        """The return over ``momentum_bars`` bars."""
        past = d.close[-self.rules.momentum_bars]
        return (d.close[0] - past) / past

    def trend(self, d) -> float:
        """The ``trend_bars`` moving average of the close, this bar included."""
        return math.fsum(d.close.get(size=self.rules.trend_bars)) / self.rules.trend_bars

    def decide(self, now, fresh):
        risk = self.cfg.risk
        candidates = {}
        for d in fresh:
            if not self.tradable(d):
                continue
            plan = self.positions_plan.get(d._name)
            if plan is not None:
                if plan.entry_datetime is None or plan.exiting:
                    continue
                if d.close[0] < self.trend(d):
                    self.exit_position(d, "signal")
                elif plan.bars_held >= self.rules.max_hold_bars:
                    self.exit_position(d, "time")
            elif d.close[0] > self.prior_high(d):
                momentum = self.momentum(d)
                if momentum > self.rules.min_momentum:
                    candidates[d._name] = momentum

        chosen = fill_slots(candidates, risk.max_positions - self.open_and_pending())
        if not chosen:
            return
        sizes = equal_weight_sizes([(name, self.by_name[name].close[0]) for name in chosen],
                                   equity=self.broker.getvalue(), cash=self.broker.getcash() - self.committed_cash(),
                                   weight=min(self.rules.position_weight, risk.max_position_weight),
                                   min_position_value=risk.min_position_value, costs=cost_rate(self.cfg.costs))
        for name, size in sizes:
            d = self.by_name[name]
            self.enter_long(d, size, stop_price=d.close[0] * (1 - self.rules.stop_pct), reason="breakout")
