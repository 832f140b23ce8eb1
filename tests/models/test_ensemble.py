"""Stacking weights go to the models with out-of-sample skill, and follow recent performance."""
import numpy as np
from numpy.testing import assert_allclose

from models.ensemble import StackingMetaLearner, decay_weights


def test_weight_goes_to_the_skilled_model():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.normal(0, 0.02, (n, 2))
    skilled = y + rng.normal(0, 0.04, (n, 2))
    noise = rng.normal(0, 0.02, (n, 2))
    base = np.stack([noise, skilled], axis=1)
    meta = StackingMetaLearner(ridge_alpha=0.1, halflife_bars=1e9).fit(base, y, np.zeros(n))
    w = meta.weights
    assert w.shape == (2, 2)
    assert (w[1] > 0.9).all()
    assert_allclose(w.sum(axis=0), 1.0)
    pred = meta.predict(base)
    assert np.corrcoef(pred[:, 0], y[:, 0])[0, 1] > 0.3


def test_weights_follow_recent_out_of_sample_performance():
    """Model A was right long ago, model B recently: with a short half-life B gets the weight."""
    rng = np.random.default_rng(1)
    n = 6000
    age = np.repeat(np.arange(300, 0, -1), n // 300)       # oldest rows first
    y = rng.normal(0, 0.02, (n, 1))
    old = age > 150
    a = np.where(old[:, None], y, 0) + rng.normal(0, 0.02, (n, 1))
    b = np.where(~old[:, None], y, 0) + rng.normal(0, 0.02, (n, 1))
    base = np.stack([a, b], axis=1)
    recent = StackingMetaLearner(0.1, halflife_bars=30).fit(base, y, age).weights[:, 0]
    flat = StackingMetaLearner(0.1, halflife_bars=1e9).fit(base, y, age).weights[:, 0]
    assert recent[1] > 0.8 and abs(flat[0] - flat[1]) < 0.2


def test_decay_weights_halve_each_halflife():
    assert_allclose(decay_weights(np.array([0, 63, 126]), 63), [1.0, 0.5, 0.25])
