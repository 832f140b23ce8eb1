"""Market regime: a Gaussian mixture over the equal-weight index's return and realised volatility
(``models.prices.market_features``), fitted on the training window's bars. Components are renamed
by their mean volatility, so regime 0 is always the calmest and the numbering is stable across
retrains."""
from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture


class RegimeClassifier:
    def __init__(self, n_regimes: int, seed: int):
        self.n_regimes, self.seed = n_regimes, seed
        self._gmm: GaussianMixture | None = None
        self._mean = self._std = None
        self._rank: np.ndarray | None = None  # component -> regime

    def fit(self, market: np.ndarray, bars: np.ndarray) -> "RegimeClassifier":
        """market (T, 2) from ``market_features``; bars: the training window's calendar bars."""
        X = market[bars]
        X = X[np.isfinite(X).all(axis=1)]
        self._gmm = None
        if len(X) < 2 * self.n_regimes:
            return self  # too short a history: everything is regime 0
        self._mean, self._std = X.mean(axis=0), np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        self._gmm = GaussianMixture(self.n_regimes, covariance_type="full", random_state=self.seed)
        self._gmm.fit((X - self._mean) / self._std)
        self._rank = np.argsort(np.argsort(self._gmm.means_[:, 1]))
        return self

    def predict(self, market: np.ndarray, bars: np.ndarray) -> np.ndarray:
        """(n,) regime of each bar, 0 = calmest; -1 where the bar's market features are unknown."""
        X = market[np.asarray(bars)]
        out = np.full(len(X), -1 if self._gmm is not None else 0, dtype=np.int64)
        ok = np.isfinite(X).all(axis=1)
        if self._gmm is not None and ok.any():
            out[ok] = self._rank[self._gmm.predict((X[ok] - self._mean) / self._std)]
        return out
