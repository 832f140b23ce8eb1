"""Timing predictor: where within the decision horizon the best entry and the best exit fall.

Targets are ``models.labels.path_labels``' entry and exit fractions (0 = now, 1 = the end of the
horizon) of the best long round trip in the window; any plugin regresses both at once
(``[models.timing] model``; the blueprint's choice is an LSTM). Predictions are clipped to [0, 1].
"""
from __future__ import annotations

import numpy as np

from models.plugins.base import ModelPlugin


class TimingModel:
    def __init__(self, plugin: ModelPlugin):
        self.plugin = plugin

    def fit(self, X, entry_exit: np.ndarray, *, X_val=None, y_val=None) -> "TimingModel":
        """entry_exit: (n, 2) fractions from the labels."""
        self.plugin.fit(X, entry_exit, X_val=X_val, y_val=y_val)
        return self

    def predict(self, X) -> np.ndarray:
        """(n, 2): entry and exit fractions of the horizon."""
        return np.clip(self.plugin.predict(X), 0.0, 1.0)
