"""Stops of a long position: the initial stop distance, when a trailing stop fits, when to move a stop.

Stop levels are prices; stop distances are fractions of the entry price. A stop computed from bar
t's prices applies from bar t+1 on: within one bar the order of its high and low is unknown. A
trailing stop, once started (``risk.position_rules``), is a stop-trail order: the broker moves it.
"""
from __future__ import annotations

import math

from config.schema import RiskConfig


def regime_value(table: dict[str, float], regime: str | None, neutral: str) -> float:
    """``table[regime]`` (``table[neutral]`` when ``regime`` is None); an unknown label is an error."""
    key = neutral if regime is None else regime
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"unknown regime {key!r}: the config names {sorted(table)}") from None


def initial_stop_pct(model_stop_pct: float, volatility: float, regime: str | None, config: RiskConfig) -> float:
    """Initial stop distance from the stop-loss model's stop, in [stop_min, stop_max].

    base   = clip(model_stop_pct, stop_min, stop_max)          (the model's stop, a fraction of price)
    stop   = base x (volatility / stop_reference_volatility) ** stop_volatility_exponent
                  x stop_regime_multipliers[regime]
    result = clip(stop, stop_min, stop_max)

    ``volatility``: the symbol's return volatility over ``stop_volatility_bars`` bars up to now, per
    bar. A missing (NaN) model stop starts from the middle of the range, and a missing volatility
    skips that scaling, rather than inventing a tight stop.
    """
    lo, hi = config.stop_min, config.stop_max
    stop = (lo + hi) / 2.0 if not math.isfinite(model_stop_pct) else min(max(model_stop_pct, lo), hi)
    if math.isfinite(volatility) and volatility > 0:
        stop *= (volatility / config.stop_reference_volatility) ** config.stop_volatility_exponent
    stop *= regime_value(config.stop_regime_multipliers, regime, config.neutral_regime)
    return min(max(stop, lo), hi)


def trailing_stop_fits(momentum: float, adx: float, *, adx_min: float, min_momentum: float = 0.0) -> bool:
    """The blueprint's rule: trail when momentum is strong (above ``min_momentum``) and ADX > ``adx_min``."""
    return bool(momentum > min_momentum and adx > adx_min)  # NaN compares False: no trailing


def stop_should_move(old_stop: float, new_stop: float, entry_price: float, threshold: float) -> bool:
    """True when ``new_stop`` is above ``old_stop`` by more than ``threshold`` x ``entry_price``.

    Only a tightening counts: a stop never loosens (a wider optimal stop is ignored).
    """
    return bool(new_stop - old_stop > threshold * entry_price)
