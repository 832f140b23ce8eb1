"""The trading plan's sizer in Backtrader's sizer slot: target weights from the cvxpy portfolio
problem with quarter-Kelly caps (``risk.portfolio``, ``risk.kelly``), turned into whole shares under
the 2% risk-per-trade cap and the position limits (``risk.sizing``).

The strategy asks :meth:`MeanVarianceSizer.weights` for a bar's candidates and :meth:`shares` for
each order; an order placed without a size (``strategy.buy(data)``) gets the shares planned for its
symbol last (``_getsizing``), so Backtrader's usual call path works too.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from engine.compat import bt
from risk.kelly import kelly_cap
from risk.portfolio import AllocationResult, MeanVarianceProblem, allocate_weights, shrunk_covariance
from risk.sizing import position_shares


class MeanVarianceSizer(bt.Sizer):
    params = (("risk", None),)   # config.schema.RiskConfig

    def __init__(self):
        if self.p.risk is None:
            raise ValueError("MeanVarianceSizer needs risk=RiskConfig")
        self.problem = MeanVarianceProblem(self.p.risk.max_positions)  # compiled once, re-solved per bar
        self.planned: dict[str, int] = {}

    def weights(self, expected_returns: pd.Series, returns: pd.DataFrame, sectors: pd.Series, *,
                current_weights: pd.Series, max_names: int, p_win: pd.Series | None = None,
                expected_gain: pd.Series | None = None, stop_distance: pd.Series | None = None) -> AllocationResult:
        """Weights of the names of ``expected_returns`` (per bar): candidates and holdings.

        returns: trailing per-bar returns (columns: the same names) for the shrunk covariance;
        each name's weight at most ``max_position_weight`` and, when ``p_win`` is given,
        ``kelly_fraction`` x Kelly of its win probability and payoff (expected gain / stop distance)."""
        r = self.p.risk
        names = list(expected_returns.index)
        cov = shrunk_covariance(returns.reindex(columns=names).tail(r.covariance_bars),
                                min_observations=r.min_history_bars)
        caps = None if p_win is None else np.asarray(
            kelly_cap(p_win.reindex(names).to_numpy(float), expected_gain.reindex(names).to_numpy(float),
                      stop_distance.reindex(names).to_numpy(float), r.kelly_fraction), float)
        return allocate_weights(expected_returns, cov, list(sectors.reindex(names)), risk_aversion=r.risk_aversion,
                                max_weight=r.max_position_weight, max_total=r.max_total_weight,
                                max_sector_weight=r.max_sector_weight, max_names=max_names,
                                kelly_caps=caps,
                                current_weights=current_weights.reindex(names).fillna(0.0).to_numpy(float),
                                problem=self.problem)

    def shares(self, symbol: str, weight: float, equity: float, price: float, stop_distance: float) -> int:
        r = self.p.risk
        n = position_shares(weight, equity, price, stop_distance, risk_per_trade=r.risk_per_trade,
                            min_position_value=r.min_position_value, max_position_weight=r.max_position_weight)
        self.planned[symbol] = n
        return n

    def _getsizing(self, comminfo, cash, data, isbuy):
        return self.planned.get(data._name, 0) if isbuy else self.strategy.getposition(data).size
