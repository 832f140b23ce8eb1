"""Target weight -> whole shares, under the per-trade risk cap and the position-size limits."""
from __future__ import annotations

import math


def position_shares(weight: float, equity: float, price: float, stop_distance_pct: float, *,
                    risk_per_trade: float, min_position_value: float, max_position_weight: float) -> int:
    """Whole shares to hold for a target ``weight`` of ``equity``.

    value = min(weight, max_position_weight, risk_per_trade / stop_distance_pct) x equity
    shares = floor(value / price), so every cap holds after rounding (never rounded up past one);
    0 when shares x price < min_position_value. The risk cap is shares x price x stop_distance_pct
    <= risk_per_trade x equity (the blueprint's 2% risk per trade).

    Anything that makes the risk unmeasurable or the trade meaningless gives 0, not an error: a
    non-positive or missing stop distance, price, equity or weight.
    """
    values = (weight, equity, price, stop_distance_pct)
    if not all(math.isfinite(v) and v > 0 for v in values):
        return 0
    max_weight = min(weight, max_position_weight, risk_per_trade / stop_distance_pct)
    shares = math.floor(max_weight * equity / price)
    if shares <= 0 or shares * price < min_position_value:
        return 0
    return shares


def cost_rate(costs) -> float:
    """Commission and slippage per unit traded (``costs.commission_bps + costs.slippage_bps``)."""
    return (costs.commission_bps + costs.slippage_bps) / 1e4


def shares_for_value(value: float, price: float, costs: float) -> int:
    """Whole shares that ``value`` buys at ``price``, with room for twice the ``costs`` rate on the
    fill so a market order is not refused for a few cents."""
    if price <= 0 or not math.isfinite(price) or value <= 0:
        return 0
    return int(value / (price * (1 + 2 * costs)))


def entry_shares(weight: float, *, equity: float, price: float, stop_distance_pct: float, cash: float,
                 costs: float, risk) -> int:
    """Whole shares of an entry at ``weight`` of ``equity``: :func:`position_shares` under
    ``risk`` (``RiskConfig``: the risk-per-trade and position caps), at most what ``cash`` buys
    (:func:`shares_for_value`); 0 when that is worth less than ``risk.min_position_value``."""
    size = position_shares(weight, equity, price, stop_distance_pct, risk_per_trade=risk.risk_per_trade,
                           min_position_value=risk.min_position_value, max_position_weight=risk.max_position_weight)
    size = min(size, shares_for_value(cash, price, costs))
    return size if size > 0 and size * price >= risk.min_position_value else 0


def equal_weight_sizes(prices: list[tuple[str, float]], *, equity: float, cash: float, weight: float,
                       min_position_value: float, costs: float) -> list[tuple[str, int]]:
    """(name, shares) for names in turn at ``weight`` of ``equity`` each, within the cash left:
    ``prices`` is (name, price) best first; the first name that the cash left cannot give
    ``min_position_value`` ends the list, a name whose price buys no whole share is skipped."""
    sizes = []
    for name, price in prices:
        value = min(equity * weight, cash)
        if value < min_position_value:
            break
        size = shares_for_value(value, price, costs)
        if size <= 0:
            continue
        sizes.append((name, size))
        cash -= size * price
    return sizes
