"""Kelly fraction and the per-position Kelly cap.

Kelly (1956); Thorp, "The Kelly criterion in blackjack, sports betting and the stock market" (2006).
Functions take scalars or numpy arrays (broadcast) and return a float for scalar inputs.
"""
from __future__ import annotations

import numpy as np


def _scalar_or_array(values: np.ndarray):
    return float(values) if values.ndim == 0 else values


def kelly_fraction(p_win, payoff_ratio):
    """f* = p - (1 - p) / b, floored at 0.

    ``p_win``: probability the trade wins (clipped into [0, 1]); ``payoff_ratio`` b: the gain of a win
    per unit lost on a loss. No edge, a non-positive payoff or a missing (NaN) input gives 0: no bet.
    """
    p = np.clip(np.asarray(p_win, dtype=float), 0.0, 1.0)
    b = np.asarray(payoff_ratio, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f = p - (1.0 - p) / b
    f = np.where(np.isfinite(f) & (b > 0), np.maximum(f, 0.0), 0.0)
    return _scalar_or_array(f)


def kelly_cap(p_win, expected_gain, stop_distance, fraction):
    """The weight cap of a position: ``fraction`` x f*(p_win, expected_gain / stop_distance).

    ``expected_gain`` and ``stop_distance`` are fractions of the entry price (the win and the loss of
    the trade); ``fraction`` is the multiple of Kelly used (the blueprint's 0.25).

    This follows the blueprint in reading f* as a share of equity to hold. For a position that loses
    only its stop distance s on a loss, the growth-optimal weight is f* / s, so this cap is 1/s times
    more conservative than full Kelly on the capital actually at risk (risk per trade is capped
    separately, by :func:`risk.sizing.position_shares`).
    """
    gain = np.asarray(expected_gain, dtype=float)
    stop = np.asarray(stop_distance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        payoff = np.where(stop > 0, gain / stop, np.nan)
    return _scalar_or_array(float(fraction) * np.asarray(kelly_fraction(p_win, payoff)))
