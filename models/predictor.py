"""The ensemble predictor: base models, stacking, calibration and the specialised models, fitted on
one training window and predicting any batch of (bar, symbol) rows in one call.

Fitting at bar t (the model then predicts bars t, t+1, ... until the next retrain):

1. :meth:`EnsemblePredictor.fit_base` — the rows allowed at t (``models.splits.training_samples``:
   labels ended by ``t - embargo``, bars in the trailing ``train_bars``); the last
   ``validation_fraction`` of them, purged, for early stopping; the flat base models (trees, dense
   net), then the features ranked by the trees' gain choose the LSTM's inputs; the timing and
   stop-loss models; the regime mixture and the GARCH fits on the same window.
2. :meth:`EnsemblePredictor.fit_meta` — the stacking meta-learner on out-of-sample base
   predictions whose labels have ended by ``t - embargo`` (``models.walkforward`` keeps them:
   earlier folds' predictions, plus :meth:`out_of_fold` on the first window), cross-fitted so the
   probability calibration and the bounds see out-of-fold ensemble scores only.

:meth:`predict` returns :class:`Predictions`, one row per (bar, symbol) asked for.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from models.calibration import ProbabilityCalibrator
from models.dataset import PanelData, flat, sequences, valid_rows
from models.ensemble import StackingMetaLearner
from models.plugins import load_plugin, make_plugin
from models.prices import trailing_volatility_at
from models.regime import RegimeClassifier
from models.splits import purged_kfold, training_samples, validation_split
from models.stoploss import StopLossModel
from models.timing import TimingModel
from models.volatility import GarchForecaster

TREE_MODELS = ("xgboost", "lightgbm")
# Predictions' outputs no trading rule reads, only the record (reports, the walk-forward's evaluation):
# live, they are computed after the bar's orders are sent (EnsemblePredictor.predict_record)
RECORD_FIELDS = ("volatility", "entry_timing", "exit_timing")


def one_blas_thread(method):
    """Run ``method`` with the BLAS on one thread. A multi-threaded BLAS sums in an order that
    depends on its thread count, and the GARCH and regime fits' optimisers amplify the last-digit
    differences: on one thread the numbers are the same on any machine, in this process or a
    worker's (and these small problems do not gain from threads)."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with _blas_libraries().limit(limits=1, user_api="blas"):
            return method(*args, **kwargs)
    return wrapped


_scanned: dict = {"modules": -1, "controller": None}


def _blas_libraries() -> ThreadpoolController:
    """threadpoolctl's handle on the loaded BLAS libraries, scanned again only after an import (a
    library comes with a module): with the models' libraries loaded a scan costs about 10 ms, more
    than the rest of a live bar's prediction."""
    if _scanned["modules"] != len(sys.modules):
        _scanned["controller"] = ThreadpoolController()
        _scanned["modules"] = len(sys.modules)
    return _scanned["controller"]


@dataclass
class Predictions:
    """One row per (bar, symbol); H = the horizons, M = the base models."""

    bars: np.ndarray            # (n,) calendar bar
    symbols: np.ndarray         # (n,) symbol column
    expected_return: np.ndarray  # (n, H) log return over each horizon (the stacked ensemble)
    prob_up: np.ndarray         # (n, H) calibrated P(return > 0)
    lower: np.ndarray           # (n, H) lower bound (ensemble.lower_quantile), NaN without volatility history
    upper: np.ndarray           # (n, H) upper bound (ensemble.upper_quantile)
    volatility: np.ndarray      # (n,) expected daily volatility over the decision horizon (GARCH)
    regime: np.ndarray          # (n,) market regime, 0 = calmest, -1 unknown
    entry_timing: np.ndarray    # (n,) best entry as a fraction of the decision horizon
    exit_timing: np.ndarray     # (n,) best exit as a fraction of the decision horizon
    stop_distance: np.ndarray   # (n,) stop distance below the entry, fraction of the price
    confidence: np.ndarray      # (n,) prob_up at the decision horizon
    base: np.ndarray            # (n, M, H) each base model's prediction (the meta-learner's inputs)

    def __len__(self) -> int:
        return len(self.bars)

    @classmethod
    def concat(cls, parts: list["Predictions"]) -> "Predictions":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index) -> "Predictions":
        return Predictions(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def grid(self, name: str, n_bars: int, n_symbols: int) -> np.ndarray:
        """Field ``name`` laid on the calendar: (T, N[, H]), NaN (or -1 for regime) where not predicted."""
        values = getattr(self, name)
        fill = -1 if values.dtype.kind == "i" else np.nan
        out = np.full((n_bars, n_symbols, *values.shape[1:]), fill, dtype=values.dtype)
        out[self.bars, self.symbols] = values
        return out

    def to_frame(self, horizons, times=None, symbols=None) -> pd.DataFrame:
        """A flat table, one row per (bar, symbol), one column per output and horizon."""
        columns = {"bar": self.bars, "symbol": self.symbols}
        if times is not None:
            columns["time"] = pd.DatetimeIndex(times)[self.bars]
        if symbols is not None:
            columns["symbol"] = np.asarray(symbols, dtype=object)[self.symbols]
        for name in ("expected_return", "prob_up", "lower", "upper"):
            for k, h in enumerate(horizons):
                columns[f"{name}_{h}"] = getattr(self, name)[:, k]
        for name in ("confidence", "volatility", "regime", "entry_timing", "exit_timing", "stop_distance"):
            columns[name] = getattr(self, name)
        return pd.DataFrame(columns)


class EnsemblePredictor:
    """See the module docstring. ``cfg``: ``config.schema.ModelsConfig``."""

    def __init__(self, cfg, seed: int):
        self.cfg, self.seed = cfg, int(seed)
        self.horizons = tuple(cfg.horizons)
        self.decision_index = self.horizons.index(cfg.decision_horizon)
        self.base_names = list(cfg.base_models)
        self.params = {name: getattr(cfg, name) for name in self.base_names}
        self.plugins = {name: make_plugin(name, cfg, self.seed, base=True) for name in self.base_names}
        self.timing = TimingModel(make_plugin(cfg.timing.model, cfg, self.seed))
        self.stop = StopLossModel(cfg, self.seed)
        self.regime = RegimeClassifier(cfg.regime.n_regimes, self.seed)
        vol = cfg.volatility
        self.volatility = GarchForecaster(vol.p, vol.q, cfg.decision_horizon, vol.realised_bars, vol.min_observations)
        self.meta: StackingMetaLearner | None = None
        self.calibrators: list[ProbabilityCalibrator] = []
        self.bounds: np.ndarray | None = None          # (H, 2) quantiles of standardised residuals
        self.sequence_features: np.ndarray | None = None
        self.fitted_at: int | None = None
        self.train_bars_range: tuple[int, int] | None = None
        self.n_train = self.n_meta = 0
        self.seconds: dict[str, float] = {}

    def set_params(self, name: str, params) -> None:
        """Replace base model ``name``'s parameters (a search's best); takes effect at the next fit."""
        self.params[name] = params
        self.plugins[name] = make_plugin(name, self.cfg, self.seed, params, base=True)

    # ---- rows ---------------------------------------------------------------------------------
    def training_rows(self, data: PanelData, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(bars, symbols) of the samples allowed to train the model used from bar t (at most
        ``max_train_rows`` of them, a random sample seeded by the seed and t)."""
        labels = data.labels
        known = valid_rows(data, self.cfg.min_feature_fraction) & (labels.sample_end >= 0) \
            & np.isfinite(labels.returns).all(axis=2)
        bars, symbols = np.nonzero(known)
        keep = np.flatnonzero(training_samples(t, bars, labels.sample_end[bars, symbols], self.cfg.train_bars,
                                               self.cfg.embargo_bars))
        cap = self.cfg.max_train_rows
        if cap and len(keep) > cap:   # a seeded sample, the same for this bar in a backtest and live
            keep = np.sort(np.random.default_rng([self.seed, t]).choice(keep, cap, replace=False))
        return bars[keep], symbols[keep]

    def inputs(self, plugin, data: PanelData, bars, symbols, X=None) -> np.ndarray:
        """What ``plugin`` reads for rows (bars, symbols): flat feature rows (``X`` when given) or
        sequences of the ranked features."""
        if plugin.input_kind == "sequence":
            return sequences(data.values, bars, symbols, self.cfg.lstm.seq_len, self.sequence_features)
        return X if X is not None else flat(data.values, bars, symbols)

    def _rank_features(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Indices of the ``lstm.top_features`` most useful features: the trees' normalised gain
        (averaged over the tree models), else |Spearman correlation| with the decision horizon."""
        k = min(self.cfg.lstm.top_features, X.shape[1])
        score = self.feature_importance()
        if score is None:
            corr = pd.DataFrame(X).corrwith(pd.Series(y[:, self.decision_index]), method="spearman")
            score = corr.abs().fillna(0.0).to_numpy()
        return np.sort(np.argsort(-score, kind="stable")[:k])

    def feature_importance(self) -> np.ndarray | None:
        """(F,) the tree models' gain per feature, each normalised to sum 1, averaged over the tree
        models of the last fit; None without a fitted tree model."""
        gains = [g / g.sum() for name in TREE_MODELS if name in self.plugins
                 for g in [self.plugins[name].feature_importance()] if g is not None and g.sum() > 0]
        return np.mean(gains, axis=0) if gains else None

    # ---- fitting --------------------------------------------------------------------------------
    def _timed(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out

    def _fit_base_models(self, data: PanelData, bars, symbols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = data.labels
        y = labels.returns[bars, symbols]
        tr, va = validation_split(bars, labels.sample_end[bars, symbols], self.cfg.validation_fraction,
                                  self.cfg.embargo_bars)
        X = flat(data.values, bars, symbols)
        flat_names = [n for n in self.base_names if self.plugins[n].input_kind == "flat"]
        sequence_names = [n for n in self.base_names if n not in flat_names]
        query = {"query": bars[tr], "query_val": bars[va]}     # rankers rank the rows of a bar
        for name in flat_names:
            self._timed(name, self.plugins[name].fit, X[tr], y[tr], X_val=X[va], y_val=y[va], **query)
        if sequence_names or self.timing.plugin.input_kind == "sequence":
            # after the trees: their gain on this same window ranks the sequence models' inputs
            self.sequence_features = self._rank_features(X[tr], y[tr])
        for name in sequence_names:
            inputs = self.inputs(self.plugins[name], data, bars, symbols, X)
            self._timed(name, self.plugins[name].fit, inputs[tr], y[tr], X_val=inputs[va], y_val=y[va], **query)
        return X, tr, va

    def _predict_base(self, data: PanelData, bars, symbols, X) -> np.ndarray:
        return np.stack([self.plugins[n].predict(self.inputs(self.plugins[n], data, bars, symbols, X))
                         for n in self.base_names], axis=1)

    @one_blas_thread
    def fit_base(self, data: PanelData, t: int) -> "EnsemblePredictor":
        """Base, timing, stop-loss, regime and volatility models on the window allowed at bar t."""
        self.seconds = {}
        bars, symbols = self.training_rows(data, t)
        if len(bars) == 0:
            raise ValueError(f"no training samples for bar {t}: the window holds no row with known labels")
        X, tr, va = self._fit_base_models(data, bars, symbols)
        labels = data.labels
        path = np.column_stack([labels.entry_timing[bars, symbols], labels.exit_timing[bars, symbols]])
        timing_in = self.inputs(self.timing.plugin, data, bars, symbols, X)
        self._timed("timing", self.timing.fit, timing_in[tr], path[tr], X_val=timing_in[va], y_val=path[va])
        adverse = labels.adverse_excursion[bars, symbols]
        self._timed("stoploss", self.stop.fit, X[tr], adverse[tr], X_val=X[va], y_val=adverse[va])
        window = np.arange(max(0, t - self.cfg.train_bars + 1), t + 1)
        self._timed("regime", self.regime.fit, data.market_features(self.cfg.regime.vol_bars), window)
        self._timed("volatility", self.volatility.fit, data.close, t, self.cfg.train_bars)
        self.fitted_at, self.train_bars_range, self.n_train = t, (int(bars.min()), int(bars.max())), len(bars)
        return self

    def out_of_fold_splits(self, data: PanelData, t: int) -> tuple[np.ndarray, np.ndarray, list]:
        """(bars, symbols, [(train, test), ...]): the window allowed at t and its purged k-fold
        (``ensemble.oof_folds``) splits, for :meth:`out_of_fold_part`."""
        bars, symbols = self.training_rows(data, t)
        end = data.labels.sample_end[bars, symbols]
        return bars, symbols, list(purged_kfold(bars, end, self.cfg.ensemble.oof_folds, self.cfg.embargo_bars))

    @one_blas_thread
    def out_of_fold_part(self, data: PanelData, bars, symbols, train, test) -> np.ndarray:
        """(len(test), M, H): base models fitted on rows ``train`` predict rows ``test`` (refits the
        base models)."""
        self._fit_base_models(data, bars[train], symbols[train])
        return self._predict_base(data, bars[test], symbols[test], flat(data.values, bars[test], symbols[test]))

    def out_of_fold(self, data: PanelData, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bars, symbols, base (n, M, H)): purged k-fold out-of-fold base predictions over the window
        allowed at t, for the first fit (no walk-forward history yet). Refits the base models: call
        before :meth:`fit_base`."""
        bars, symbols, splits = self.out_of_fold_splits(data, t)
        return out_of_fold_rows(bars, symbols, splits, [self.out_of_fold_part(data, bars, symbols, tr, te)
                                                        for tr, te in splits], len(self.base_names), len(self.horizons))

    @one_blas_thread
    def fit_meta(self, data: PanelData, t: int, bars: np.ndarray, symbols: np.ndarray,
                 base: np.ndarray) -> "EnsemblePredictor":
        """Stacking, calibration and bounds from out-of-sample base predictions ``base`` (n, M, H) at
        rows (bars, symbols); only rows whose labels ended by ``t - embargo`` within the trailing
        ``ensemble.meta_window_bars`` are used."""
        cfg, ens = self.cfg, self.cfg.ensemble
        y = data.labels.returns[bars, symbols]
        end = data.labels.sample_end[bars, symbols]
        keep = (end >= 0) & (end <= t - cfg.embargo_bars) & (bars > t - ens.meta_window_bars) \
            & np.isfinite(y).all(axis=1) & np.isfinite(base).all(axis=(1, 2))
        if keep.sum() < 2 * ens.meta_folds:
            raise ValueError(f"meta-learner at bar {t}: only {int(keep.sum())} out-of-sample rows with known labels")
        bars, symbols, base, y, end = bars[keep], symbols[keep], base[keep], y[keep], end[keep]
        age = t - bars
        start = time.perf_counter()
        score = np.full(y.shape, np.nan)
        meta = lambda: StackingMetaLearner(ens.ridge_alpha, ens.halflife_bars)
        for tr, te in purged_kfold(bars, end, ens.meta_folds, cfg.embargo_bars):
            score[te] = meta().fit(base[tr], y[tr], age[tr]).predict(base[te])
        self.meta = meta().fit(base, y, age)
        ok = np.isfinite(score).all(axis=1)
        cal = cfg.calibration
        self.calibrators = [
            ProbabilityCalibrator(cal.method, cal.min_isotonic_samples, cal.isotonic_bin_samples)
            .fit(score[ok, h], y[ok, h] > 0) for h in range(len(self.horizons))]
        scale = trailing_volatility_at(data.close, bars, symbols, cfg.volatility.realised_bars)[:, None] \
            * np.sqrt(self.horizons)
        z = (y - score) / scale
        z = z[ok & np.isfinite(z).all(axis=1)]
        self.bounds = (np.quantile(z, [ens.lower_quantile, ens.upper_quantile], axis=0).T if len(z)
                       else np.full((len(self.horizons), 2), np.nan))
        self.n_meta = int(keep.sum())
        self.seconds["meta"] = self.seconds.get("meta", 0.0) + time.perf_counter() - start
        return self

    def fit(self, data: PanelData, t: int) -> "EnsemblePredictor":
        """Standalone fit at bar t, from the window alone: purged k-fold out-of-fold predictions over
        the window feed the meta-learner and calibration. (``models.walkforward`` instead feeds them
        the walk-forward's own out-of-sample history after its first retrain.)"""
        bars, symbols, base = self.out_of_fold(data, t)
        self.fit_base(data, t)
        return self.fit_meta(data, t, bars, symbols, base)

    # ---- prediction -----------------------------------------------------------------------------
    def predict(self, data: PanelData, bars: np.ndarray, symbols: np.ndarray, *, record: bool = True) -> Predictions:
        """Everything the strategy reads, for rows (bars, symbols), in one batched call per model.
        Reads features and prices up to each row's bar only. ``record=False``: the outputs no trading
        rule reads (:data:`RECORD_FIELDS`) are left NaN, for :meth:`predict_record` to fill once the
        bar's orders are out."""
        return self.combine(data, self.predict_base(data, bars, symbols, record=record))

    @one_blas_thread
    def predict_base(self, data: PanelData, bars, symbols, *, record: bool = True) -> dict[str, np.ndarray]:
        """The part of :meth:`predict` the meta-learner is not needed for: the base, stop-loss and
        regime models' outputs and, with ``record``, :meth:`predict_record`'s (a walk-forward fold's
        task computes it)."""
        bars, symbols = np.asarray(bars, np.int64), np.asarray(symbols, np.int64)
        X = flat(data.values, bars, symbols)
        parts = {"bars": bars, "symbols": symbols, "base": self._predict_base(data, bars, symbols, X),
                 "regime": self.regime.predict(data.market_features(self.cfg.regime.vol_bars), bars),
                 "stop_distance": self.stop.predict(X)}
        if record:
            return {**parts, **self.predict_record(data, bars, symbols, X)}
        return {**parts, **{name: np.full(len(bars), np.nan) for name in RECORD_FIELDS}}

    @one_blas_thread
    def predict_record(self, data: PanelData, bars, symbols, X=None) -> dict[str, np.ndarray]:
        """The outputs kept for the record, which no trading rule reads (:data:`RECORD_FIELDS`): the
        GARCH volatility forecast and the timing model's entry and exit. Bar by bar in order: the
        GARCH recursion carries on from the previous bar's call."""
        bars, symbols = np.asarray(bars, np.int64), np.asarray(symbols, np.int64)
        timing = self.timing.predict(self.inputs(self.timing.plugin, data, bars, symbols, X))
        return {"volatility": self.volatility.predict(data.close, bars, symbols),
                "entry_timing": timing[:, 0], "exit_timing": timing[:, 1]}

    @one_blas_thread
    def combine(self, data: PanelData, parts: dict[str, np.ndarray]) -> Predictions:
        """:meth:`predict_base`'s outputs stacked, calibrated and bounded by this predictor's
        meta-learner."""
        expected = self.meta.predict(parts["base"])
        prob = np.column_stack([c.predict(expected[:, h]) for h, c in enumerate(self.calibrators)])
        scale = trailing_volatility_at(data.close, parts["bars"], parts["symbols"],
                                       self.cfg.volatility.realised_bars)[:, None] * np.sqrt(self.horizons)
        return Predictions(**parts, expected_return=expected, prob_up=prob, lower=expected + self.bounds[:, 0] * scale,
                           upper=expected + self.bounds[:, 1] * scale, confidence=prob[:, self.decision_index])

    @property
    def model_weights(self) -> dict[str, list[float]]:
        """Stacking weights per base model, one per horizon (see ``models.ensemble``)."""
        w = self.meta.weights
        return {name: [round(float(x), 6) for x in w[m]] for m, name in enumerate(self.base_names)}

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory) -> None:
        """Plugins in sub-folders (their native formats), the rest in ``state.joblib``, the config in
        ``models_config.json``. ``models.registry`` adds the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, plugin in self.plugins.items():
            plugin.save(directory / "base" / name)
        self.timing.plugin.save(directory / "timing")
        self.stop.plugin.save(directory / "stoploss")
        (directory / "models_config.json").write_text(json.dumps(self.cfg.model_dump(mode="json"), indent=1))
        state = {k: getattr(self, k) for k in ("seed", "meta", "calibrators", "bounds", "sequence_features",
                                               "regime", "volatility", "fitted_at", "train_bars_range",
                                               "n_train", "n_meta")}
        state["params"] = {name: p.model_dump(mode="json") for name, p in self.params.items()}
        joblib.dump(state, directory / "state.joblib")

    @classmethod
    def load(cls, directory) -> "EnsemblePredictor":
        from config.schema import ModelsConfig

        directory = Path(directory)
        cfg = ModelsConfig.model_validate(json.loads((directory / "models_config.json").read_text()))
        state = joblib.load(directory / "state.joblib")
        predictor = cls(cfg, state.pop("seed"))
        params = state.pop("params")
        predictor.params = {name: type(getattr(cfg, name)).model_validate(p) for name, p in params.items()}
        predictor.plugins = {name: load_plugin(directory / "base" / name) for name in predictor.base_names}
        predictor.timing.plugin = load_plugin(directory / "timing")
        predictor.stop.plugin = load_plugin(directory / "stoploss")
        for key, value in state.items():
            setattr(predictor, key, value)
        return predictor


def out_of_fold_rows(bars, symbols, splits, parts, n_models: int, n_horizons: int):
    """(bars, symbols, base): the out-of-fold predictions ``parts`` (one per split, for its test
    rows) put together; rows no split predicted are left out."""
    base = np.full((len(bars), n_models, n_horizons), np.nan)
    for (_, test), part in zip(splits, parts):
        base[test] = part
    done = np.isfinite(base).all(axis=(1, 2))
    return bars[done], symbols[done], base[done]
