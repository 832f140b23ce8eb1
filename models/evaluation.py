"""Honest scores of out-of-sample predictions, beside naive baselines at the same horizon.

- directional accuracy: P(rise) >= 0.5 called "up", right when the realised return is > 0; with a
  95% Wilson interval. The interval treats rows as independent; overlapping horizons and
  symbols moving together make the real uncertainty larger.
- AUC of P(rise) for a rise; log loss of P(rise).
- IC: the mean over bars of the cross-sectional Spearman correlation between the expected and the
  realised return (bars with at least 3 symbols), as in Qlib. ``daily_correlations`` gives the
  per-bar series (Pearson and Spearman) that ``models.factor_evaluation`` builds on.
- baselines: ``always_up`` (every call "up": the drift) and ``last_return`` (the sign of the return
  over the previous h bars, its value as the score).
- ``leak_alarm``: accuracy above a threshold (``report.leak_alarm_accuracy``); published daily-equity
  accuracy is about 51-53%, so far more is a sign of a leak, not of skill.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import log_loss, roc_auc_score

from models.calibration import P_MIN, reliability_table

MIN_CROSS_SECTION = 3   # a bar with fewer symbols has no cross-section to rank (here and in models.factor_evaluation)


def daily_correlations(score: np.ndarray, realised: np.ndarray, bars: np.ndarray) -> pd.DataFrame:
    """Per bar (the index, sorted), the correlation across symbols of score and realised: Pearson
    (``ic``) and Spearman (``rank_ic``, the Pearson correlation of the within-bar ranks, ties
    averaged). Rows with a NaN are dropped; bars with fewer than ``MIN_CROSS_SECTION`` symbols, or
    where score or realised has no spread, are left out. Vectorised over bars (one groupby)."""
    frame = pd.DataFrame({"bar": bars, "s": score, "r": realised}).dropna()
    frame = frame[frame.groupby("bar")["s"].transform("size") >= MIN_CROSS_SECTION]
    if frame.empty:
        return pd.DataFrame({"ic": [], "rank_ic": []}, index=pd.Index([], dtype=np.int64, name="bar"))
    key = frame["bar"]

    def sums(values: pd.DataFrame) -> pd.DataFrame:
        centred = values - values.groupby(key).transform("mean")
        return pd.DataFrame({"sr": centred["s"] * centred["r"], "ss": centred["s"] ** 2,
                             "rr": centred["r"] ** 2}).groupby(key).sum()

    ranked, raw = sums(frame.groupby("bar")[["s", "r"]].rank()), sums(frame[["s", "r"]])
    # ranks are exact, so they decide which bars have a spread (the raw values' centred sums can be
    # rounding noise on a bar whose values are all equal)
    spread = (ranked["ss"] > 0) & (ranked["rr"] > 0)
    table = pd.DataFrame({"ic": raw["sr"] / np.sqrt(raw["ss"] * raw["rr"]),
                          "rank_ic": ranked["sr"] / np.sqrt(ranked["ss"] * ranked["rr"])})
    return table[spread]


def information_coefficient(score: np.ndarray, realised: np.ndarray, bars: np.ndarray) -> float:
    """Mean over bars of the Spearman correlation of score and realised across symbols."""
    per_bar = daily_correlations(score, realised, bars)["rank_ic"]
    return float(per_bar.mean()) if len(per_bar) else math.nan


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def _auc(up: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(up, score)) if len(np.unique(up)) == 2 else math.nan


def direction_scores(prob_up: np.ndarray | None, score: np.ndarray | None, realised: np.ndarray,
                     bars: np.ndarray, called_up: np.ndarray | None = None) -> dict:
    """Scores of one set of calls. ``called_up`` defaults to ``prob_up >= 0.5``; ``score`` ranks
    (AUC when no probability, and the IC)."""
    realised = np.asarray(realised, np.float64)
    up = realised > 0
    if called_up is None:
        called_up = prob_up >= 0.5
    n, right = len(realised), int((called_up == up).sum())
    ranking = prob_up if prob_up is not None else score
    return {
        "n": n,
        "accuracy": right / n if n else math.nan,
        "accuracy_ci95": list(wilson_interval(right, n)),
        "auc": _auc(up, ranking) if ranking is not None and n else math.nan,
        "ic": information_coefficient(score, realised, bars) if score is not None and n else math.nan,
        "log_loss": (float(log_loss(up, np.clip(prob_up, P_MIN, 1 - P_MIN), labels=[False, True]))
                     if prob_up is not None and n else math.nan),
    }


def past_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """(T, N) log return over the previous ``horizon`` own bars (the last-return baseline's score)."""
    out = np.full(close.shape, np.nan)
    for j in range(close.shape[1]):
        rows = np.flatnonzero(np.isfinite(close[:, j]))
        logc = np.log(close[rows, j])
        out[rows[horizon:], j] = logc[horizon:] - logc[:-horizon]
    return out


def evaluate(predictions, labels, close: np.ndarray, horizon: int, folds=(), leak_alarm_accuracy: float = 0.58,
             time_of=str, reliability_bins: int = 10) -> dict:
    """The ``walk_forward`` section of metrics.json for one horizon.

    predictions: ``models.predictor.Predictions`` (out-of-sample rows); labels: ``Labels``;
    folds: ``models.walkforward.Fold`` records (one row each); time_of: bar -> text (e.g.
    ``PanelData.time_of``). Rows whose label is unknown (past the end of the data) are left out.
    ``reliability``: the calibration table of P(rise) (``models.calibration.reliability_table``).
    """
    k = labels.horizons.index(horizon)
    realised = labels.returns[predictions.bars, predictions.symbols, k]
    known = np.isfinite(realised)
    p = predictions.take(known)
    realised = realised[known]
    prob, score = p.prob_up[:, k], p.expected_return[:, k]
    last = past_returns(close, horizon)[p.bars, p.symbols]
    has_last = np.isfinite(last)
    rows = []
    for fold in folds:
        mine = (p.bars >= fold.test_start) & (p.bars <= fold.test_end)
        scores = direction_scores(prob[mine], score[mine], realised[mine], p.bars[mine])
        rows.append({"fold": fold.index, "train_start": time_of(fold.train_start), "train_end": time_of(fold.train_end),
                     "test_start": time_of(fold.test_start), "test_end": time_of(fold.test_end),
                     "train_samples": fold.n_train, "test_samples": scores["n"],
                     **{key: scores[key] for key in ("accuracy", "auc", "ic", "log_loss")}})
    model = direction_scores(prob, score, realised, p.bars)
    always_up = direction_scores(None, None, realised, p.bars, called_up=np.ones(len(realised), bool))
    last_return = direction_scores(None, last[has_last], realised[has_last], p.bars[has_last],
                                   called_up=last[has_last] > 0)
    return {
        "horizon": horizon,
        "folds": rows,
        "directional_accuracy": model["accuracy"],
        "directional_accuracy_ci95": model["accuracy_ci95"],
        "auc": model["auc"], "ic": model["ic"], "log_loss": model["log_loss"], "samples": model["n"],
        "baselines": {"always_up": always_up, "last_return": last_return},
        "leak_alarm": bool(model["accuracy"] > leak_alarm_accuracy),
        "leak_alarm_accuracy": leak_alarm_accuracy,
        "reliability": reliability_table(prob, realised > 0, reliability_bins).to_dict("records"),
    }
