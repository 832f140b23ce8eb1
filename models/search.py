"""Hyperparameter search inside one training window: Optuna (the default) or random search.

The space is ``[models.search.space.<model>]``: per parameter, a list of values. A configuration is
scored by purged forward (time-series) cross-validation on the window's samples only
(``models.splits.purged_kfold(forward_only=True)``): the mean over folds and horizons of the
information coefficient. No early stopping inside the search (the folds' test rows must stay
unseen). Every configuration tried is counted (``SearchResult.n_tried``), for the deflated Sharpe
ratio's number of trials.

- ``optuna``: Optuna's TPE sampler (seeded) picks each value with ``suggest_categorical`` over the
  same lists. Trials are asked ``batch`` at a time in this process, scored in parallel through an
  executor (``models.executor``: one task per trial), then told in trial order. The sequence of
  trials and the best therefore depend on the seed and ``batch`` only, never on the executor or
  the order tasks finish in. With ``storage`` the study is written to Optuna's file-based journal
  (no database server), which other processes can load (``optuna.load_study``) while and after it
  runs. A trial whose score is not finite is told as failed, and still counted.
- ``random``: random search (Bergstra and Bengio 2012): ``draws`` configurations drawn uniformly
  with ``sklearn.model_selection.ParameterSampler``, one executor task each.

Either way, a grid smaller than ``draws`` caps the number of trials at its size. Each search runs
``search(...)``; the training rows go to the tasks once (``executor.share``), not once per task.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import ParameterSampler

from models.evaluation import information_coefficient
from models.executor import SerialExecutor
from models.splits import purged_kfold

METHODS = ("optuna", "random")


@dataclass
class SearchResult:
    best_params: object          # the plugin's parameter model (e.g. ``XGBoostParams``)
    best_score: float
    n_tried: int
    scores: list[tuple[dict, float]]   # every trial in order: (the values searched, score; -inf if none)


@dataclass(frozen=True)
class _Problem:
    """What every trial of one search reads: shared once with the executor's tasks."""
    plugin_cls: type
    X: np.ndarray
    y: np.ndarray
    bars: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    seed: int
    threads: int


def _score_trial(problem: _Problem, params) -> float:
    """One executor task: mean information coefficient of ``params`` over the purged forward folds
    and the horizons; -inf when no fold gives a finite one."""
    X, y, bars = problem.X, problem.y, problem.bars
    ics = []
    for tr, te in problem.splits:
        pred = problem.plugin_cls(params, seed=problem.seed, threads=problem.threads).fit(X[tr], y[tr]).predict(X[te])
        ics.extend(information_coefficient(pred[:, k], y[te, k], bars[te]) for k in range(y.shape[1]))
    return float(np.nanmean(ics)) if np.isfinite(ics).any() else -math.inf


def _problem(plugin_cls, X, y, bars, label_end, folds, embargo, seed, threads) -> _Problem:
    splits = list(purged_kfold(bars, label_end, folds, embargo, forward_only=True))
    if not splits:
        raise ValueError("search: the window is too short for a purged time-series split")
    return _Problem(plugin_cls, X, y, bars, splits, int(seed), int(threads))


def _trial_params(base_params, values: dict):
    return type(base_params).model_validate({**base_params.model_dump(), **values, "early_stopping_rounds": 0})


def _grid_size(space: dict) -> int:
    return math.prod(len(v) for v in space.values())


def _result(base_params, scores: list[tuple[dict, float]]) -> SearchResult:
    """The first of the best-scoring trials; its parameters keep the configured early stopping."""
    best_values, best_score = max(scores, key=lambda item: item[1])
    best = type(base_params).model_validate({**base_params.model_dump(), **best_values})
    return SearchResult(best, best_score, len(scores), scores)


def random_search(plugin_cls, base_params, space: dict, draws: int, X: np.ndarray, y: np.ndarray,
                  bars: np.ndarray, label_end: np.ndarray, folds: int, embargo: int, seed: int,
                  threads: int, executor=None) -> SearchResult:
    """Best of ``draws`` random configurations of ``plugin_cls`` (a flat plugin) on (X, y) at rows ``bars``."""
    executor = executor or SerialExecutor()
    problem = _problem(plugin_cls, X, y, bars, label_end, folds, embargo, seed, threads)
    sampled = list(ParameterSampler(space, n_iter=min(draws, _grid_size(space)), random_state=seed))
    scores = executor.map(_score_trial, [_trial_params(base_params, d) for d in sampled],
                          shared=executor.share(problem), desc="search")
    return _result(base_params, list(zip(sampled, scores)))


def optuna_search(plugin_cls, base_params, space: dict, draws: int, X: np.ndarray, y: np.ndarray,
                  bars: np.ndarray, label_end: np.ndarray, folds: int, embargo: int, seed: int,
                  threads: int, *, batch: int = 4, executor=None, storage: str | Path | None = None,
                  study_name: str = "search") -> SearchResult:
    """Best of ``draws`` TPE trials (Optuna), asked ``batch`` at a time and scored through ``executor``.

    ``storage``: the journal file the study is written to (created with its folder; a study of the
    same name already there is replaced, so a rerun gives the same trials); None: in memory."""
    optuna = _optuna()
    from optuna.trial import TrialState

    if batch < 1:
        raise ValueError(f"search: batch must be >= 1 (got {batch})")
    executor = executor or SerialExecutor()
    problem = _problem(plugin_cls, X, y, bars, label_end, folds, embargo, seed, threads)
    journal = open_storage(storage) if storage is not None else None
    if journal is not None and study_name in optuna.get_all_study_names(journal):
        optuna.delete_study(study_name=study_name, storage=journal)
    study = optuna.create_study(storage=journal, sampler=optuna.samplers.TPESampler(seed=int(seed)),
                                study_name=study_name, direction="maximize")
    handle = executor.share(problem)
    n_trials = min(draws, _grid_size(space))
    scored: dict[tuple, float] = {}          # a configuration TPE proposes again is not refitted
    scores: list[tuple[dict, float]] = []
    while len(scores) < n_trials:
        trials = [study.ask() for _ in range(min(batch, n_trials - len(scores)))]
        values = [{name: trial.suggest_categorical(name, list(choices)) for name, choices in space.items()}
                  for trial in trials]
        new = list(dict.fromkeys(k for k in map(_key, values) if k not in scored))
        results = executor.map(_score_trial, [_trial_params(base_params, dict(k)) for k in new],
                               shared=handle, desc="search")
        scored.update(zip(new, results))
        for trial, value in zip(trials, values):
            score = scored[_key(value)]
            if math.isfinite(score):
                study.tell(trial, score)
            else:
                study.tell(trial, state=TrialState.FAIL)
            scores.append((value, score))
    return _result(base_params, scores)


def search(method: str, plugin_cls, base_params, space: dict, draws: int, X: np.ndarray, y: np.ndarray,
           bars: np.ndarray, label_end: np.ndarray, folds: int, embargo: int, seed: int, threads: int, *,
           batch: int = 4, executor=None, storage: str | Path | None = None,
           study_name: str = "search") -> SearchResult:
    """``method`` ``optuna`` (:func:`optuna_search`) or ``random`` (:func:`random_search`, which
    ignores ``batch``, ``storage`` and ``study_name``)."""
    if method == "optuna":
        return optuna_search(plugin_cls, base_params, space, draws, X, y, bars, label_end, folds, embargo,
                             seed, threads, batch=batch, executor=executor, storage=storage, study_name=study_name)
    if method == "random":
        return random_search(plugin_cls, base_params, space, draws, X, y, bars, label_end, folds, embargo,
                             seed, threads, executor=executor)
    raise ValueError(f"unknown search method {method!r}: one of {', '.join(METHODS)}")


def open_storage(path: str | Path):
    """Optuna's file-based journal at ``path`` (its folder created): processes on machines sharing
    the file system read and write one study through it, without a database server."""
    optuna = _optuna()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _key(values: dict) -> tuple:
    return tuple(sorted(values.items()))


def _optuna():
    """Optuna, imported when a search uses it (the executor's workers never need it), its per-trial
    INFO lines off: only Optuna's own logger is changed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
