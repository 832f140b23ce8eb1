"""Drift and calibration figures a live session exports: the population stability index (PSI) of
live feature values against the training window's, and the expected calibration error (ECE) of
the predictions resolved so far. Pure numpy; cheap enough for every bar.

PSI (Siddiqi, *Credit Risk Scorecards*, 2006): with the training values cut into bins at their
quantiles, ``sum((a - e) * ln(a / e))`` over the bins, ``e`` and ``a`` the training's and the live
window's share of values in each bin (a share of 0 is floored at ``floor``, so an empty bin counts
as rare, not as infinitely surprising). Rule of thumb: below 0.1 stable, 0.1-0.25 a shift worth a
look, above 0.25 a significant shift.
"""
from __future__ import annotations

import numpy as np

PSI_FLOOR = 1e-4  # a bin's share below this counts as this (no log of zero)


def quantile_edges(training: np.ndarray, bins: int = 10) -> np.ndarray:
    """(F, bins - 1) inner bin edges of each column of ``training`` (rows x F features), at its
    quantiles, NaN ignored; a column without values gets NaN edges (every value then falls in the
    first bin, and its PSI is 0)."""
    training = np.asarray(training, np.float64)
    if training.ndim == 1:
        training = training[:, None]
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.full((training.shape[1], bins - 1), np.nan)
    for j in range(training.shape[1]):
        column = training[:, j]
        column = column[np.isfinite(column)]
        if len(column):
            edges[j] = np.quantile(column, quantiles)
    return edges


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value among its column's ``edges`` (F, bins - 1): ``values`` (F,) or
    (rows, F) gives the same shape of bins 0 .. bins - 1, where bin k holds
    edges[k - 1] < value <= edges[k]; -1 for a missing value."""
    values = np.asarray(values, np.float64)
    index = (values[..., None] > edges).sum(axis=-1)  # NaN edges compare False: bin 0
    index[~np.isfinite(values)] = -1
    return index


def _count(index: np.ndarray, n_features: int, n_bins: int) -> np.ndarray:
    """(F, bins) counts of bin indices (rows, F); -1 (missing) not counted."""
    flat = (np.arange(n_features) * n_bins + index).ravel()
    flat = flat[index.ravel() >= 0]
    return np.bincount(flat, minlength=n_features * n_bins).reshape(n_features, n_bins).astype(np.float64)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(F, bins) count of the rows of ``values`` (rows x F) in each bin of each column."""
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return _count(bin_index(values, edges), edges.shape[0], edges.shape[1] + 1)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """PSI of each row of ``actual`` counts (F, bins) against ``expected`` counts (F, bins) (or of
    one pair of 1-d count vectors); NaN for a row with no actual (or no expected) values."""
    expected, actual = np.atleast_2d(np.asarray(expected, np.float64)), np.atleast_2d(np.asarray(actual, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.maximum(expected / expected.sum(axis=1, keepdims=True), floor)
        a = np.maximum(actual / actual.sum(axis=1, keepdims=True), floor)
        return ((a - e) * np.log(a / e)).sum(axis=1)


class RollingBinCounts:
    """Bin counts of the rows of the last ``window`` steps of live feature values (a step: one bar,
    ``rows`` x F values), kept up to date a step at a time: one comparison against the edges and
    two bin counts per bar, whatever the window."""

    def __init__(self, edges: np.ndarray, window: int, rows: int = 1):
        self.edges = np.asarray(edges, np.float64)
        self.window = int(window)
        self.n_features, self.n_bins = self.edges.shape[0], self.edges.shape[1] + 1
        self.counts = np.zeros((self.n_features, self.n_bins))
        self._steps = np.full((self.window, rows, self.n_features), -1, dtype=np.int64)  # bin indices, a ring
        self._next = 0
        self.seen = 0

    def add(self, values: np.ndarray) -> None:
        """One step: ``values`` (F,) or (rows, F)."""
        index = bin_index(np.atleast_2d(values), self.edges)
        slot = self._next
        if self.seen >= self.window:
            self.counts -= _count(self._steps[slot], self.n_features, self.n_bins)
        self.counts += _count(index, self.n_features, self.n_bins)
        self._steps[slot] = index
        self._next = (slot + 1) % self.window
        self.seen += 1


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (Naeini et al. 2015): predictions cut into ``bins`` equal-width
    bins of confidence over [0, 1]; the mean over predictions of |observed frequency - mean
    confidence| of their bin. NaN without predictions."""
    # sum over bins of (n_b / n) |mean outcome_b - mean confidence_b| = sum |outcomes_b - confidences_b| / n
    tally = CalibrationTally(bins)
    tally.add(confidence, outcome)
    return tally.error()


class CalibrationTally:
    """The expected calibration error of predictions resolved so far, kept as per-bin sums (count,
    confidence, outcome), so that adding predictions costs nothing that grows with their number."""

    def __init__(self, bins: int = 10):
        self.bins = bins
        self._edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        self.count = np.zeros(bins)
        self.confidence = np.zeros(bins)
        self.outcome = np.zeros(bins)

    def add(self, confidence: np.ndarray, outcome: np.ndarray) -> None:
        confidence, outcome = np.asarray(confidence, np.float64), np.asarray(outcome, np.float64)
        which = np.clip(np.digitize(confidence, self._edges), 0, self.bins - 1)
        self.count += np.bincount(which, minlength=self.bins)
        self.confidence += np.bincount(which, weights=confidence, minlength=self.bins)
        self.outcome += np.bincount(which, weights=outcome, minlength=self.bins)

    @property
    def resolved(self) -> int:
        return int(self.count.sum())

    def error(self) -> float:
        """As :func:`expected_calibration_error` of every prediction added; NaN before the first."""
        n = self.count.sum()
        return float(np.abs(self.outcome - self.confidence).sum() / n) if n else float("nan")


class ModelMonitor:
    """What a live model's monitoring needs each bar, cheaply: the PSI of each feature over the
    last ``window`` bars against the model's training rows (bin edges and training counts computed
    once per fit, :meth:`refit`), and the calibration error of its predictions whose ``horizon``
    has passed (P(rise): the close ``horizon`` bars later above the close predicted at)."""

    def __init__(self, feature_names, *, horizon: int, window: int, bins: int = 10):
        self.feature_names = list(feature_names)
        self.horizon, self.window, self.bins = horizon, window, bins
        self.expected: np.ndarray | None = None
        self.live: RollingBinCounts | None = None
        self.calibration = CalibrationTally()
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (bar, symbol columns, confidence)

    def refit(self, training_rows: np.ndarray, n_symbols: int) -> None:
        """A new model: ``training_rows`` (rows x F) its training features; the live window restarts."""
        edges = quantile_edges(training_rows, self.bins)
        self.expected = bin_counts(training_rows, edges)
        self.live = RollingBinCounts(edges, self.window, rows=n_symbols)

    def add_bar(self, feature_rows: np.ndarray) -> None:
        """The bar's feature rows (symbols x F)."""
        if self.live is not None:
            self.live.add(feature_rows)

    def add_predictions(self, bar: int, columns: np.ndarray, confidence: np.ndarray) -> None:
        self._pending.append((bar, np.asarray(columns), np.asarray(confidence, np.float64)))

    def resolve(self, bar: int, close: np.ndarray) -> None:
        """Score the predictions made ``horizon`` bars before ``bar`` or earlier; ``close``: (T, N)."""
        while self._pending and self._pending[0][0] + self.horizon <= bar:
            made, columns, confidence = self._pending.pop(0)
            start, end = close[made, columns], close[made + self.horizon, columns]
            known = np.isfinite(start) & np.isfinite(end)
            self.calibration.add(confidence[known], (end[known] > start[known]).astype(np.float64))

    def drift(self) -> dict[str, float] | None:
        """Feature -> PSI of the live window against training; None before a fit or a live bar."""
        if self.live is None or self.live.seen == 0:
            return None
        return dict(zip(self.feature_names, psi(self.expected, self.live.counts).tolist()))
