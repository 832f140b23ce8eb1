"""Macro series supplied as data (VIX, rates, the dollar index): each series' level and changes,
as known at the bar's close. Present only when ``data.macro`` names files."""
from __future__ import annotations

from features.formulas import diff, lag, log, rzscore
from features.registry import feature


def _series(context):
    return {"s": context.macro_names}


@feature("macro_{s}", group="macro", grid=_series, requires=("macro",))
def macro_level(b, s):
    """The series' latest value known at the bar's close."""
    return b.macro(s)


@feature("macro_{s}_chg_{n}", group="macro", grid=lambda c: {"s": c.macro_names, "n": (1, 5, 20)},
         requires=("macro",))
def macro_change(b, s, n):
    """value_t - value_{t-n} (calendar bars): changes of a level (rates, VIX points)."""
    return diff(b.macro(s), n)


@feature("macro_{s}_z_{n}", group="macro", grid=lambda c: {"s": c.macro_names, "n": (60,)},
         requires=("macro",))
def macro_zscore(b, s, n):
    """z-score of the value over the last n calendar bars."""
    return rzscore(b.macro(s), n)


@feature("macro_{s}_logchg_{n}", group="macro", grid=lambda c: {"s": c.macro_names, "n": (20,)},
         requires=("macro",))
def macro_log_change(b, s, n):
    """log(value_t / value_{t-n}): relative change (NaN for a series that is not positive)."""
    return log(b.macro(s) / lag(b.macro(s), n))
