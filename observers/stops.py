"""Observers that draw each position's stop and target levels on its symbol's chart.

They only record what the strategy holds (``strategy.stop_levels`` / ``target_levels``);
exits are the strategy's decisions.
"""
from __future__ import annotations

from engine.compat import bt


class StopTargetLevels(bt.Observer):
    """Stop (red dashes) and target (green dashes) of the open position in this observer's data."""

    lines = ("stop", "target")
    plotinfo = dict(plot=True, subplot=False, plotlinelabels=True)
    plotlines = dict(
        stop=dict(color="red", ls="--", lw=1.2, _name="stop"),
        target=dict(color="green", ls="--", lw=1.2, _name="target"),
    )

    def next(self):
        name = self.data._name
        owner = self._owner
        nan = float("nan")
        self.lines.stop[0] = owner.stop_levels.get(name, nan)
        self.lines.target[0] = owner.target_levels.get(name, nan)
