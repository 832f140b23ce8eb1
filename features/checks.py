"""Leakage checks for features (and anything else that maps bars to values per bar and symbol).

- :func:`lookahead_violations`: recompute on bars cut at t, and on bars whose every value after t
  is replaced by random garbage; any value at or before t that moved saw the future.
- :func:`warmup_violations`: recompute on data that starts later; after the declared warm-up a
  value that moved by more than the tolerance depends on how much history came before it.

Both take a registry (evaluated with :class:`~features.engine.FeatureEngine`) or a function
``bars -> FeaturePanel``, so the ML code can run them on its own transformations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from features.engine import FeatureEngine, FeaturePanel

Bars = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Violation:
    """A value that changed when it should not have (the first such bar of a feature and symbol)."""

    check: str          # "lookahead" or "warmup"
    feature: str
    symbol: str
    time: pd.Timestamp
    reference: float    # the value on the full data
    altered: float      # the value on the cut, garbled or late-starting data
    detail: str         # which alteration

    def __str__(self):
        return (f"{self.check}: {self.feature} [{self.symbol} @ {self.time}] {self.reference!r} -> "
                f"{self.altered!r} ({self.detail})")


def _evaluator(registry_or_fn, bars: Bars, engine_options: Mapping | None) -> Callable[[Bars], FeaturePanel]:
    if callable(registry_or_fn) and not hasattr(registry_or_fn, "names"):
        return registry_or_fn
    engine = FeatureEngine(registry_or_fn, list(bars), **dict(engine_options or {}))
    return engine.batch


def _garble(frame: pd.DataFrame, after: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """The frame with every bar after ``after`` replaced by random, still well-formed, bars."""
    frame = frame.copy()
    later = frame.index > after
    k = int(later.sum())
    if k == 0:
        return frame
    level = float(frame["close"].iloc[0])
    prices = level * np.exp(rng.normal(0.0, 0.5, size=(k, 4)))
    frame.loc[later, "open"], frame.loc[later, "close"] = prices[:, 0], prices[:, 1]
    frame.loc[later, "high"] = prices.max(axis=1)
    frame.loc[later, "low"] = prices.min(axis=1)
    frame.loc[later, "volume"] = rng.uniform(0.0, 2.0, size=k) * float(frame["volume"].mean() + 1.0)
    return frame


def _compare(reference: FeaturePanel, altered: FeaturePanel, times: pd.DatetimeIndex, check: str,
             detail: str, tolerance: Callable[[np.ndarray], np.ndarray], mask=None) -> list[Violation]:
    """Violations where the two panels disagree at ``times`` (beyond ``tolerance(reference)``)."""
    ref_rows = reference.times.get_indexer(times)
    alt_rows = altered.times.get_indexer(times)
    keep = (ref_rows >= 0) & (alt_rows >= 0)
    ref_rows, alt_rows, times = ref_rows[keep], alt_rows[keep], times[keep]
    cols = [reference.symbols.index(s) for s in altered.symbols]
    a = reference.data[:, ref_rows][:, :, cols]
    b = altered.data[:, alt_rows]
    both_nan = np.isnan(a) & np.isnan(b)
    bad = ~both_nan & ~(np.abs(a - b) <= tolerance(a))
    if mask is not None:
        bad &= mask[:, alt_rows]
    found = []
    for f, name in enumerate(reference.names):
        if not bad[f].any():
            continue
        for j in np.flatnonzero(bad[f].any(axis=0)):
            t = int(np.flatnonzero(bad[f][:, j])[0])
            found.append(Violation(check, name, altered.symbols[j], times[t], float(a[f, t, j]),
                                   float(b[f, t, j]), detail))
    return found


def lookahead_violations(registry_or_fn, bars: Bars, cut_times: Iterable, *, seed: int = 0,
                         engine_options: Mapping | None = None) -> list[Violation]:
    """Values at or before each cut time t that change when the bars after t are removed, or
    replaced by random bars. ``cut_times`` may fall between bars (a weekend, a holiday)."""
    compute = _evaluator(registry_or_fn, bars, engine_options)
    reference = compute(bars)
    rng = np.random.default_rng(seed)
    exact = lambda a: 1e-12 * np.abs(a)  # noqa: E731  (identical arithmetic: only rounding may differ)
    found: list[Violation] = []
    for cut in map(pd.Timestamp, cut_times):
        upto = reference.times[reference.times <= cut]
        cut_bars = {s: f[f.index <= cut] for s, f in bars.items()}
        garbled = {s: _garble(f, cut, rng) for s, f in bars.items()}
        for detail, variant in ((f"bars after {cut} removed", cut_bars),
                                (f"bars after {cut} replaced by random bars", garbled)):
            found += _compare(reference, compute(variant), upto, "lookahead", detail, exact)
    return found


def warmup_violations(registry_or_fn, bars: Bars, starts: Iterable, tolerance: float, *,
                      engine_options: Mapping | None = None, warmups: Mapping[str, int] | None = None,
                      calendar_clock: Mapping[str, bool] | None = None) -> list[Violation]:
    """Values past their declared warm-up that change by more than ``tolerance`` x the feature's
    mean |value| when the data starts at each of ``starts`` instead of at its beginning.

    With a registry the warm-ups are its declared ones (and NaN before them is by construction);
    with a function, pass ``warmups`` {feature: bars} and ``calendar_clock`` {feature: bool}.
    """
    compute = _evaluator(registry_or_fn, bars, engine_options)
    if hasattr(registry_or_fn, "names"):
        warmups = {f.name: f.warmup for f in registry_or_fn}
        calendar_clock = {f.name: f.calendar_clock for f in registry_or_fn}
    reference = compute(bars)
    found: list[Violation] = []
    for start in map(pd.Timestamp, starts):
        late = {s: f[f.index >= start] for s, f in bars.items()}
        altered = compute(late)
        times = altered.times
        own = np.cumsum(altered.present, axis=0) - 1               # own bar number since the start
        calendar = np.arange(len(times))[:, None]
        usable = np.stack([
            ((calendar if calendar_clock.get(name, False) else own) >= warmups.get(name, 0)) & altered.present
            for name in altered.names])
        scale = np.nanmean(np.abs(np.where(usable, reference.data[:, reference.times.get_indexer(times)]
                                           [:, :, [reference.symbols.index(s) for s in altered.symbols]],
                                           np.nan)), axis=(1, 2))
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)[:, None, None]
        found += _compare(reference, altered, times, "warmup", f"data starting {start}",
                          lambda a: np.broadcast_to(tolerance * scale, a.shape), mask=usable)
    return found
