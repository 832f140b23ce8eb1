"""Choosing holdings from a ranking: top-k with a dropout band (Qlib's ``TopkDropoutStrategy`` idea).

Pure Python, no Backtrader: the ``ml_rank`` strategy (:mod:`strategies.ml_rank`) calls these at each
rebalance, ``ml``, ``ml_equal_weight`` and ``momentum_breakout`` fill their free slots with
:func:`fill_slots`, and the tests check them on their own.

Hold the ``top_k`` best-ranked symbols, but sell a holding only once it ranks below ``keep_k``
(``keep_k >= top_k``): a name that slips from 20th to 25th is kept, so a noisy score does not trade
the names around the cut-off in and out at every rebalance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence


def rank_symbols(scores: Mapping[str, float]) -> list[str]:
    """Symbols by score, highest first; equal scores by symbol name; a missing (NaN) score is left out."""
    usable = [(name, float(score)) for name, score in scores.items() if math.isfinite(float(score))]
    return [name for name, _ in sorted(usable, key=lambda item: (-item[1], item[0]))]


def fill_slots(scores: Mapping[str, float], free: int) -> list[str]:
    """The best-scored names (:func:`rank_symbols`) for ``free`` slots, best first; none when no slot is free."""
    return rank_symbols(scores)[:max(free, 0)]


@dataclass(frozen=True)
class Selection:
    """What a rebalance does with a ranking and the holdings."""

    keep: tuple[str, ...]     # holdings that stay: ranked within keep_k, or not ranked at all this time
    sell: tuple[str, ...]     # holdings ranked below keep_k, in rank order
    buy: tuple[str, ...]      # the best-ranked names not held, as many as the top_k has free slots
    reserve: tuple[str, ...]  # the next in rank order (within keep_k, not held): each takes a refused buy's slot


def select_holdings(ranked: Sequence[str], held: Iterable[str], top_k: int, keep_k: int) -> Selection:
    """Top-k with dropout hysteresis.

    - keep: every holding ranked within the first ``keep_k`` (and one missing from ``ranked``, e.g.
      without a bar or a prediction at this rebalance: no score, no verdict);
    - sell: every other holding;
    - buy: the names not held, best first, filling ``top_k - len(keep)`` slots (none when the kept
      holdings fill the top_k already);
    - reserve: the names not held that follow, down to rank ``keep_k`` (one ranked lower would be
      sold at the next rebalance).

    ``ranked``: symbols best first (:func:`rank_symbols`); ``held``: symbols held or on their way.
    """
    if top_k < 1 or keep_k < top_k:
        raise ValueError(f"need 1 <= top_k <= keep_k (got top_k {top_k}, keep_k {keep_k})")
    held = set(held)
    position = {name: k for k, name in enumerate(ranked)}
    unranked = sorted(name for name in held if name not in position)
    keep = sorted((name for name in held if position.get(name, keep_k) < keep_k), key=position.__getitem__) + unranked
    sell = sorted((name for name in held if position.get(name, -1) >= keep_k), key=position.__getitem__)
    candidates = [name for name in ranked[:keep_k] if name not in held]
    free = max(top_k - len(keep), 0)
    return Selection(tuple(keep), tuple(sell), tuple(candidates[:free]), tuple(candidates[free:]))
