"""Cross-sectional normalisation (``features.normalise = "rank" | "zscore"``) on the real sample bars
of eight symbols (conftest: PYPL starts in July 2015, KO loses three bars): the bar-by-bar values
equal the batch's, a normalised value is the rank (z-score) of the raw feature among the symbols with
a value at that bar, the features left alone are unchanged, no value sees the future, warm-ups hold,
and the registry's hash, the lru cache and the feature cache's key tell the options apart."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from common.errors import ConfigError
from features import FeatureEngine, build_registry
from features.cache import FeatureCache
from features.checks import lookahead_violations, warmup_violations
from features.graph import SYMBOL
from features.registry import NORMALISE, Context, collect_definitions, default_config, registry_from_definitions
from tests.features.helpers import MACRO_NAMES, feature_scale, full_registry, stream_panel

KINDS = ("rank", "zscore")
LATE_START = pd.Timestamp("2015-09-01")


def features_config(kind: str):
    return default_config().model_copy(update={"normalise": kind})


def registry_for(kind: str):
    """The conftest's full-context registry (sectors, news, a macro series), normalised by ``kind``."""
    return build_registry(has_news=True, has_macro=list(MACRO_NAMES), has_sectors=True, config=features_config(kind))


@pytest.fixture(scope="module")
def normalised(sample_bars, engine_options):
    """kind -> (engine, batch panel), computed once per kind."""
    done = {}

    def get(kind):
        if kind not in done:
            engine = FeatureEngine(registry_for(kind), list(sample_bars), config=features_config(kind),
                                   **engine_options)
            done[kind] = engine, engine.batch(sample_bars)
        return done[kind]
    return get


# ---- which features, names, warm-ups, hashes ------------------------------------------------------
def test_which_features_are_normalised():
    default = build_registry(config=features_config("rank"))
    raw = build_registry()
    assert len(default) == 238 and len(default.normalised) == 184
    assert raw.normalised == [] and raw.normalise == "none" and default.normalise == "rank"
    by_group = {}
    for f in default:
        by_group.setdefault(f.group, set()).add(f.normalised)
    assert by_group == {"price": {"rank"}, "volume": {"rank"}, "technical": {"rank"}, "volatility": {"rank"},
                        "microstructure": {"rank"}, "cross_sectional": {"none"}, "market": {"none"},
                        "calendar": {"none"}}
    full = registry_for("zscore")
    assert len(full) == 264 and len(full.normalised) == 200
    left_alone = {f.name for f in full if f.group == "sentiment" and f.normalised == "none"}
    assert left_alone == {"mkt_news_count_1", "mkt_sent_1", "mkt_sent_20", "cs_rank_sent_20"}
    assert all(f.normalised == "none" for f in full if f.group == "macro")
    # the rule: a per-symbol value (SYMBOL scope before normalising) outside the cross_sectional group
    plain = full_registry()
    assert full.normalised == [f.name for f in plain if f.node.scope == SYMBOL and f.group != "cross_sectional"]


def test_names_warmups_and_clocks_stay_the_same():
    plain = full_registry()
    for kind in KINDS:
        registry = registry_for(kind)
        assert registry.names == plain.names
        assert [f.warmup for f in registry] == [f.warmup for f in plain]
        assert [f.calendar_clock for f in registry] == [f.calendar_clock for f in plain]


def test_hash_and_registry_cache_follow_the_option():
    hashes = {kind: build_registry(config=features_config(kind)).hash() for kind in NORMALISE}
    assert len(set(hashes.values())) == 3
    assert hashes["none"] == build_registry().hash()  # the default is the raw registry, unchanged
    assert build_registry(config=features_config("rank")) is build_registry(config=features_config("rank"))
    assert build_registry(config=features_config("rank")) is not build_registry(config=features_config("zscore"))
    # a subset keeps the option, and a normalised feature's hash is not its raw one's
    assert build_registry(config=features_config("rank")).subset(["rsi_14"]).hash() != \
        build_registry().subset(["rsi_14"]).hash()
    assert build_registry(config=features_config("rank")).subset(["rsi_14"]).normalise == "rank"


def test_feature_cache_key_differs(engine, normalised, sample_bars, engine_options, tmp_path):
    """The cache never serves raw values for normalised ones (nor ranks for z-scores)."""
    cache = FeatureCache(tmp_path)
    arrays = engine.bar_arrays(sample_bars)
    keys = {cache.key(engine, arrays)} | {cache.key(normalised(kind)[0], arrays) for kind in KINDS}
    assert len(keys) == 3
    # the registry's formulas alone tell them apart, whatever the engine's own settings say
    ranked = FeatureEngine(registry_for("rank"), list(sample_bars), config=default_config(), **engine_options)
    assert cache.key(ranked, arrays) != cache.key(engine, arrays)


def test_unknown_option_is_refused_naming_the_key():
    from config import load_config

    with pytest.raises(ConfigError, match=r"features\.normalise: "):
        load_config(overrides={"features.normalise": "ranks"})
    with pytest.raises(ValueError, match="features.normalise"):
        registry_from_definitions(collect_definitions(), Context(), 1e-4, normalise="percentile")
    assert default_config().normalise == "none"


def test_engine_from_config_threads_the_option():
    """The strategy, ``run.py train``, ``run.py features`` and live build their engine (or registry)
    from the run's config through ``engine_from_config`` / ``build_registry(config=...)``."""
    from config import load_config
    from features.from_config import engine_from_config

    cfg = load_config(overrides={"features.normalise": "zscore"})
    engine = engine_from_config(cfg, ["AAPL", "MSFT"])
    assert engine.registry.normalise == "zscore" and len(engine.registry.normalised) == 184
    assert engine.registry is build_registry(config=cfg.features)


# ---- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_stream_equals_batch(kind, normalised, sample_bars):
    engine, panel = normalised(kind)
    streamed = stream_panel(engine, sample_bars, panel.times)
    differ = []
    for f, name in enumerate(panel.names):
        batch, live = panel.values[:, :, f], streamed[:, :, f]
        close = np.isclose(live, batch, rtol=1e-9, atol=1e-9 * feature_scale(batch), equal_nan=True)
        if not close.all():
            differ.append(f"{name} ({np.count_nonzero(~close)} values)")
    assert not differ, f"{kind}: the bar-by-bar value differs from the batch value: {differ}"


@pytest.mark.parametrize("kind", KINDS)
def test_features_left_alone_are_unchanged(kind, normalised, panel):
    _, normal = normalised(kind)
    registry = registry_for(kind)
    alone = [f for f, feature in enumerate(registry) if feature.normalised == "none"]
    assert len(alone) == 64
    for f in alone:
        assert np.array_equal(normal.data[f], panel.data[f], equal_nan=True), registry.names[f]


def _normalised_pairs(kind, normalised, panel):
    """(name, raw (T, N), normalised (T, N)) of every normalised feature."""
    _, normal = normalised(kind)
    registry = registry_for(kind)
    assert normal.names == panel.names
    return [(f.name, panel.data[k], normal.data[k]) for k, f in enumerate(registry) if f.normalised == kind]


def test_rank_is_the_percentile_rank_of_the_raw_feature(normalised, panel):
    """At each bar, among the symbols with a raw value (NaN elsewhere), in [0, 1], in the raw order:
    pandas' average rank scaled to [0, 1], 0.5 for a symbol alone."""
    pairs = _normalised_pairs("rank", normalised, panel)
    assert len(pairs) == 200
    for name, raw, ranked in pairs:
        assert np.array_equal(np.isnan(ranked), np.isnan(raw)), f"{name}: NaN where the raw value is not"
        assert np.nanmin(ranked) >= 0 and np.nanmax(ranked) <= 1, name
        average = pd.DataFrame(raw).rank(axis=1, method="average").to_numpy()
        count = np.sum(~np.isnan(raw), axis=1, keepdims=True)
        expected = np.where(count > 1, (average - 1) / np.maximum(count - 1, 1), 0.5)
        expected[np.isnan(raw)] = np.nan
        # exactly pandas' ranks, but at bars where values within rounding of each other (1e-12 x the
        # bar's largest |value|, not equal) are ranked as ties
        near = _near_ties(raw)
        assert_allclose(ranked[~near], expected[~near], rtol=0, atol=1e-12, equal_nan=True, err_msg=name)
        # the same order across symbols at every bar: a higher raw value never gets a lower rank
        order = np.argsort(np.where(np.isnan(raw), np.inf, raw), axis=1, kind="stable")
        steps = np.diff(np.take_along_axis(ranked, order, axis=1), axis=1)
        assert not (steps < 0).any(), f"{name}: ranks out of the raw values' order"


def _near_ties(raw: np.ndarray) -> np.ndarray:
    """(T,) bars where two values differ, by at most 1e-12 x the bar's largest |value|."""
    gaps = np.diff(np.sort(raw, axis=1), axis=1)
    scale = np.max(np.where(np.isnan(raw), 0.0, np.abs(raw)), axis=1, keepdims=True)
    return ((gaps > 0) & (gaps <= 1e-12 * scale)).any(axis=1)


def test_zscore_has_mean_0_and_std_1_per_bar(normalised, panel):
    pairs = _normalised_pairs("zscore", normalised, panel)
    assert len(pairs) == 200
    checked = 0
    for name, raw, z in pairs:
        assert np.array_equal(np.isnan(z), np.isnan(raw)), f"{name}: NaN where the raw value is not"
        count = np.sum(~np.isnan(raw), axis=1)
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(raw, axis=1, keepdims=True), np.nanstd(raw, axis=1, keepdims=True)
            scale = np.nanmax(np.abs(raw), axis=1, keepdims=True)
        spread = (std > 1e-12 * scale)[:, 0] & (count >= 2)
        assert_allclose(z[spread], ((raw - mean) / std)[spread], rtol=1e-9, atol=1e-9, equal_nan=True,
                        err_msg=name)
        assert_allclose(np.nanmean(z[spread], axis=1), 0.0, atol=1e-9, err_msg=name)
        assert_allclose(np.nanstd(z[spread], axis=1), 1.0, rtol=1e-9, err_msg=name)
        flat = ~spread & (count >= 1)  # alone, or all equal (within rounding): 0
        assert (z[flat][~np.isnan(z[flat])] == 0).all(), name
        checked += int(spread.sum())
    assert checked > 100_000


def test_a_symbol_alone_gets_the_middle(sample_bars, engine_options):
    """One symbol: every normalised value is 0.5 (rank) or 0 (zscore) once warm, NaN before."""
    bars = {"AAPL": sample_bars["AAPL"].iloc[:400]}
    for kind, middle in (("rank", 0.5), ("zscore", 0.0)):
        registry = build_registry(config=features_config(kind))
        panel = FeatureEngine(registry, ["AAPL"], sectors=engine_options["sectors"]).batch(bars)
        for f, feature in enumerate(registry):
            if feature.normalised != "none":
                values = panel.data[f, :, 0]
                assert np.isnan(values[: feature.warmup]).all(), feature.name
                assert (values[feature.warmup:] == middle).all(), feature.name


# ---- causality and warm-ups -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_no_value_sees_the_future(kind, sample_bars, engine_options):
    """Cut the bars after t, or replace them by random bars: no value at or before t moves (t: mid
    sample, PYPL's first bar, a day KO has no bar)."""
    ko_missing = sample_bars["AAPL"].index.difference(sample_bars["KO"].index)
    cuts = [pd.Timestamp("2014-06-13"), pd.Timestamp("2015-07-06"), ko_missing[0]]
    found = lookahead_violations(registry_for(kind), sample_bars, cuts, engine_options=engine_options)
    assert not found, "\n".join(map(str, found[:10]))


@pytest.mark.parametrize("kind", KINDS)
def test_warm_values_move_only_where_near_tied_raw_values_swap(kind, sample_bars, engine_options, panel):
    """Start the data later: past its warm-up a normalised value moves by at most
    ``features.history_tolerance`` x its mean |value|, except where raw values, each within that
    tolerance of its value on the full data (the raw warm-up test), changed order."""
    tolerance = default_config().history_tolerance
    found = warmup_violations(registry_for(kind), sample_bars, [LATE_START], tolerance, engine_options=engine_options)
    if not found:
        return
    late = {s: f[f.index >= LATE_START] for s, f in sample_bars.items()}
    raw_late = FeatureEngine(full_registry(), list(late), **engine_options).batch(late)
    normalised_names = set(registry_for(kind).normalised)
    for violation in found:
        assert violation.feature in normalised_names, str(violation)
        f = panel.names.index(violation.feature)
        before = panel.values[panel.times.get_loc(violation.time), :, f]
        after = raw_late.values[raw_late.times.get_loc(violation.time), :, f]
        assert np.array_equal(np.isnan(before), np.isnan(after)), str(violation)
        valid = ~np.isnan(before)
        scale = feature_scale(panel.values[:, :, f])
        assert np.all(np.abs(before - after)[valid] <= tolerance * scale), str(violation)
        assert not np.array_equal(np.argsort(before[valid], kind="stable"), np.argsort(after[valid], kind="stable")), \
            f"{violation}: the raw values kept their order"
