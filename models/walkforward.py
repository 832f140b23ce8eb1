"""Purged walk-forward training and prediction, pure (no Backtrader): the same code runs a backtest
ahead of time and a live session bar by bar, with the same numbers.

Schedule: retrain at ``first, first + retrain_every, ...`` (``first`` defaults to the first bar with
a full ``train_bars`` window of usable rows); the model fitted at t predicts bars t .. next - 1.
At each retrain t (:meth:`WalkForward.retrain`):

1. hyperparameter search inside the window when due (``[models.search] schedule``), counted;
2. on the first retrain only, purged k-fold out-of-fold base predictions over the window seed the
   out-of-sample history (nothing has been predicted yet);
3. the base and specialised models are fitted on the window (``EnsemblePredictor.fit_base``);
4. the meta-learner, calibration and bounds are fitted on the out-of-sample history: the base
   predictions every earlier model made for the bars it was used on, whose labels have ended by
   ``t - embargo`` (``EnsemblePredictor.fit_meta``).

:meth:`WalkForward.predict` records the base predictions it makes into that history, so calling it
per bar (live) or per fold (backtest) leaves the same history and the same next models.

Backtest::

    result = WalkForward(cfg.models, seed, progress=True).run(data)
    result.predictions.grid("confidence", data.n_bars, n_symbols)   # (T, N), NaN before the first fit

Live, each new bar t (``data`` holds the bars up to t; labels are computed from them)::

    if wf.is_retrain_bar(t, first): wf.retrain(data, t)
    predictions = wf.predict(data, [t])
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from models.dataset import PanelData, flat, valid_rows
from models.plugins import PLUGINS
from models.predictor import EnsemblePredictor, Predictions
from models.search import random_search
from models.splits import retrain_points


@dataclass
class Fold:
    index: int
    fit_bar: int                 # the retrain bar
    train_start: int             # first and last bar of the training samples
    train_end: int
    test_start: int              # bars this model predicted
    test_end: int
    n_train: int
    n_meta: int                  # out-of-sample rows the meta-learner and calibration were fitted on
    n_test: int
    configurations: int          # search configurations tried at this retrain
    seconds: dict[str, float] = field(default_factory=dict)   # fit time per model (and "predict")
    model_weights: dict[str, list[float]] = field(default_factory=dict)
    feature_importance: np.ndarray | None = None   # (F,) the tree models' normalised gain at this fit


@dataclass
class WalkForwardResult:
    predictions: Predictions     # every out-of-sample row, in time order
    folds: list[Fold]
    n_configurations: int        # hyperparameter configurations tried in all searches
    base_names: list[str]
    horizons: tuple[int, ...]
    predictor: EnsemblePredictor  # as fitted at the last retrain


class WalkForward:
    """The walk-forward state: the predictor, the out-of-sample history, the search count."""

    def __init__(self, cfg, seed: int, progress: bool = False):
        self.cfg, self.seed, self.progress = cfg, int(seed), progress
        self.predictor = EnsemblePredictor(cfg, seed)
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # bar -> (symbols, base (n, M, H))
        self._searched = False
        self.n_configurations = 0

    # ---- schedule ---------------------------------------------------------------------------------
    def first_retrain(self, data: PanelData) -> int:
        """The first bar whose trailing window spans ``train_bars`` bars of usable rows."""
        usable = np.flatnonzero(valid_rows(data, self.cfg.min_feature_fraction).any(axis=1))
        return int(usable[0]) + self.cfg.train_bars if len(usable) else data.n_bars

    def is_retrain_bar(self, t: int, first: int) -> bool:
        return t >= first and (t - first) % self.cfg.retrain_every == 0

    # ---- one retrain ----------------------------------------------------------------------------
    def _search(self, data: PanelData, t: int) -> int:
        s = self.cfg.search
        due = s.schedule == "every" or (s.schedule == "first" and not self._searched)
        names = [n for n in s.models if n in self.predictor.base_names]
        if not due or not names:
            return 0
        self._searched = True
        bars, symbols = self.predictor.training_rows(data, t)
        X, y = flat(data.values, bars, symbols), data.labels.returns[bars, symbols]
        end = data.labels.sample_end[bars, symbols]
        tried = 0
        for k, name in enumerate(names):
            result = random_search(PLUGINS[name], self.predictor.params[name], s.space.get(name, {}), s.draws,
                                   X, y, bars, end, s.folds, self.cfg.embargo_bars, self.seed + k, self.cfg.threads)
            self.predictor.set_params(name, result.best_params)
            tried += result.n_tried
        self.n_configurations += tried
        return tried

    def _record(self, bars, symbols, base) -> None:
        for bar in np.unique(bars):
            mine = bars == bar
            self._history[int(bar)] = (symbols[mine], base[mine])

    def _history_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = sorted(self._history.items())
        return (np.concatenate([np.full(len(s), b) for b, (s, _) in items]),
                np.concatenate([s for _, (s, _) in items]), np.concatenate([x for _, (_, x) in items]))

    def retrain(self, data: PanelData, t: int) -> dict:
        """Fit the models used from bar t on; returns what :class:`Fold` records about the fit."""
        start = time.perf_counter()
        seconds = {}
        configurations = self._search(data, t)
        if configurations:
            seconds["search"] = time.perf_counter() - start
        if not self._history:
            began = time.perf_counter()
            self._record(*self.predictor.out_of_fold(data, t))
            seconds["out_of_fold"] = time.perf_counter() - began
        self.predictor.fit_base(data, t)
        for bar in [b for b in self._history if b <= t - self.cfg.ensemble.meta_window_bars]:
            del self._history[bar]                          # older than the meta-learner's window
        self.predictor.fit_meta(data, t, *self._history_rows())
        p = self.predictor
        seconds = {**p.seconds, **seconds, "total": time.perf_counter() - start}
        return {"fit_bar": t, "train_start": p.train_bars_range[0], "train_end": p.train_bars_range[1],
                "n_train": p.n_train, "n_meta": p.n_meta, "configurations": configurations,
                "seconds": seconds, "model_weights": p.model_weights, "feature_importance": p.feature_importance()}

    def predict(self, data: PanelData, bars) -> Predictions:
        """Predictions for every usable row (symbol with a bar and enough features) at ``bars``, in
        one batched call; their base predictions join the out-of-sample history."""
        if self.predictor.fitted_at is None:
            raise RuntimeError("predict before the first retrain")
        bars = np.asarray(bars, np.int64)
        ok = valid_rows(data, self.cfg.min_feature_fraction, bars)
        row_bars, symbols = bars[np.nonzero(ok)[0]], np.nonzero(ok)[1]
        predictions = self.predictor.predict(data, row_bars, symbols)
        self._record(row_bars, symbols, predictions.base)
        return predictions

    # ---- a whole history --------------------------------------------------------------------------
    def run(self, data: PanelData, first: int | None = None, end: int | None = None) -> WalkForwardResult:
        """Retrain on schedule and predict every bar from ``first`` to ``end`` (default: the last bar),
        one batch per fold."""
        first = self.first_retrain(data) if first is None else first
        stop = data.n_bars if end is None else end + 1
        points = retrain_points(stop, first, self.cfg.retrain_every)
        folds, parts = [], []
        for i, t in enumerate(tqdm(points, desc="walk-forward", unit="fold", disable=not self.progress)):
            info = self.retrain(data, int(t))
            test_end = (int(points[i + 1]) if i + 1 < len(points) else stop) - 1
            start = time.perf_counter()
            predictions = self.predict(data, np.arange(t, test_end + 1))
            info["seconds"]["predict"] = time.perf_counter() - start
            folds.append(Fold(index=i, test_start=int(t), test_end=test_end, n_test=len(predictions), **info))
            parts.append(predictions)
        if not parts:
            raise ValueError(f"no retrain point: the data has {data.n_bars} bars, "
                             f"the first retrain would be bar {first}")
        return WalkForwardResult(Predictions.concat(parts), folds, self.n_configurations, self.predictor.base_names,
                                 self.predictor.horizons, self.predictor)
