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

Backtest (the fits as independent tasks on an executor, ``models.executor``; same numbers on any)::

    result = WalkForward(cfg.models, seed, progress=True).run(data, executor=SerialExecutor())
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
from models.executor import SerialExecutor
from models.plugins import PLUGINS
from models.predictor import EnsemblePredictor, Predictions, out_of_fold_rows
from models.search import search
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
    seconds: dict[str, float] = field(default_factory=dict)   # wall time of run()'s phases


class WalkForward:
    """The walk-forward state: the predictor, the out-of-sample history, the search count."""

    def __init__(self, cfg, seed: int, progress: bool = False, search_journal=None):
        """search_journal: a file for Optuna's journal of every search trial (None: kept in memory)."""
        self.cfg, self.seed, self.progress, self.search_journal = cfg, int(seed), progress, search_journal
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
    def _search(self, data: PanelData, t: int, executor=None) -> int:
        s = self.cfg.search
        if not (s.schedule == "every" or (s.schedule == "first" and not self._searched)):
            return 0
        self._searched = True
        tried = search_window(self.predictor, data, t, self.seed, executor, self.search_journal)
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

    def predict(self, data: PanelData, bars, *, record: bool = True) -> Predictions:
        """Predictions for every usable row (symbol with a bar and enough features) at ``bars``, in
        one batched call; their base predictions join the out-of-sample history. ``record``: see
        ``EnsemblePredictor.predict``."""
        if self.predictor.fitted_at is None:
            raise RuntimeError("predict before the first retrain")
        bars = np.asarray(bars, np.int64)
        ok = valid_rows(data, self.cfg.min_feature_fraction, bars)
        row_bars, symbols = bars[np.nonzero(ok)[0]], np.nonzero(ok)[1]
        predictions = self.predictor.predict(data, row_bars, symbols, record=record)
        self._record(row_bars, symbols, predictions.base)
        return predictions

    # ---- a whole history --------------------------------------------------------------------------
    def run(self, data: PanelData, first: int | None = None, end: int | None = None,
            executor=None) -> WalkForwardResult:
        """Retrain on schedule and predict every bar from ``first`` to ``end`` (default: the last bar),
        one batch per fold; the same numbers as :meth:`retrain` and :meth:`predict` bar by bar.

        The expensive part runs as independent tasks on ``executor`` (``models.executor``; default:
        in this process): the first window's out-of-fold fits and every fold's base models with
        their predictions for the fold's bars, all reading the feature panel shared once. Only
        the meta-learner needs the folds in order (it learns from earlier folds' out-of-sample
        predictions); it is fitted fold by fold afterwards, and is cheap. The last fold is fitted
        here, so this object ends as a bar-by-bar run would (ready for :meth:`predict`)."""
        executor = executor or SerialExecutor()
        began_run = time.perf_counter()
        first = self.first_retrain(data) if first is None else first
        stop = data.n_bars if end is None else end + 1
        points = [int(t) for t in retrain_points(stop, first, self.cfg.retrain_every)]
        if not points:
            raise ValueError(f"no retrain point: the data has {data.n_bars} bars, "
                             f"the first retrain would be bar {first}")
        test_ends = [t - 1 for t in points[1:]] + [stop - 1]
        every = self.cfg.search.schedule == "every"
        start = time.perf_counter()
        tried_first = 0 if every else self._search(data, points[0], executor)
        search_seconds = time.perf_counter() - start

        shared = executor.share(data)
        jobs, oof = [], None
        if not self._history:                      # the first window's out-of-fold predictions seed it
            oof = self.predictor.out_of_fold_splits(data, points[0])
            jobs = [_OutOfFoldJob(self.cfg, self.seed, dict(self.predictor.params), oof[0], oof[1], tr, te)
                    for tr, te in oof[2]]
        jobs += [_FoldJob(self.cfg, self.seed, dict(self.predictor.params), t, test_end, every, self.search_journal)
                 for t, test_end in zip(points[:-1], test_ends[:-1])]
        began = time.perf_counter()
        done = executor.map(_run_job, jobs, shared=shared, desc="walk-forward", progress=self.progress)
        if oof is not None:
            self._record(*out_of_fold_rows(*oof, done[: len(oof[2])], len(self.predictor.base_names),
                                           len(self.predictor.horizons)))
        fits = done[len(jobs) - (len(points) - 1):]
        tasks_seconds = time.perf_counter() - began
        fits.append(_fit_fold(data, _FoldJob(self.cfg, self.seed, dict(self.predictor.params), points[-1],
                                              test_ends[-1], every, self.search_journal), self.predictor))
        self.n_configurations += sum(f.configurations for f in fits)      # the "every" schedule's

        folds, parts = [], []
        for i, (t, test_end, fit) in enumerate(tqdm(list(zip(points, test_ends, fits)), desc="stacking", unit="fold",
                                                    disable=not self.progress)):
            began = time.perf_counter()
            for bar in [b for b in self._history if b <= t - self.cfg.ensemble.meta_window_bars]:
                del self._history[bar]
            self.predictor.fit_meta(data, t, *self._history_rows())
            predictions = self.predictor.combine(data, fit.parts)
            self._record(predictions.bars, predictions.symbols, predictions.base)
            meta = time.perf_counter() - began
            seconds = {**fit.seconds, "meta": meta, "total": fit.seconds["total"] + meta}
            if i == 0:
                seconds.update({"search": search_seconds} if tried_first else {})
            p = self.predictor
            folds.append(Fold(index=i, fit_bar=t, train_start=fit.train_range[0], train_end=fit.train_range[1],
                              test_start=t, test_end=test_end, n_train=fit.n_train, n_meta=p.n_meta,
                              n_test=len(predictions), configurations=fit.configurations + (tried_first if i == 0 else 0),
                              seconds=seconds, model_weights=p.model_weights,
                              feature_importance=fit.feature_importance))
            parts.append(predictions)
        total = time.perf_counter() - began_run
        return WalkForwardResult(Predictions.concat(parts), folds, self.n_configurations, self.predictor.base_names,
                                 self.predictor.horizons, self.predictor,
                                 {"search": search_seconds, "tasks": tasks_seconds,
                                  "last_fold_and_meta": total - search_seconds - tasks_seconds, "total": total})


def search_window(predictor: EnsemblePredictor, data: PanelData, t: int, seed: int, executor=None,
                  journal=None) -> int:
    """The hyperparameter search (``[models.search]``) inside the window allowed at t: each searched
    base model gets the best parameters found; returns the configurations tried. ``journal``:
    Optuna's journal file (a study per model and bar), None to keep it in memory."""
    s, cfg = predictor.cfg.search, predictor.cfg
    names = [n for n in s.models if n in predictor.base_names]
    if not names:
        return 0
    bars, symbols = predictor.training_rows(data, t)
    X, y = flat(data.values, bars, symbols), data.labels.returns[bars, symbols]
    end = data.labels.sample_end[bars, symbols]
    tried = 0
    for k, name in enumerate(names):
        result = search(s.method, PLUGINS[name], predictor.params[name], s.space.get(name, {}), s.draws,
                        X, y, bars, end, s.folds, cfg.embargo_bars, seed + k, cfg.threads, batch=s.batch,
                        executor=executor, storage=journal, study_name=f"{name}-bar{t}")
        predictor.set_params(name, result.best_params)
        tried += result.n_tried
    return tried


# ---- the tasks of a run: module-level, so any executor can ship them -------------------------------

@dataclass
class _FoldJob:
    cfg: object
    seed: int
    params: dict
    fit_bar: int
    test_end: int
    search: bool                  # search at this retrain ([models.search] schedule = "every")
    journal: object = None        # the search's journal file


@dataclass
class _OutOfFoldJob:
    cfg: object
    seed: int
    params: dict
    bars: np.ndarray
    symbols: np.ndarray
    train: np.ndarray
    test: np.ndarray


@dataclass
class _FoldFit:
    parts: dict                   # EnsemblePredictor.predict_base for the fold's rows
    train_range: tuple[int, int]
    n_train: int
    configurations: int
    seconds: dict
    feature_importance: np.ndarray | None


def _predictor(job) -> EnsemblePredictor:
    predictor = EnsemblePredictor(job.cfg, job.seed)
    for name, params in job.params.items():
        predictor.set_params(name, params)
    return predictor


def _fit_fold(data: PanelData, job: _FoldJob, predictor: EnsemblePredictor | None = None) -> _FoldFit:
    """One fold: (its search,) its base models, and their outputs for every usable row of its bars."""
    predictor = predictor or _predictor(job)
    start = time.perf_counter()
    tried = search_window(predictor, data, job.fit_bar, job.seed, journal=job.journal) if job.search else 0
    searched = time.perf_counter() - start
    predictor.fit_base(data, job.fit_bar)
    began = time.perf_counter()
    bars = np.arange(job.fit_bar, job.test_end + 1)
    ok = valid_rows(data, job.cfg.min_feature_fraction, bars)
    parts = predictor.predict_base(data, bars[np.nonzero(ok)[0]], np.nonzero(ok)[1])
    seconds = {**predictor.seconds, "predict": time.perf_counter() - began, "total": time.perf_counter() - start}
    if tried:
        seconds["search"] = searched
    return _FoldFit(parts, predictor.train_bars_range, predictor.n_train, tried, seconds, predictor.feature_importance())


def _run_job(data: PanelData, job) -> object:
    if isinstance(job, _FoldJob):
        return _fit_fold(data, job)
    return _predictor(job).out_of_fold_part(data, job.bars, job.symbols, job.train, job.test)
