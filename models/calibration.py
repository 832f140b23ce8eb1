"""Calibrated confidence: a map from the ensemble's score to P(rise), fitted on out-of-fold data only,
so that among calls made with probability 0.65 about 65% rise; and the reliability table the report
draws (predicted probability per bin against the frequency observed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

# Probabilities are kept inside [P_MIN, 1 - P_MIN]: a finite log loss, and no call is ever "certain".
P_MIN = 1e-3


class ProbabilityCalibrator:
    """Isotonic regression (Zadrozny and Elkan 2002; non-decreasing in the score) or Platt scaling
    (a logistic regression on the standardised score, Platt 1999). ``method="auto"``: isotonic with
    at least ``min_isotonic_samples`` rows (it needs many to be smooth), Platt below.
    The isotonic fit runs on consecutive groups of ``bin_samples`` rows sorted by score (their mean
    score and outcome, weighted by size), so no step of the map rests on fewer rows: without it the
    extreme scores get steps of a handful of rows and probabilities near 0 or 1.
    Fit it on out-of-fold scores: in-sample scores are over-confident."""

    def __init__(self, method: str = "auto", min_isotonic_samples: int = 500, bin_samples: int = 1):
        self.method, self.min_isotonic_samples, self.bin_samples = method, min_isotonic_samples, bin_samples
        self.fitted_method: str | None = None
        self._model = None
        self._scale = (0.0, 1.0)
        self._constant: float | None = None

    def fit(self, score: np.ndarray, up: np.ndarray,
            sample_weight: np.ndarray | None = None) -> "ProbabilityCalibrator":
        score, up = np.asarray(score, np.float64), np.asarray(up, bool)
        self._constant = None
        if len(np.unique(up)) < 2 or np.ptp(score) == 0:
            # One outcome or one score: the base rate is all the data can say.
            self._constant = float(np.clip(np.average(up, weights=sample_weight) if len(up) else 0.5, P_MIN, 1 - P_MIN))
            self.fitted_method = "constant"
            return self
        use_isotonic = self.method == "isotonic" or (self.method == "auto" and len(score) >= self.min_isotonic_samples)
        if use_isotonic:
            weight = np.ones(len(score)) if sample_weight is None else np.asarray(sample_weight, np.float64)
            order = np.argsort(score, kind="stable")
            size = max(1, self.bin_samples)
            # consecutive groups of `size` rows; the remainder joins the last group
            group = np.minimum(np.arange(len(score)) // size, max(1, len(score) // size) - 1)
            total = np.bincount(group, weights=weight[order])
            mean_score = np.bincount(group, weights=(score * weight)[order]) / total
            mean_up = np.bincount(group, weights=(up * weight)[order]) / total
            self._model = IsotonicRegression(y_min=P_MIN, y_max=1 - P_MIN, increasing=True, out_of_bounds="clip")
            self._model.fit(mean_score, mean_up, sample_weight=total)
            self.fitted_method = "isotonic"
        else:
            self._scale = (float(score.mean()), float(score.std()))
            self._model = LogisticRegression()
            self._model.fit(self._standardise(score)[:, None], up, sample_weight=sample_weight)
            self.fitted_method = "platt"
        return self

    def _standardise(self, score):
        return (score - self._scale[0]) / self._scale[1]

    def predict(self, score: np.ndarray) -> np.ndarray:
        score = np.asarray(score, np.float64)
        if self._constant is not None:
            p = np.full(score.shape, self._constant)
        elif self.fitted_method == "isotonic":
            p = self._model.predict(score)
        else:
            p = self._model.predict_proba(self._standardise(score)[:, None])[:, 1]
        return np.clip(p, P_MIN, 1 - P_MIN)


def reliability_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of predicted probability over [0, 1]: ``bin_low``, ``bin_high``, ``count``,
    ``mean_predicted`` and ``observed`` (frequency of y = 1; NaN in an empty bin). A calibrated
    model has observed close to mean_predicted in every well-filled bin."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_predicted = np.bincount(which, weights=p, minlength=bins) / count
        observed = np.bincount(which, weights=y, minlength=bins) / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "mean_predicted": mean_predicted, "observed": observed})
