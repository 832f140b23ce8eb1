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
