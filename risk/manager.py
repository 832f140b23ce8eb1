"""The risk manager: one risk score per entry candidate, and the account's entry gates.

Components, each in [0, 1], at the candidate's size after the VaR adjustment:

    var          VaR_95(portfolio with the candidate) / var_limit                 (historical, per bar)
    correlation  max correlation with a holding over correlation_bars / max_correlation
    sector       sector weight after entry / max_sector_weight
    liquidity    order value / (max_adv_share x average dollar volume)
    regime       regime_risk[regime]

score = sum of score_weights x components; approved when score < approve_below and no hard cap is
breached. Hard caps (reject whatever the score): VaR with the candidate above var_limit, correlation
above max_correlation, sector weight above max_sector_weight, order above max_adv_share of the
average dollar volume (or no volume). Adjustments (the blueprint's): size_multiplier 0.5 when the
candidate takes more than var_impact_high of the VaR budget left; delay_bars when the correlation is
above correlation_delay_above; a limit order when the order takes more than limit_order_above of
its liquidity allowance. A value that cannot be measured (too little history) scores 1, the
worst, and is named in the reasons; it breaches no hard cap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from config.schema import RiskConfig
from risk.limits import DailyLossLimit, DrawdownKillSwitch, EntryGate, entries_allowed
from risk.stops import regime_value

_TOLERANCE = 1e-9  # caps compare with this slack: a weight the optimiser set exactly at a cap passes


def historical_var(returns, confidence: float) -> float:
    """Historical value at risk: the loss not exceeded with probability ``confidence``.

    VaR = -q_(1 - confidence)(returns), floored at 0, with the empirical quantile taken at an
    observed return (numpy's "lower" method: the worse of the two neighbours, conservative).
    NaNs are dropped; NaN when nothing is left.
    """
    values = np.asarray(returns, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return max(0.0, -float(np.quantile(values, 1.0 - confidence, method="lower")))


@dataclass(frozen=True)
class Candidate:
    """A proposed entry (or addition to a holding)."""

    symbol: str
    weight: float               # proposed order value / equity, before adjustments
    sector: str | None
    avg_dollar_volume: float    # mean of close x volume over risk.adv_bars bars up to now (NaN: unknown)


@dataclass(frozen=True)
class PortfolioView:
    """What the risk manager needs to know about the account at this bar."""

    equity: float
    weights: Mapping[str, float]   # holding -> weight of equity (long only)
    sectors: Mapping[str, str]     # holding -> sector
    returns: pd.DataFrame          # per-bar returns up to now; columns: the holdings and the candidate
    regime: str | None = None      # market regime label (None: risk.neutral_regime)


@dataclass(frozen=True)
class RiskAssessment:
    """The verdict on one candidate. Adjustments apply when ``approved``: trade ``size_multiplier``
    x the proposed weight, wait ``delay_bars`` bars (re-assess then), use a limit order."""

    score: float
    approved: bool
    components: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    size_multiplier: float = 1.0
    delay_bars: int = 0
    use_limit_order: bool = False


class RiskManager:
    """Scores entry candidates (:meth:`assess`) and keeps the daily-loss and kill-switch gates."""

    def __init__(self, config: RiskConfig):
        self.config = config
        self.daily_loss = DailyLossLimit.from_config(config)
        self.kill_switch = DrawdownKillSwitch.from_config(config)
        self._returns_cache: tuple | None = None   # (frame, its values, column -> position)
        self._centred_cache: tuple | None = None   # (frame, column position -> centred window or None)

    # ---- gates -------------------------------------------------------------------------------
    def update_equity(self, timestamp, equity: float) -> EntryGate:
        """Feed the bar's equity to both gates; returns whether entries may go ahead and why not."""
        self.daily_loss.update(timestamp, equity)
        self.kill_switch.update(timestamp, equity)
        return entries_allowed(self.daily_loss, self.kill_switch)

    def to_dict(self) -> dict:
        return {"daily_loss": self.daily_loss.to_dict(), "kill_switch": self.kill_switch.to_dict()}

    def load_state(self, state: dict) -> None:
        """Restore the gates saved by :meth:`to_dict`, under this manager's configured limits."""
        self.daily_loss = DailyLossLimit.from_dict(state["daily_loss"], self.config.daily_loss_limit)
        self.kill_switch = DrawdownKillSwitch.from_dict(state["kill_switch"], self.config.max_drawdown)

    # ---- candidates --------------------------------------------------------------------------
    def assess(self, candidate: Candidate, portfolio: PortfolioView) -> RiskAssessment:
        """Score ``candidate`` against ``portfolio`` (see the module docstring)."""
        cfg = self.config
        reasons: list[str] = []
        holdings = {s: w for s, w in portfolio.weights.items() if w > 0 and s != candidate.symbol}
        held_already = max(portfolio.weights.get(candidate.symbol, 0.0), 0.0)
        # VaR decides the size; everything else is measured at that size.
        size_multiplier, var_component, var_breach = self._check_var(candidate, portfolio, holdings,
                                                                     held_already, reasons)
        weight = candidate.weight * size_multiplier
        corr_component, corr_breach, delay_bars = self._check_correlation(candidate, portfolio, holdings, reasons)
        sector_component, sector_breach = self._check_sector(candidate, portfolio, holdings,
                                                             held_already + weight, reasons)
        liquidity_component, liquidity_breach, use_limit_order = self._check_liquidity(
            candidate, weight * portfolio.equity, reasons)
        components = {"var": var_component, "correlation": corr_component, "sector": sector_component,
                      "liquidity": liquidity_component,
                      "regime": regime_value(cfg.regime_risk, portfolio.regime, cfg.neutral_regime)}
        score = float(sum(getattr(cfg.score_weights, name) * value for name, value in components.items()))
        if score >= cfg.approve_below:
            reasons.append(f"risk score {score:.2f} is not below {cfg.approve_below:.2f}")
        approved = score < cfg.approve_below and not (var_breach or corr_breach or sector_breach or liquidity_breach)
        return RiskAssessment(score, approved, components, reasons, size_multiplier, delay_bars, use_limit_order)

    def _check_var(self, candidate, portfolio, holdings, held_already, reasons) -> tuple[float, float, bool]:
        """(size multiplier, component, breach)."""
        cfg = self.config
        rows = self._aligned_returns(portfolio.returns, [candidate.symbol, *holdings], cfg.var_bars)
        if rows is None:
            reasons.append(f"VaR unknown: fewer than {cfg.min_history_bars} bars of returns")
            return 1.0, 1.0, False

        def var_at(weight: float) -> float:
            return self._portfolio_var(rows, holdings, candidate.symbol, held_already + weight)

        without, with_full = var_at(0.0), var_at(candidate.weight)
        budget_left = cfg.var_limit - without
        added = max(with_full - without, 0.0)
        impact = added / budget_left if budget_left > 0 else (math.inf if added > 0 else 0.0)
        multiplier, var_with = 1.0, with_full
        if impact > cfg.var_impact_high:
            multiplier, var_with = 0.5, var_at(0.5 * candidate.weight)
            reasons.append(f"high VaR impact: the candidate takes {impact:.0%} of the VaR budget left; size halved")
        breach = var_with > cfg.var_limit + _TOLERANCE
        if breach:
            reasons.append(f"VaR {var_with:.2%} with the candidate is above the limit {cfg.var_limit:.2%}")
        return multiplier, min(var_with / cfg.var_limit, 1.0), breach

    def _check_correlation(self, candidate, portfolio, holdings, reasons) -> tuple[float, bool, int]:
        """(component, breach, delay bars)."""
        cfg = self.config
        if not holdings:
            return 0.0, False, 0
        correlation = self._max_correlation(portfolio.returns, candidate.symbol, list(holdings))
        if correlation is None:
            reasons.append(f"correlation unknown: fewer than {cfg.min_history_bars} common bars")
            return 1.0, False, 0
        component = min(max(correlation / cfg.max_correlation, 0.0), 1.0) if cfg.max_correlation > 0 else 1.0
        breach = correlation > cfg.max_correlation
        delay = cfg.correlation_delay_bars if correlation > cfg.correlation_delay_above else 0
        if breach:
            reasons.append(f"correlation {correlation:.2f} with a holding is above {cfg.max_correlation:.2f}")
        elif delay:
            reasons.append(f"correlation {correlation:.2f} is high: entry delayed {delay} bar(s)")
        return component, breach, delay

    def _check_sector(self, candidate, portfolio, holdings, position_weight, reasons) -> tuple[float, bool]:
        """(component, breach); missing sector labels count as one "unknown" sector."""
        cap = self.config.max_sector_weight
        sector = candidate.sector or None
        exposure = position_weight + sum(w for s, w in holdings.items() if (portfolio.sectors.get(s) or None) == sector)
        breach = exposure > cap + _TOLERANCE
        if breach:
            reasons.append(f"sector {sector or '(unknown)'} would reach {exposure:.1%}, above {cap:.0%}")
        return (min(exposure / cap, 1.0) if cap > 0 else 1.0), breach

    def _check_liquidity(self, candidate, order_value, reasons) -> tuple[float, bool, bool]:
        """(component, breach, use a limit order); no volume is a breach."""
        cfg = self.config
        allowance = cfg.max_adv_share * candidate.avg_dollar_volume
        usage = order_value / allowance if math.isfinite(allowance) and allowance > 0 else math.inf
        breach, limit_order = usage > 1.0 + _TOLERANCE, usage > cfg.limit_order_above
        if breach:
            reasons.append(f"order {order_value:,.0f} is above {cfg.max_adv_share:.1%} of average dollar volume")
        elif limit_order:
            reasons.append(f"low liquidity: the order uses {usage:.0%} of its volume allowance; limit order")
        return min(usage, 1.0), breach, limit_order

    # ---- measures ----------------------------------------------------------------------------
    # numpy on the returns' values: a bar assesses several candidates against the same frame, so its
    # values and column positions are taken once (pandas' reindex and corr cost milliseconds a call)
    def _values(self, returns: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        cached = self._returns_cache
        if cached is None or cached[0] is not returns:
            cached = (returns, returns.to_numpy(dtype=float), {c: i for i, c in enumerate(returns.columns)})
            self._returns_cache = cached
        return cached[1], cached[2]

    def _aligned_returns(self, returns: pd.DataFrame, symbols: list[str], bars: int) -> np.ndarray | None:
        """The last ``bars`` rows of ``symbols`` (columns in that order), keeping rows where all have
        a value; None if too few (a symbol without a column has no rows)."""
        values, column = self._values(returns)
        if any(s not in column for s in symbols):
            return None
        rows = values[-bars:, [column[s] for s in symbols]] if bars > 0 else values[:0, :0]
        rows = rows[np.isfinite(rows).all(axis=1)]
        return rows if len(rows) >= self.config.min_history_bars else None

    def _portfolio_var(self, rows: np.ndarray, holdings: Mapping[str, float], symbol: str,
                       candidate_weight: float) -> float:
        """``rows``: from :meth:`_aligned_returns` with columns ``[symbol, *holdings]``."""
        weights = np.array([candidate_weight, *holdings.values()], dtype=float)
        return historical_var(rows @ weights, self.config.var_confidence)

    def _centred(self, returns: pd.DataFrame, window: np.ndarray, i: int, j: int) -> tuple | None:
        """Columns i and j of the correlation window less their means, when both have a value at every
        row (the pair's common rows are then all rows: the numbers the pairwise computation gives), kept
        for the bar's other candidates; None otherwise (or too few rows)."""
        if self._centred_cache is None or self._centred_cache[0] is not returns:
            self._centred_cache = (returns, {})
        cache = self._centred_cache[1]
        for k in (i, j):
            if k not in cache:
                column = window[:, k]
                full = np.isfinite(column).all() and len(column) >= self.config.min_history_bars
                cache[k] = column - column.mean() if full else None
        return None if cache[i] is None or cache[j] is None else (cache[i], cache[j])

    def _max_correlation(self, returns: pd.DataFrame, symbol: str, holdings: list[str]) -> float | None:
        """Highest correlation of ``symbol`` with any holding over the last correlation_bars rows
        (pairwise complete, at least min_history_bars); None when none can be measured."""
        values, column = self._values(returns)
        present = [h for h in holdings if h in column]
        if not present or symbol not in column:
            return None
        window = values[-self.config.correlation_bars:]
        x = window[:, column[symbol]]
        best = None
        for h in present:
            y = window[:, column[h]]
            centred = self._centred(returns, window, column[symbol], column[h])
            if centred is not None:
                dx, dy = centred
            else:
                both = np.isfinite(x) & np.isfinite(y)
                if both.sum() < self.config.min_history_bars:
                    continue
                dx, dy = x[both] - x[both].mean(), y[both] - y[both].mean()
            denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
            if denominator > 0:
                c = float(dx @ dy) / denominator
                best = c if best is None else max(best, c)
        return best
