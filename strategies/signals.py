"""The ensemble's predictions at the strategy's current bar, trained walk-forward on the bars the
strategy has seen: the Backtrader side of ``models.walkforward``.

- Backtest (``runonce``): at the first bar, the whole purged walk-forward (``WalkForward.run``) over
  the preloaded bars, one batch of inference per fold. The walk-forward is causal by construction
  (a model fitted at bar t trains on labels that ended by ``t - embargo`` and predicts bars from t
  on), so running it ahead gives the numbers a bar-by-bar run would; a test checks that.
- Bar by bar (live, replays): each new bar's feature rows and prices, as the hub read them, are
  appended in place (``models.dataset.GrowingPanel``: a bar costs the same after any length of
  history); the model is retrained when the schedule says so and predicts this bar's rows, the
  outputs only the record reads once the bar's orders are sent (:meth:`WalkForwardSignals.complete_record`).

Both keep the same record: the folds and every out-of-sample prediction (:meth:`result`), which the
backtest's ``walk_forward`` section evaluates.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from common.errors import UserError
from models.dataset import GrowingPanel, PanelData, panel_data_from_bars, valid_rows
from models.executor import executor_from_config
from models.predictor import Predictions
from models.walkforward import Fold, WalkForward, WalkForwardResult

log = logging.getLogger("strategy")


class WalkForwardSignals:
    """See the module docstring. ``hub``: the strategy's ``indicators.feature_hub.FeatureHub``."""

    def __init__(self, cfg, hub, *, seed: int, progress: bool = False, given=None):
        """given: (WalkForwardResult, PanelData) of a walk-forward already run over these very bars
        (benchmarks: inference without training); runonce only."""
        self.cfg, self.hub = cfg, hub
        # the search's trial journal, copied into the run's folder by the report writer
        self._journal = tempfile.TemporaryDirectory(prefix="search-")
        self.walk = WalkForward(cfg.models, seed, progress=progress,
                                search_journal=Path(self._journal.name) / "search.journal")
        self._result, self.data = given if given is not None else (None, None)
        # bar by bar
        self._panel: GrowingPanel | None = None
        self._first: int | None = None
        self._folds: list[Fold] = []
        self._parts: list[Predictions] = []
        self._last = (-1, None)
        self._unrecorded: Predictions | None = None  # the last bar's, its record-only outputs still NaN
        self._scheduled = True
        self.model_id: str | None = None     # a registry model in use (live), else None

    def use_model(self, predictor, model_id: str) -> None:
        """Trade a registry model (``run.py train``; live ``--model``): it predicts from the first
        usable bar, and is retrained by :meth:`retrain_now` (the live schedule), not every
        ``retrain_every`` bars. Bar by bar only."""
        self.walk.predictor, self.model_id = predictor, model_id
        self._scheduled, self._anchored = False, False

    def retrain_now(self) -> dict | None:
        """Retrain at the latest bar (the live runner's weekly retrain), on the bars seen so far."""
        if self.data is None or self._last[0] < 0:
            return None
        self.complete_record()   # with the model that predicted the bar
        info = self.walk.retrain(self.labelled_data(), self._last[0])
        self._folds.append(Fold(index=len(self._folds), test_start=self._last[0] + 1, test_end=self._last[0],
                                n_test=0, **info))
        return info

    # ---- the current bar ------------------------------------------------------------------------
    def current(self) -> Predictions | None:
        """Predictions for the current bar, one row per symbol predicted (``symbols`` holds the
        hub's symbol index); None before the first fit."""
        t = self.hub.calendar_index()
        if self.hub.panel is not None:
            if self._result is None:
                self._run_ahead()
            p = self._result.predictions
            lo, hi = np.searchsorted(p.bars, t, "left"), np.searchsorted(p.bars, t, "right")
            return p.take(slice(lo, hi)) if hi > lo else None
        if self._last[0] != t:
            self._last = (t, self._step(t))
        return self._last[1]

    def labelled_data(self) -> PanelData | None:
        """The bars so far with their labels. Bar by bar, ``data`` is kept without labels (computing
        them over the whole history costs milliseconds a bar, growing with it) until a retrain or
        the report needs them."""
        if self.data is not None and self.data.labels is None:
            self.data = self._panel.labelled()
        return self.data

    def _run_ahead(self) -> None:
        _, self.data = panel_data_from_bars(self.hub.engine, self.hub.bar_arrays, self.cfg.models, panel=self.hub.panel)
        try:
            self._result = self.walk.run(self.data, executor=executor_from_config(self.cfg))
        except ValueError as exc:
            m = self.cfg.models
            raise UserError(f"the ml strategy cannot train: {exc}; it needs the features' warm-up plus "
                            f"models.train_bars ({m.train_bars}) bars and some more to trade") from None

    def complete_record(self) -> None:
        """Fill the last bar's outputs no trading rule reads (``models.predictor.RECORD_FIELDS``: the
        GARCH forecast, the entry and exit timing), left out of the bar's prediction so that its
        orders do not wait for them. The live session calls this once the bar's orders are sent; the
        next bar and :meth:`result` call it too, so nothing is left out if it does not."""
        p, self._unrecorded = self._unrecorded, None
        if p is not None:
            for name, values in self.walk.predictor.predict_record(self.data, p.bars, p.symbols).items():
                getattr(p, name)[:] = values

    def _step(self, t: int) -> Predictions | None:
        self.complete_record()   # before this bar joins the panel: the previous bar's GARCH step reads up to it
        hub = self.hub
        rows = hub.rows()
        if self._panel is None:
            self._panel = GrowingPanel(hub.engine.symbols, hub.names, self.cfg.models)
        _, high, low, close, _ = hub.bar     # the bar as the hub read it for the features
        self.data = self._panel.append(np.datetime64(hub.strategy.datetime.datetime(0), "ns"), rows, close, high, low)
        usable = valid_rows(self.data, self.cfg.models.min_feature_fraction, [t]).any()
        if self._first is None and usable:
            self._first = self.walk.first_retrain(self.data)     # the first usable bar + train_bars
        if self._scheduled and self._first is not None and self.walk.is_retrain_bar(t, self._first):
            info = self.walk.retrain(self.labelled_data(), t)
            self._folds.append(Fold(index=len(self._folds), test_start=t, test_end=t, n_test=0, **info))
            log.info("retrained at bar %d (%s): %d samples", t, hub.strategy.datetime.datetime(0), info["n_train"])
        if self.walk.predictor.fitted_at is None or not usable:
            return None
        if self.model_id is not None and not self._anchored:
            # a registry model's GARCH state points at bars of its training calendar: re-fit it on
            # the history this session has (the other models read features, not bar numbers)
            self.walk.predictor.volatility.fit(self.data.close, t, self.cfg.models.train_bars)
            self._anchored = True
        predictions = self._unrecorded = self.walk.predict(self.data, [t], record=False)
        if self._folds:
            fold = self._folds[-1]
            fold.test_end, fold.n_test = t, fold.n_test + len(predictions)
        self._parts.append(predictions)
        return predictions if len(predictions) else None

    # ---- the record ---------------------------------------------------------------------------
    def result(self) -> WalkForwardResult | None:
        """Folds and out-of-sample predictions so far (None before the first fit)."""
        if self._result is not None:
            return self._result
        self.complete_record()
        if not self._parts:
            return None
        w = self.walk
        return WalkForwardResult(Predictions.concat(self._parts), list(self._folds), w.n_configurations,
                                 w.predictor.base_names, w.predictor.horizons, w.predictor)
