"""Leakage checks that can fail: on labels (they must look forward, and no further than their
declared end) and on a label against same-bar features (it must not be one of them).

- :func:`label_lookahead_check` (after Freqtrade's lookahead analysis): for each cut bar c, the
  labels are recomputed (1) on the data truncated after c and (2) on data whose bars after c are
  replaced by a different random path. A label whose end is <= c must come out identical both
  times (it reads nothing beyond its end); of the labels at bars <= c whose window runs past c,
  at least ``min_changed`` must change in (2), else they do not depend on the future: a past value
  posing as a label, e.g. a return shifted the wrong way, changes for none. (Discrete path labels,
  like where the best entry falls, legitimately stay put for many rows: hence a low default.)
  Every known label must end after its bar.
- :func:`feature_label_check`: the pooled Spearman correlation of the label with each same-bar
  feature. Honest daily features correlate with forward returns at |IC| of a few hundredths; a
  label that is a function of data up to its own bar (a one-bar timing slip) correlates with the
  features that hold that data far more.
Both return a list of problems, empty when the check passes.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from models.labels import make_labels

LabelFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def project_label_fn(models_cfg) -> LabelFn:
    """The project's labels as ``(close, high, low) -> (values (T, N, K), end (T, N, K))``: the
    returns of every horizon, then the entry timing, exit timing and adverse excursion."""
    def labels(close, high, low):
        L = make_labels(close, high, low, models_cfg.horizons, models_cfg.decision_horizon, models_cfg.labels)
        values = np.concatenate([L.returns, L.entry_timing[..., None], L.exit_timing[..., None],
                                 L.adverse_excursion[..., None]], axis=2)
        end = np.concatenate([L.end, np.repeat(L.path_end[..., None], 3, axis=2)], axis=2)
        return values, end
    return labels


def _replace_future(close, high, low, cut: int, rng, noise: float):
    """Prices after ``cut`` moved onto another random walk (high/low keep their distance to the close)."""
    T, N = close.shape
    steps = np.zeros((T, N))
    steps[cut + 1:] = rng.normal(0.0, noise, size=(T - cut - 1, N))
    factor = np.exp(np.cumsum(steps, axis=0))
    return close * factor, high * factor, low * factor


def label_lookahead_check(label_fn: LabelFn, close: np.ndarray, high: np.ndarray, low: np.ndarray,
                          cuts, *, min_changed: float = 0.05, noise: float = 0.05, seed: int = 0) -> list[str]:
    """Problems found (empty: the labels pass). ``cuts``: calendar bars to cut after."""
    problems = []
    values, end = label_fn(close, high, low)
    bar = np.arange(close.shape[0])[:, None, None]
    known = end >= 0
    if (known & (end <= bar)).any():
        problems.append(f"{int((known & (end <= bar)).sum())} labels end at or before their own bar: "
                        "a label must read at least one bar after it")
    rng = np.random.default_rng(seed)
    for cut in cuts:
        ended = known & (end <= cut)
        truncated, truncated_end = label_fn(close[: cut + 1], high[: cut + 1], low[: cut + 1])
        moved = ~np.isclose(truncated[ended[: cut + 1]], values[: cut + 1][ended[: cut + 1]], rtol=0, atol=1e-12,
                            equal_nan=True)
        moved |= truncated_end[ended[: cut + 1]] != end[: cut + 1][ended[: cut + 1]]
        if moved.any():
            problems.append(f"cut at bar {cut}: {int(moved.sum())} labels that end by the cut change when the "
                            "data stops there: they read beyond their declared end")
        other, other_end = label_fn(*_replace_future(close, high, low, cut, rng, noise))
        if (~np.isclose(other[ended], values[ended], rtol=0, atol=1e-12, equal_nan=True)).any():
            problems.append(f"cut at bar {cut}: labels that end by the cut change with the prices after it")
        crossing = known & (bar <= cut) & (end > cut)
        for k in range(values.shape[2]):
            mine = crossing[:, :, k]
            if mine.any():
                changed = float(np.mean(~np.isclose(other[:, :, k][mine], values[:, :, k][mine], rtol=0, atol=1e-12)))
                if changed < min_changed:
                    problems.append(f"cut at bar {cut}, label {k}: only {changed:.0%} of the labels whose window "
                                    f"runs past the cut depend on the prices after it: not forward-looking")
    return problems


def feature_label_check(X: np.ndarray, y: np.ndarray, names, max_abs_correlation: float = 0.3) -> list[str]:
    """Features whose same-bar Spearman correlation with label ``y`` exceeds the limit."""
    corr = pd.DataFrame(X, columns=list(names)).corrwith(pd.Series(y), method="spearman")
    worst = corr[corr.abs() > max_abs_correlation].sort_values(key=np.abs, ascending=False)
    return [f"label correlates {value:+.2f} with same-bar feature {name}: the label is (partly) known at its own bar"
            for name, value in worst.items()]
