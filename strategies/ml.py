"""``--strategy ml``: the ensemble of ``models`` trained walk-forward inside the strategy.

Each bar, for every symbol with a bar now:
- the predictions of the current bar (``strategies.signals.WalkForwardSignals``: retrain every
  ``models.retrain_every`` bars on the trailing ``models.train_bars``, purged and embargoed);
- entry: the calibrated probability of a rise over the decision horizon (the confidence) is at
  least ``ml.min_confidence`` and the expected simple return over that horizon is above
  ``ml.min_expected_return``; the most confident fill the free slots (``risk.max_positions``) at
  equal weights (1 / max_positions of equity, capped by ``risk.max_position_weight``);
- exit: ``time`` once the prediction's horizon (``ml.max_hold_bars``, default the decision
  horizon) is over.
The features are the registry's, read as one row per bar from the strategy's ``FeatureHub``.
"""
from __future__ import annotations

import logging
import math
import sys

import numpy as np

from features.from_config import engine_from_config
from indicators.feature_bank import FeatureHub
from strategies.base import PortfolioStrategy
from strategies.signals import WalkForwardSignals

log = logging.getLogger("strategy")


class MLStrategy(PortfolioStrategy):
    def __init__(self):
        super().__init__()
        engine = engine_from_config(self.cfg, [d._name for d in self.datas])
        self.features = FeatureHub(self, engine)
        self.signals = WalkForwardSignals(self.cfg, self.features, seed=self.cfg.backtest.seed,
                                          progress=self.cfg.backtest.progress and sys.stderr.isatty())
        models = self.cfg.models
        self.decision = models.horizons.index(models.decision_horizon)
        self.hold_bars = self.cfg.ml.max_hold_bars or models.decision_horizon
        self.predictions = None

    def next(self):
        # every bar, also before --start: bar by bar, the models see each bar once and in order
        self.predictions = self.signals.current()
        super().next()

    def decide(self, now, fresh):
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is not None and plan.entry_datetime is not None and not plan.exiting \
                    and plan.bars_held >= self.hold_bars:
                self.exit_position(d, "time")
        p = self.predictions
        if p is None:
            return
        rule = self.cfg.ml
        expected = np.expm1(p.expected_return[:, self.decision])          # log -> simple return
        chosen = np.flatnonzero((p.confidence >= rule.min_confidence) & (expected > rule.min_expected_return))
        candidates = [(float(p.confidence[i]), float(expected[i]), self.features.datas[p.symbols[i]])
                      for i in chosen]
        candidates = [c for c in candidates if c[2]._name not in self.positions_plan and self.tradable(c[2])]
        free = self.cfg.risk.max_positions - self.open_and_pending()
        if free <= 0 or not candidates:
            return
        risk = self.cfg.risk
        equity = self.broker.getvalue()
        cash = self.broker.getcash() - self.committed_cash()
        weight = min(1.0 / risk.max_positions, risk.max_position_weight)
        for confidence, expected_return, d in sorted(candidates, key=lambda c: (-c[0], c[2]._name))[:free]:
            value = min(equity * weight, cash)
            if value < risk.min_position_value:
                break
            size = self.shares_for_value(value, d.close[0])
            if size <= 0 or not math.isfinite(expected_return):
                continue
            log.debug("%s %s confidence %.3f expected %.4f size %d", now, d._name, confidence, expected_return, size)
            self.enter_long(d, size, stop_price=None, reason="ml", confidence=confidence,
                            expected_return=expected_return)
            cash -= size * d.close[0]

    # ---- what the run's report reads ------------------------------------------------------------
    def walk_forward(self):
        """(``WalkForwardResult``, ``PanelData``) of the run, or None when no model was fitted."""
        result = self.signals.result()
        return None if result is None else (result, self.signals.data)
