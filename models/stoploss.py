"""Stop-loss model: a quantile of the maximum adverse excursion within the decision horizon.

LightGBM with the quantile (pinball) loss (Koenker and Bassett 1978) regresses
``models.labels.path_labels``' adverse excursion, a positive fraction of the entry close; the
``quantile`` (say 0.8) is a stop that about 80% of comparable entries would not have hit. The
prediction is clipped to [min_stop, max_stop] (the blueprint's 0.5%-5%). Volatility, regime and
trailing-stop adjustments belong to the strategy.
"""
from __future__ import annotations

import numpy as np

from models.plugins.trees import LightGBMPlugin


class StopLossModel:
    def __init__(self, models_cfg, seed: int):
        cfg = models_cfg.stoploss
        self.min_stop, self.max_stop = cfg.min_stop, cfg.max_stop
        self.plugin = LightGBMPlugin(models_cfg.lightgbm, seed=seed, threads=models_cfg.threads,
                                     objective="quantile", alpha=cfg.quantile)

    def fit(self, X, adverse: np.ndarray, *, X_val=None, y_val=None) -> "StopLossModel":
        self.plugin.fit(X, adverse, X_val=X_val, y_val=y_val)
        return self

    def predict(self, X) -> np.ndarray:
        """(n,) stop distance below the entry, a fraction of the price."""
        return np.clip(self.plugin.predict(X)[:, 0], self.min_stop, self.max_stop)
