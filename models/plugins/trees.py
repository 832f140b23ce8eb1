"""Gradient-boosted trees: XGBoost (one model, one tree per output per round) and LightGBM (one
booster per output). Both take NaN natively, use histogram methods and are deterministic for a
given seed and thread count."""
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
import xgboost as xgb  # noqa: E402

from config.schema import LightGBMParams, XGBoostParams  # noqa: E402
from models.plugins.base import ModelPlugin, as_2d  # noqa: E402


def _has_validation(X_val, rounds: int) -> bool:
    return X_val is not None and len(X_val) > 0 and rounds > 0


class XGBoostPlugin(ModelPlugin):
    """``xgboost.XGBRegressor`` with ``tree_method="hist"``; early stopping keeps the best round."""

    name = "xgboost"
    params_type = XGBoostParams

    def __init__(self, params, *, seed=0, threads=1):
        super().__init__(params, seed=seed, threads=threads)
        self._booster: xgb.Booster | None = None
        self._rounds = 0  # trees per output used at prediction (the best round + 1)

    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None):
        p, y = self.params, as_2d(y)
        early = _has_validation(X_val, p.early_stopping_rounds)
        model = xgb.XGBRegressor(
            n_estimators=p.n_estimators, max_depth=p.max_depth, learning_rate=p.learning_rate,
            subsample=p.subsample, colsample_bytree=p.colsample_bytree, min_child_weight=p.min_child_weight,
            reg_lambda=p.reg_lambda, max_bin=p.max_bin, tree_method="hist", n_jobs=self.threads,
            random_state=self.seed, multi_strategy="one_output_per_tree",
            early_stopping_rounds=p.early_stopping_rounds if early else None)
        model.fit(X, y, sample_weight=sample_weight, verbose=False,
                  eval_set=[(X_val, as_2d(y_val))] if early else None)
        self._booster = model.get_booster()
        self._rounds = (model.best_iteration + 1) if early else p.n_estimators
        self.n_outputs = y.shape[1]
        return self

    def predict(self, X):
        out = self._booster.inplace_predict(np.asarray(X, dtype=np.float32), iteration_range=(0, self._rounds))
        return as_2d(out).reshape(len(X), self.n_outputs)

    def feature_importance(self):
        scores = self._booster.get_score(importance_type="total_gain")
        out = np.zeros(self._booster.num_features())
        for key, value in scores.items():
            out[int(key[1:])] = value
        return out

    def _state(self):
        return {"rounds": self._rounds}

    def _set_state(self, state):
        self._rounds = state["rounds"]

    def _save_model(self, directory: Path):
        self._booster.save_model(directory / "model.ubj")

    def _load_model(self, directory: Path):
        self._booster = xgb.Booster(model_file=str(directory / "model.ubj"))
        self._booster.set_param({"nthread": self.threads})


class LightGBMPlugin(ModelPlugin):
    """LightGBM, one booster per output; ``objective="quantile"`` with ``alpha`` gives a quantile model."""

    name = "lightgbm"
    params_type = LightGBMParams

    def __init__(self, params, *, seed=0, threads=1, objective: str = "regression", alpha: float | None = None):
        super().__init__(params, seed=seed, threads=threads)
        self.objective, self.alpha = objective, alpha
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
        return params

    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None):
        p, y = self.params, as_2d(y)
        params = self._train_params()
        early = _has_validation(X_val, p.early_stopping_rounds)
        # Bin the features once; each output only swaps the label.
        train = lgb.Dataset(X, label=y[:, 0], weight=sample_weight, params=params, free_raw_data=False).construct()
        val = (lgb.Dataset(X_val, label=as_2d(y_val)[:, 0], reference=train, params=params).construct()
               if early else None)
        self._boosters = []
        for k in range(y.shape[1]):
            train.set_label(y[:, k])
            callbacks = []
            if early:
                val.set_label(as_2d(y_val)[:, k])
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
        return np.column_stack([b.predict(X, num_threads=self.threads) for b in self._boosters])

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
