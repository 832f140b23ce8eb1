"""The purged splitters never let a training label window overlap a test label window, keep the
embargo, and purge nothing more than the rules say (property tests over random panels)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from models.splits import purged_kfold, retrain_points, training_samples, validation_split


@st.composite
def panels(draw):
    """Samples of a random panel: T bars x N symbols, each with horizons counted in its own bars
    (gaps make the calendar end of a label vary)."""
    T = draw(st.integers(20, 120))
    N = draw(st.integers(1, 4))
    horizon = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    bars, ends = [], []
    for _ in range(N):
        own = np.flatnonzero(rng.random(T) > draw(st.floats(0, 0.3)))
        bars.append(own[: max(len(own) - horizon, 0)])
        ends.append(own[horizon:])
    bar, end = np.concatenate(bars), np.concatenate(ends)
    return bar, end, T


def assert_purged(bar, end, train, test, embargo, forward_only):
    a, e_max = bar[test].min(), end[test].max()
    for i in train:
        # the training label window (bar_i, end_i] shares no return with any test window, with the gap
        before = end[i] <= bar[test].min() - embargo
        after = bar[i] >= e_max + embargo
        assert before or after
        assert not forward_only or before
        assert not ((bar[i] < bar[test]) & (end[i] > bar[test])).any()
    # nothing more is purged than the rule says
    allowed = (end <= a - embargo) | (bar >= e_max + embargo)
    if forward_only:
        allowed &= bar < a
    allowed[test] = False
    assert_array_equal(np.sort(train), np.flatnonzero(allowed))


@settings(max_examples=150, deadline=None)
@given(panels(), st.integers(2, 6), st.integers(0, 8), st.booleans())
def test_purged_kfold_never_overlaps_a_test_window(panel, n_splits, embargo, forward_only):
    bar, end, _ = panel
    if len(bar) == 0:
        return
    blocks = 0
    for train, test in purged_kfold(bar, end, n_splits, embargo, forward_only=forward_only):
        assert len(np.intersect1d(train, test)) == 0
        assert_purged(bar, end, train, test, embargo, forward_only)
        # a test block is every sample of a contiguous range of bars
        assert_array_equal(np.sort(test), np.flatnonzero((bar >= bar[test].min()) & (bar <= bar[test].max())))
        blocks += 1
    assert blocks <= n_splits


@settings(max_examples=150, deadline=None)
@given(panels(), st.integers(1, 60), st.integers(0, 8), st.data())
def test_walk_forward_training_labels_end_before_every_predicted_bar(panel, train_bars, embargo, data):
    bar, end, T = panel
    t = data.draw(st.integers(0, T))
    mask = training_samples(t, bar, end, train_bars, embargo)
    assert (end[mask] <= t - embargo).all()                 # known at t, with the embargo
    assert (bar[mask] > t - train_bars).all()               # inside the trailing window
    # every later bar the model predicts (until the next retrain) is after every label it saw
    assert (end[mask] <= t).all()
    assert_array_equal(mask, (bar > t - train_bars) & (end <= t - embargo))


@settings(max_examples=100, deadline=None)
@given(panels(), st.floats(0.05, 0.5), st.integers(0, 8))
def test_validation_tail_is_purged(panel, fraction, embargo):
    bar, end, _ = panel
    if len(bar) == 0:
        return
    train, val = validation_split(bar, end, fraction, embargo)
    if len(val):
        first = bar[val].min()
        assert (end[train] <= first - embargo).all()
        assert (bar[val] >= first).all() and len(np.intersect1d(train, val)) == 0


def test_retrain_points():
    assert_array_equal(retrain_points(100, 40, 21), [40, 61, 82])
    assert len(retrain_points(30, 40, 21)) == 0
