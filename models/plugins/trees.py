"""Gradient-boosted trees: XGBoost (one model, one tree per output per round) and LightGBM (one
booster per output). Both take NaN natively, use histogram methods and are deterministic for a
given seed and thread count.

As base models they can also be trained as rankers (``[models.ranking] objective = "rank"``):
XGBoost's ``rank:pairwise`` and LightGBM's ``lambdarank``, one query per bar (``query``: the rows'
bars), on relevance grades of the target within each bar (:func:`relevance_grades`), one booster
per output, early-stopped on NDCG at ``ranking.ndcg_at``. A ranker's output is a score whose
order within a bar is what counts; the stacking rescales it to the target.
"""
from __future__ import annotations

import os
from pathlib import Path

# Both libraries run on GNU OpenMP, whose idle threads spin for ~300,000 iterations before they
# sleep. With 2 threads on 2 cores that other work shares, those spins starve the thread the rest
# wait for: single fits ran 10-40x slower here. A short spin (then sleep) kept the speed of
# spinning on an idle machine without the stalls (benchmarks/ml_speed.py); fully passive waits
# were ~1.5x slower for LightGBM. Read when each library's runtime loads: before the imports below;
# an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xgboost as xgb  # noqa: E402

from config.schema import LightGBMParams, XGBoostParams  # noqa: E402
from models.plugins.base import ModelPlugin, as_2d  # noqa: E402


# A batch of at most this many rows (a live bar's) predicts on one thread: waking a second costs more
# than it saves, and stalls when another process holds the other core. Each row's prediction is the
# same on any number of threads (rows are split among them, never a row's trees).
SMALL_BATCH_ROWS = 1024


def predict_threads(rows: int, threads: int) -> int:
    return 1 if rows <= SMALL_BATCH_ROWS else threads


def _has_validation(X_val, rounds: int) -> bool:
    return X_val is not None and len(X_val) > 0 and rounds > 0


def relevance_grades(y: np.ndarray, query: np.ndarray, grades: int) -> np.ndarray:
    """Integer grades 0 .. grades-1 of ``y`` within each query (bar): its percentile rank among the
    query's rows cut into ``grades`` equal bins (highest y, highest grade); ties share a grade."""
    pct = pd.Series(y).groupby(np.asarray(query)).rank(method="average", pct=True).to_numpy()
    return np.minimum((pct * grades).astype(np.int64) - (pct * grades % 1 == 0), grades - 1).clip(0)


def _by_query(query: np.ndarray):
    """(order, group sizes): a stable order that puts each query's rows together, and their counts."""
    order = np.argsort(query, kind="stable")
    _, sizes = np.unique(np.asarray(query)[order], return_counts=True)
    return order, sizes


class XGBoostPlugin(ModelPlugin):
    """``xgboost.XGBRegressor`` with ``tree_method="hist"``; early stopping keeps the best round.
    With ``ranking`` (``config.schema.RankingConfig``): ``rank:pairwise``, one booster per output."""

    name = "xgboost"
    params_type = XGBoostParams

    def __init__(self, params, *, seed=0, threads=1, ranking=None):
        super().__init__(params, seed=seed, threads=threads)
        self.ranking = ranking
        self.objective = "rank" if ranking is not None else "regression"
        self._boosters: list[xgb.Booster] = []
        self._rounds: list[int] = []  # trees per output used at prediction (the best round + 1)
        self._predict_threads: int | None = None  # the boosters' nthread as predict last set it

    def _common(self) -> dict:
        p = self.params
        return dict(max_depth=p.max_depth, learning_rate=p.learning_rate, subsample=p.subsample,
                    colsample_bytree=p.colsample_bytree, min_child_weight=p.min_child_weight,
                    reg_lambda=p.reg_lambda, max_bin=p.max_bin, tree_method="hist")

    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None, query=None, query_val=None):
        p, y = self.params, as_2d(y)
        early = _has_validation(X_val, p.early_stopping_rounds)
        self.n_outputs = y.shape[1]
        if self.objective == "rank":
            return self._fit_ranker(X, y, X_val if early else None, y_val, query, query_val)
        model = xgb.XGBRegressor(
            n_estimators=p.n_estimators, n_jobs=self.threads, random_state=self.seed,
            multi_strategy="one_output_per_tree", early_stopping_rounds=p.early_stopping_rounds if early else None,
            **self._common())
        model.fit(X, y, sample_weight=sample_weight, verbose=False,
                  eval_set=[(X_val, as_2d(y_val))] if early else None)
        self._boosters, self._predict_threads = [model.get_booster()], None
        self._rounds = [(model.best_iteration + 1) if early else p.n_estimators]
        return self

    def _fit_ranker(self, X, y, X_val, y_val, query, query_val):
        if query is None:
            raise ValueError("xgboost ranker: fit needs query (the rows' bars)")
        p, r = self.params, self.ranking
        params = {**self._common(), "objective": "rank:pairwise", "eval_metric": f"ndcg@{r.ndcg_at}",
                  "nthread": self.threads, "seed": self.seed}
        order, _ = _by_query(query)
        X, y, query = np.asarray(X)[order], y[order], np.asarray(query)[order]
        if X_val is not None:
            order_val, _ = _by_query(query_val)
            X_val, y_val, query_val = np.asarray(X_val)[order_val], as_2d(y_val)[order_val], np.asarray(query_val)[order_val]
        self._boosters, self._rounds, self._predict_threads = [], [], None
        for k in range(y.shape[1]):
            train = xgb.DMatrix(X, label=relevance_grades(y[:, k], query, r.grades), qid=query)
            evals = []
            if X_val is not None:
                evals = [(xgb.DMatrix(X_val, label=relevance_grades(y_val[:, k], query_val, r.grades), qid=query_val),
                          "validation")]
            booster = xgb.train(params, train, num_boost_round=p.n_estimators, evals=evals,
                                early_stopping_rounds=p.early_stopping_rounds if evals else None, verbose_eval=False)
            self._boosters.append(booster)
            self._rounds.append(booster.best_iteration + 1 if evals else p.n_estimators)
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=np.float32)
        threads = predict_threads(len(X), self.threads)
        if threads != self._predict_threads:
            for booster in self._boosters:
                booster.set_param({"nthread": threads})
            self._predict_threads = threads
        out = [as_2d(b.inplace_predict(X, iteration_range=(0, n))) for b, n in zip(self._boosters, self._rounds)]
        return np.column_stack(out).reshape(len(X), self.n_outputs)

    def feature_importance(self):
        out = np.zeros(self._boosters[0].num_features())
        for booster in self._boosters:
            for key, value in booster.get_score(importance_type="total_gain").items():
                out[int(key[1:])] += value
        return out

    def _state(self):
        return {"rounds": self._rounds, "objective": self.objective}

    def _set_state(self, state):
        rounds = state["rounds"]
        self._rounds = rounds if isinstance(rounds, list) else [rounds]   # saved before rankers: one int
        self.objective = state.get("objective", "regression")

    def _files(self, directory: Path) -> list[Path]:
        if self.objective == "rank":
            return [directory / f"model_{k}.ubj" for k in range(self.n_outputs)]
        return [directory / "model.ubj"]

    def _save_model(self, directory: Path):
        for booster, path in zip(self._boosters, self._files(directory)):
            booster.save_model(path)

    def _load_model(self, directory: Path):
        self._boosters, self._predict_threads = [], None
        for path in self._files(directory):
            booster = xgb.Booster(model_file=str(path))
            booster.set_param({"nthread": self.threads})
            self._boosters.append(booster)


class LightGBMPlugin(ModelPlugin):
    """LightGBM, one booster per output; ``objective="quantile"`` with ``alpha`` gives a quantile model;
    ``ranking`` (``config.schema.RankingConfig``) a ``lambdarank`` ranker."""

    name = "lightgbm"
    params_type = LightGBMParams

    def __init__(self, params, *, seed=0, threads=1, objective: str = "regression", alpha: float | None = None,
                 ranking=None):
        super().__init__(params, seed=seed, threads=threads)
        self.ranking = ranking
        self.objective, self.alpha = ("lambdarank" if ranking is not None else objective), alpha
        self._boosters: list[lgb.Booster] = []

    def _train_params(self) -> dict:
        p = self.params
        params = dict(
            objective=self.objective, learning_rate=p.learning_rate, num_leaves=p.num_leaves,
            max_depth=p.max_depth, bagging_fraction=p.subsample, bagging_freq=1 if p.subsample < 1 else 0,
            feature_fraction=p.colsample_bytree, min_data_in_leaf=p.min_child_samples, lambda_l2=p.reg_lambda,
            max_bin=p.max_bin, num_threads=self.threads, seed=self.seed, deterministic=True,
            force_row_wise=True, verbosity=-1)
        if self.alpha is not None:
            params["alpha"] = self.alpha
        if self.objective == "lambdarank":
            params.update(metric="ndcg", eval_at=[self.ranking.ndcg_at])
        return params

    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None, query=None, query_val=None):
        p, y = self.params, as_2d(y)
        params = self._train_params()
        early = _has_validation(X_val, p.early_stopping_rounds)
        rank = self.objective == "lambdarank"
        target, target_val = (lambda k: y[:, k]), (lambda k: as_2d(y_val)[:, k])
        if rank:   # a query's rows together, labelled by their grades within it
            if query is None:
                raise ValueError("lightgbm ranker: fit needs query (the rows' bars)")
            order, sizes = _by_query(query)
            X, y, query = np.asarray(X)[order], y[order], np.asarray(query)[order]
            target = lambda k: relevance_grades(y[:, k], query, self.ranking.grades)
            if early:
                order_val, sizes_val = _by_query(query_val)
                X_val, y_val, query_val = (np.asarray(X_val)[order_val], as_2d(y_val)[order_val],
                                           np.asarray(query_val)[order_val])
                target_val = lambda k: relevance_grades(y_val[:, k], query_val, self.ranking.grades)
        # Bin the features once; each output only swaps the label.
        train = lgb.Dataset(X, label=target(0), weight=sample_weight, params=params, free_raw_data=False,
                            group=sizes if rank else None).construct()
        val = (lgb.Dataset(X_val, label=target_val(0), reference=train, params=params,
                           group=sizes_val if rank else None).construct() if early else None)
        self._boosters = []
        for k in range(y.shape[1]):
            train.set_label(target(k))
            callbacks = []
            if early:
                val.set_label(target_val(k))
                callbacks = [lgb.early_stopping(p.early_stopping_rounds, verbose=False)]
            booster = lgb.train(params, train, num_boost_round=p.n_estimators,
                                valid_sets=[val] if early else None, callbacks=callbacks)
            best = booster.best_iteration if early and booster.best_iteration > 0 else None
            # Keep exactly what a save would keep, so a loaded model predicts identically.
            self._boosters.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))
        self.n_outputs = y.shape[1]
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=np.float32)
        threads = predict_threads(len(X), self.threads)
        return np.column_stack([b.predict(X, num_threads=threads) for b in self._boosters])

    def feature_importance(self):
        return np.sum([b.feature_importance(importance_type="gain") for b in self._boosters], axis=0)

    def _state(self):
        return {"objective": self.objective, "alpha": self.alpha}

    def _set_state(self, state):
        self.objective, self.alpha = state["objective"], state["alpha"]

    def _save_model(self, directory: Path):
        for k, booster in enumerate(self._boosters):
            booster.save_model(directory / f"model_{k}.txt")

    def _load_model(self, directory: Path):
        self._boosters = [lgb.Booster(model_file=str(directory / f"model_{k}.txt")) for k in range(self.n_outputs)]
