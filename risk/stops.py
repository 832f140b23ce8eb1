"""Stops of a long position: the initial stop distance, the trailing stop, when to move a stop.

Stop levels are prices; stop distances are fractions of the entry price. A stop computed from bar
t's prices applies from bar t+1 on: within one bar the order of its high and low is unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class TrailingStop:
    """The stop level of one long position: starts at ``stop``, trails once the gain is large enough.

    After the highest price seen reaches ``entry_price x (1 + activation)``, the stop follows
    ``highest x (1 - trail_pct)``. The level never goes down, and any raise comes from a price seen
    (so the stop is never set above the price that set it). ``trails=False`` keeps the stop fixed
    except for explicit :meth:`tighten` calls (when :func:`trailing_stop_fits` says no).
    A plain dataclass: ``dataclasses.asdict`` / ``TrailingStop(**d)`` persist it.
    """

    entry_price: float
    stop: float
    activation: float
    trail_pct: float
    trails: bool = True
    highest: float = float("nan")
    active: bool = False
    is_trailing: bool = False  # the current level was set by the trailing rule ("trailing_stop" exits)

    def __post_init__(self):
        if math.isnan(self.highest):
            self.highest = self.entry_price
        if not (self.entry_price > 0 and math.isfinite(self.stop) and self.stop <= self.highest):
            raise ValueError(f"a long stop must lie below the prices seen (entry {self.entry_price}, "
                             f"highest {self.highest}, stop {self.stop})")

    @classmethod
    def from_config(cls, entry_price: float, stop_pct: float, config: RiskConfig, *, trails: bool = True):
        return cls(entry_price, entry_price * (1.0 - stop_pct), config.trail_activation, config.trail_pct, trails)

    def update(self, price: float) -> float:
        """Feed the bar's high (or close) after the bar; returns the stop for the next bar."""
        if not math.isfinite(price):
            return self.stop
        self.highest = max(self.highest, price)
        if self.trails and not self.active and self.highest >= self.entry_price * (1.0 + self.activation):
            self.active = True
        if self.active:
            level = self.highest * (1.0 - self.trail_pct)
            if level > self.stop:
                self.stop, self.is_trailing = level, True
        return self.stop

    def tighten(self, level: float) -> float:
        """Raise the stop to ``level`` (e.g. the model's new optimal stop); a lower level is ignored."""
        if math.isfinite(level) and level > self.stop:
            self.stop, self.is_trailing = min(level, self.highest), False
        return self.stop
