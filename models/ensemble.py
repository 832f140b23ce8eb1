"""Stacking: a meta-learner combines the base models' out-of-sample predictions (Wolpert 1992;
Breiman 1996, non-negative stacking weights).

Per horizon h the expected return is ``intercept_h + sum_m w_mh * z_mh``, z the base model m's
prediction standardised over the meta-learner's training rows, w >= 0 fitted by ridge regression
on out-of-fold rows. Each row is weighted ``0.5 ** (age / halflife)``, age = bars between the row
and the fit: the weights follow the models' *recent* out-of-sample performance, and a model that
stopped working loses its weight within a few half-lives. ``weights`` reports w normalised to sum 1
per horizon (all zero: no base model has recent skill; the prediction is the recent mean).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge


def decay_weights(age: np.ndarray, halflife: float) -> np.ndarray:
    """``0.5 ** (age / halflife)``: a row ``halflife`` bars old counts half."""
    return np.power(0.5, np.asarray(age, np.float64) / halflife)


class StackingMetaLearner:
    def __init__(self, ridge_alpha: float, halflife_bars: float):
        self.ridge_alpha, self.halflife_bars = ridge_alpha, halflife_bars
        self._mean = self._std = None
        self._models: list[Ridge] = []

    def fit(self, base: np.ndarray, y: np.ndarray, age: np.ndarray) -> "StackingMetaLearner":
        """base (n, M, H) out-of-fold base predictions, y (n, H) realised, age (n,) bars."""
        w = decay_weights(age, self.halflife_bars)
        self._mean = np.average(base, axis=0, weights=w)
        std = np.sqrt(np.average((base - self._mean) ** 2, axis=0, weights=w))
        self._std = np.where(std > 0, std, 1.0)
        z = (base - self._mean) / self._std
        self._models = [Ridge(alpha=self.ridge_alpha * w.sum(), positive=True).fit(z[:, :, h], y[:, h], sample_weight=w)
                        for h in range(y.shape[1])]
        return self

    def predict(self, base: np.ndarray) -> np.ndarray:
        z = (base - self._mean) / self._std
        return np.column_stack([m.predict(z[:, :, h]) for h, m in enumerate(self._models)])

    @property
    def weights(self) -> np.ndarray:
        """(M, H) stacking weights, each horizon's column normalised to sum 1 (or all 0)."""
        coef = np.column_stack([m.coef_ for m in self._models])
        total = coef.sum(axis=0)
        return np.divide(coef, total, out=np.zeros_like(coef), where=total > 0)
