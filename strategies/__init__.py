"""Strategies by name (``--strategy NAME`` / ``backtest.strategy``)."""
from __future__ import annotations

import importlib

from common.errors import UserError

# name -> "module:Class"; imported lazily so `--help` and the baseline never load the ML stack
STRATEGIES = {
    "momentum_breakout": "strategies.momentum_breakout:MomentumBreakout",
    "ml": "strategies.ml:MLTradingPlan",
    "ml_equal_weight": "strategies.ml:MLEqualWeight",
    "ml_rank": "strategies.ml_rank:MLRankPlan",
}


def get_strategy(name: str):
    try:
        target = STRATEGIES[name]
    except KeyError:
        raise UserError(f"unknown strategy {name!r}; available: {', '.join(sorted(STRATEGIES))}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
