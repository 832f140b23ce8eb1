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
"""
from __future__ import annotations

from engine.compat import bt
from strategies.base import PortfolioStrategy


class MomentumBreakout(PortfolioStrategy):
    @classmethod
    def required_bars(cls, cfg) -> int:
        p = cfg.momentum_breakout
        return max(p.breakout_bars + 1, p.momentum_bars + 1, p.trend_bars)

    def __init__(self):
        super().__init__()
        p = self.cfg.momentum_breakout
        self.rules = p
        self.signals = {}
        for d in self.datas:
            self.signals[d._name] = (
                bt.ind.Highest(d.high(-1), period=p.breakout_bars, plot=False),
                bt.ind.ROC(d.close, period=p.momentum_bars, plot=False),
                bt.ind.SMA(d.close, period=p.trend_bars, plot=False),
            )

    def decide(self, now, fresh):
        risk = self.cfg.risk
        candidates = []
        for d in fresh:
            if not self.tradable(d):
                continue
            prior_high, momentum, trend = self.signals[d._name]
            plan = self.positions_plan.get(d._name)
            if plan is not None:
                if plan.entry_datetime is None or plan.exiting:
                    continue
                if d.close[0] < trend[0]:
                    self.exit_position(d, "signal")
                elif plan.bars_held >= self.rules.max_hold_bars:
                    self.exit_position(d, "time")
            elif d.close[0] > prior_high[0] and momentum[0] > self.rules.min_momentum:
                candidates.append((momentum[0], d))

        free = risk.max_positions - self.open_and_pending()
        if free <= 0 or not candidates:
            return
        equity = self.broker.getvalue()
        cash = self.broker.getcash() - self.committed_cash()
        weight = min(self.rules.position_weight, risk.max_position_weight)
        for _, d in sorted(candidates, key=lambda c: (-c[0], c[1]._name))[:free]:
            value = min(equity * weight, cash)
            if value < risk.min_position_value:
                break
            price = d.close[0]
            size = self.shares_for_value(value, price)
            if size <= 0:
                continue
            self.enter_long(d, size, stop_price=price * (1 - self.rules.stop_pct), reason="breakout")
            cash -= size * price
