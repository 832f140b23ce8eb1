"""Per-bar decisions for an open long position (the blueprint's position management).

Each rule is a pure comparison; the strategy keeps the position's state. Moving the stop is
:func:`risk.stops.stop_should_move` with :meth:`risk.stops.TrailingStop.tighten`.
"""
from __future__ import annotations

import math

EXIT_REASONS = ("stop", "trailing_stop", "target", "signal", "time")


def target_should_update(current_target: float, predicted_target: float, threshold: float) -> bool:
    """True when the predicted target differs from the current one by more than ``threshold`` of it."""
    if not (math.isfinite(predicted_target) and math.isfinite(current_target) and current_target > 0):
        return False
    return abs(predicted_target - current_target) > threshold * current_target


def should_halve(entry_confidence: float, confidence: float, max_drop: float, *, already_halved: bool) -> bool:
    """True when confidence fell by more than ``max_drop`` from its value at entry; once per position."""
    return bool(not already_halved and entry_confidence - confidence > max_drop)  # NaN: False


def exit_reason(*, low: float, high: float, stop: float | None, stop_is_trailing: bool,
                target: float | None, signal_reversed: bool, bars_held: int,
                max_hold_bars: int | None) -> str | None:
    """Why the position exits at this bar, or None.

    ``stop`` and ``target`` are the levels in force during the bar (set from earlier bars). When a
    bar reaches both, the stop is assumed first (conservative: the bar's path is unknown), so the
    precedence is stop ("trailing_stop" when the trailing rule set the level), target, reversed
    signal, time limit (``bars_held >= max_hold_bars``).
    """
    if stop is not None and low <= stop:
        return "trailing_stop" if stop_is_trailing else "stop"
    if target is not None and high >= target:
        return "target"
    if signal_reversed:
        return "signal"
    if max_hold_bars is not None and bars_held >= max_hold_bars:
        return "time"
    return None
