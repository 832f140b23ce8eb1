"""The cross-sectional label kinds (excess return, rank) and the tree rankers: their defining
properties on the real sample, the purge's bookkeeping, and the leakage checks passing them and
failing a planted leak."""
import numpy as np
import pandas as pd
import pytest

from config.schema import LabelsConfig
from models.evaluation import information_coefficient
from models.labels import cross_sectional_ranks, excess_returns, forward_returns, make_labels
from models.leakage import feature_label_check, label_lookahead_check, project_label_fn
from models.plugins import load_plugin, make_plugin
from models.plugins.trees import relevance_grades
from models.predictor import EnsemblePredictor
from models.splits import training_samples
from tests.models.conftest import panel_data, small_models_cfg
from tests.models.test_leakage import CUTS, prices, shift

KINDS = ("excess_return", "cross_sectional_rank")


def labels_cfg(kind):
    return LabelsConfig(kind=kind, barrier_vol_bars=20, profit_target=1.0, stop_loss=1.0)


def test_excess_returns_sum_to_zero_across_the_symbols_of_a_bar(sample_prices):
    raw, end = forward_returns(sample_prices["close"], (1, 5))
    excess, excess_end = excess_returns(raw, end)
    known = np.isfinite(raw)
    assert np.array_equal(np.isfinite(excess), known)
    sums = np.nansum(excess, axis=1)[known.any(axis=1)]
    assert np.abs(sums).max() < 1e-12
    # the universe's part is the same for every symbol of a bar: differences between symbols survive
    t = 400
    assert np.allclose(np.diff(excess[t, :, 1]), np.diff(raw[t, :, 1]), equal_nan=True)


def test_ranks_are_a_permutation_scaled_to_half_a_unit(sample_prices):
    raw, end = forward_returns(sample_prices["close"], (5,))
    ranks, _ = cross_sectional_ranks(raw, end)
    for t in (300, 700, 1200):
        r, x = ranks[t, :, 0], raw[t, :, 0]
        mine = np.isfinite(x)
        n = int(mine.sum())
        assert n > 2 and np.nanmin(r) == -0.5 and np.nanmax(r) == 0.5
        assert sorted((r[mine] + 0.5) * (n - 1) + 1) == pytest.approx(range(1, n + 1))
        assert np.array_equal(np.argsort(r[mine]), np.argsort(x[mine]))   # the order of the returns


def test_a_lone_symbol_and_ties():
    values = np.array([[[0.1], [np.nan], [np.nan]], [[0.2], [0.2], [-0.1]]])
    end = np.where(np.isfinite(values), 3, -1)
    ranks, rank_end = cross_sectional_ranks(values, end)
    assert ranks[0, 0, 0] == 0.0 and np.isnan(ranks[0, 1, 0])
    assert ranks[1, :, 0].tolist() == [0.25, 0.25, -0.5]
    assert rank_end[0, :, 0].tolist() == [3, -1, -1]


def test_a_cross_sectional_label_ends_when_the_last_label_of_its_bar_ends(sample_prices):
    """PYPL starts in 2015: a symbol missing a bar ends its h-bar label later than the others. A
    cross-sectional label reads every symbol's, so the purge must wait for the latest."""
    close = sample_prices["close"].copy()
    close[500, 3] = np.nan                        # one missing bar: symbol 3's labels over it end a bar later
    raw, end = forward_returns(close, (5,))
    for kind in KINDS:
        labels = make_labels(close, sample_prices["high"], sample_prices["low"], (5,), 5, labels_cfg(kind))
        t = 497
        assert end[t, 3, 0] == end[t, 0, 0] + 1
        assert (labels.end[t, np.isfinite(raw[t, :, 0]), 0] == end[t, 3, 0]).all()
        # the purge at bar t_fit keeps a row only once the latest of them has ended
        rows = np.array([t])
        fit = end[t, 0, 0] + 2                    # embargo 2: the raw label of symbol 0 would be usable
        assert training_samples(fit, rows, np.array([end[t, 0, 0]]), 252, 2).all()
        assert not training_samples(fit, rows, labels.end[t, :1, 0], 252, 2).any()


@pytest.mark.parametrize("kind", KINDS)
def test_cross_sectional_labels_pass_the_lookahead_check(sample_prices, models_cfg, kind):
    cfg = models_cfg.model_copy(update={"labels": labels_cfg(kind)})
    assert label_lookahead_check(project_label_fn(cfg), *prices(sample_prices), CUTS) == []


def test_a_rank_label_shifted_the_wrong_way_is_flagged_and_ranks_like_a_feature(sample_prices, sample_features):
    """The planted leak: the rank of the return that ended at t posing as the label at t."""
    def past_rank(close, high, low):
        values, end = cross_sectional_ranks(*forward_returns(close, (5,)))
        moved, _ = shift(values, end, 5)
        return moved, np.where(np.isfinite(moved), end, -1)
    problems = label_lookahead_check(past_rank, *prices(sample_prices), CUTS)
    assert any("not forward-looking" in p for p in problems)

    values, names = sample_features
    leaked, _ = past_rank(sample_prices["close"], None, None)
    honest, _ = cross_sectional_ranks(*forward_returns(sample_prices["close"], (5,)))
    rows = np.isfinite(values).all(axis=2) & np.isfinite(leaked[..., 0]) & np.isfinite(honest[..., 0])
    bars = np.nonzero(rows)[0]
    ret_5 = values[..., names.index("ret_5")][rows]
    assert information_coefficient(ret_5, leaked[..., 0][rows], bars) > 0.99     # rank IC near 1
    assert abs(information_coefficient(ret_5, honest[..., 0][rows], bars)) < 0.1
    assert feature_label_check(values[rows], honest[..., 0][rows], names) == []
    assert any("ret_5" in p for p in feature_label_check(values[rows], leaked[..., 0][rows], names))


def test_relevance_grades_within_each_query():
    y = np.array([0.3, -0.1, 0.2, 0.0, 5.0, 1.0, 2.0, 3.0, 4.0, -9.0])
    query = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    grades = relevance_grades(y, query, 3)
    assert grades[:4].tolist() == [2, 0, 2, 1]            # percentile ranks 1, .25, .75, .5 in thirds
    assert grades[4:].tolist() == [2, 0, 1, 1, 2, 0]
    assert grades.min() == 0 and grades.max() == 2


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_tree_rankers_order_the_rows_of_a_bar_and_save(tmp_path, name):
    cfg = small_models_cfg(**{"ranking.objective": "rank", "ranking.ndcg_at": 5})
    rng = np.random.default_rng(0)
    bars, n, features = 80, 30, 6
    X = rng.normal(size=(bars * n, features)).astype(np.float32)
    query = np.repeat(np.arange(bars), n)
    shuffle = rng.permutation(len(X))                       # rows need not come grouped
    X, query = X[shuffle], query[shuffle]
    y = np.column_stack([X[:, 0] + rng.normal(size=len(X)), -X[:, 1] + rng.normal(size=len(X))])
    train, test = query < 60, query >= 60
    plugin = make_plugin(name, cfg, seed=3, base=True)
    assert plugin.objective in ("rank", "lambdarank")
    plugin.fit(X[train], y[train], X_val=X[test], y_val=y[test], query=query[train], query_val=query[test])
    score = plugin.predict(X[test])
    assert score.shape == (int(test.sum()), 2)
    for k in (0, 1):
        ic = information_coefficient(score[:, k], y[test][:, k], query[test])
        assert ic > 0.4
    plugin.save(tmp_path / name)
    assert np.array_equal(load_plugin(tmp_path / name).predict(X[test]), score)
    # the timing and stop-loss models stay regressors
    assert make_plugin(name, cfg, seed=3).objective not in ("rank", "lambdarank")
    with pytest.raises(ValueError, match="query"):
        make_plugin(name, cfg, seed=3, base=True).fit(X, y)


def test_an_ensemble_of_rankers_on_rank_labels_predicts_and_calibrates(sample_prices, sample_features):
    cfg = small_models_cfg(base_models=["lightgbm", "xgboost"], **{"labels.kind": "cross_sectional_rank",
                                                                   "ranking.objective": "rank",
                                                                   "xgboost.n_estimators": 40})
    data = panel_data(sample_prices, sample_features[0], cfg)
    t = 600
    predictor = EnsemblePredictor(cfg, seed=1).fit(data, t)
    bars = np.repeat(np.arange(t, t + 20), data.values.shape[1])
    symbols = np.tile(np.arange(data.values.shape[1]), 20)
    ok = np.isfinite(data.close[bars, symbols])
    p = predictor.predict(data, bars[ok], symbols[ok])
    assert np.isfinite(p.expected_return).all() and ((p.prob_up >= 0) & (p.prob_up <= 1)).all()
    # P(outperform): the rank target's sign; the scores still differ across the symbols of a bar
    frame = pd.DataFrame({"bar": p.bars, "s": p.expected_return[:, 0]})
    assert (frame.groupby("bar")["s"].nunique() > 5).all()


def test_the_networks_regress_the_rank_target(sample_prices, sample_features):
    cfg = small_models_cfg(base_models=["dense", "lstm"], **{"labels.kind": "cross_sectional_rank",
                                                             "ranking.objective": "rank"})
    data = panel_data(sample_prices, sample_features[0], cfg)
    predictor = EnsemblePredictor(cfg, seed=1).fit(data, 600)
    n = data.values.shape[1]
    p = predictor.predict(data, np.full(n, 610), np.arange(n))
    assert np.isfinite(p.expected_return).all() and ((p.prob_up >= 0) & (p.prob_up <= 1)).all()
    assert np.abs(p.base).max() < 1.0            # on the rank target's scale, [-0.5, 0.5]
