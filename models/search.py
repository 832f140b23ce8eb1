"""Random hyperparameter search (Bergstra and Bengio 2012) inside one training window.

Configurations are drawn with ``sklearn.model_selection.ParameterSampler`` from
``[models.search.space.<model>]`` (lists of values drawn uniformly) over the model's configured
parameters, and scored by purged forward (time-series) cross-validation on the window's samples
only (``models.splits.purged_kfold(forward_only=True)``): the mean over folds and horizons of the
information coefficient. No early stopping inside the search (the folds' test rows must stay
unseen). Every configuration tried is counted, for the deflated Sharpe ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import ParameterSampler

from models.evaluation import information_coefficient
from models.splits import purged_kfold


@dataclass
class SearchResult:
    best_params: object          # the plugin's parameter model (e.g. ``XGBoostParams``)
    best_score: float
    n_tried: int
    scores: list[tuple[dict, float]]


def random_search(plugin_cls, base_params, space: dict, draws: int, X: np.ndarray, y: np.ndarray,
                  bars: np.ndarray, label_end: np.ndarray, folds: int, embargo: int, seed: int,
                  threads: int) -> SearchResult:
    """Best of ``draws`` configurations of ``plugin_cls`` (a flat plugin) on (X, y) at rows ``bars``."""
    splits = list(purged_kfold(bars, label_end, folds, embargo, forward_only=True))
    if not splits:
        raise ValueError("search: the window is too short for a purged time-series split")
    sampler = list(ParameterSampler(space, n_iter=min(draws, math.prod(len(v) for v in space.values())),
                                    random_state=seed))
    scores = []
    for draw in sampler:
        params = type(base_params).model_validate({**base_params.model_dump(), **draw, "early_stopping_rounds": 0})
        ics = []
        for tr, te in splits:
            pred = plugin_cls(params, seed=seed, threads=threads).fit(X[tr], y[tr]).predict(X[te])
            ics.extend(information_coefficient(pred[:, k], y[te, k], bars[te]) for k in range(y.shape[1]))
        scores.append((draw, float(np.nanmean(ics)) if np.isfinite(ics).any() else -math.inf))
    best_draw, best_score = max(scores, key=lambda item: item[1])
    best = type(base_params).model_validate({**base_params.model_dump(), **best_draw})
    return SearchResult(best, best_score, len(sampler), scores)
