"""Which samples may train which model: purged walk-forward and purged k-fold (Lopez de Prado,
AFML ch. 7).

A sample is a (bar, symbol) row whose features are read at the close of its bar ``s`` and whose
label reads prices up to its end ``e`` (``models.labels``): its label window is the returns in
(s, e]. The rules, with ``embargo`` bars of extra gap:

- walk-forward: a model used at bar t (and until its next retrain) trains on samples with
  ``e <= t - embargo`` whose bar lies in the trailing window ``t - train_bars < s <= t``, so no
  model ever sees a label that ends after a bar it predicts;
- k-fold / time-series CV with a test block of bars [a, b] whose labels end by ``e_max``: a sample
  trains only if ``e <= a - embargo`` (before the block) or ``s >= e_max + embargo`` (after it);
  no training label window shares a return with a test label window.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


def training_samples(t: int, sample_bar: np.ndarray, label_end: np.ndarray, train_bars: int,
                     embargo: int) -> np.ndarray:
    """Boolean mask of the samples that may train the model used from bar ``t`` on."""
    sample_bar, label_end = np.asarray(sample_bar), np.asarray(label_end)
    return (sample_bar > t - train_bars) & (label_end >= 0) & (label_end <= t - embargo)


def retrain_points(n_bars: int, first: int, every: int) -> np.ndarray:
    """Bars at which the walk-forward retrains: ``first, first + every, ...`` below ``n_bars``.
    The model trained at one point predicts the bars up to the next."""
    if every < 1:
        raise ValueError("every must be >= 1")
    return np.arange(max(first, 0), n_bars, every, dtype=np.int64)


def _purge(sample_bar, label_end, test, embargo):
    """Training mask around the test rows: labels ending ``embargo`` bars before the block starts,
    or starting ``embargo`` bars after the block's last label ends."""
    a = sample_bar[test].min()
    e_max = label_end[test].max()
    keep = (label_end <= a - embargo) | (sample_bar >= e_max + embargo)
    keep[test] = False
    return keep


def purged_kfold(sample_bar: np.ndarray, label_end: np.ndarray, n_splits: int, embargo: int,
                 forward_only: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) pairs over contiguous blocks of bars.

    The distinct bars are cut into ``n_splits`` blocks (``n_splits + 1`` when ``forward_only``,
    the first one never tested: time-series CV that trains only on the past). Training rows are
    purged and embargoed around each test block (module docstring). Folds with no training row
    are skipped. Samples with an unknown label (end -1) must be removed before.
    """
    sample_bar, label_end = np.asarray(sample_bar), np.asarray(label_end)
    if (label_end < 0).any():
        raise ValueError("samples with an unknown label (end -1) cannot be split")
    bars = np.unique(sample_bar)
    blocks = np.array_split(bars, n_splits + 1 if forward_only else n_splits)
    for block in blocks[1:] if forward_only else blocks:
        if len(block) == 0:
            continue
        test = (sample_bar >= block[0]) & (sample_bar <= block[-1])
        train = _purge(sample_bar, label_end, test, embargo)
        if forward_only:
            train &= sample_bar < block[0]
        if train.any():
            yield np.flatnonzero(train), np.flatnonzero(test)


def validation_split(sample_bar: np.ndarray, label_end: np.ndarray, fraction: float,
                     embargo: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``fraction`` of the distinct bars as a validation set (early stopping), the rest,
    purged and embargoed before it, for training. ``fraction`` 0 (or too few bars): all train."""
    sample_bar, label_end = np.asarray(sample_bar), np.asarray(label_end)
    bars = np.unique(sample_bar)
    n_val = int(round(len(bars) * fraction))
    if n_val == 0 or n_val >= len(bars):
        return np.arange(len(sample_bar)), np.array([], dtype=np.int64)
    val = sample_bar >= bars[-n_val]
    train = (label_end <= bars[-n_val] - embargo) & ~val
    return np.flatnonzero(train), np.flatnonzero(val)
