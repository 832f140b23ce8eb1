"""The registry: 200+ features in the blueprint's groups, unique names, stable hash, contexts."""
from __future__ import annotations

from collections import Counter

import pytest

from features import build_registry
from features.docs import PATH, documented_registry, render
from features.registry import default_config


def test_default_run_has_200_features_without_news_or_macro():
    registry = build_registry()
    counts = Counter(registry.groups.values())
    assert len(registry) >= 200
    assert "sentiment" not in counts and "macro" not in counts
    # the blueprint's groups: price ~40, volume ~20, technical ~60, microstructure ~30, cross-sectional ~30
    assert counts["price"] >= 40 and counts["volume"] >= 20 and counts["technical"] >= 55
    assert counts["microstructure"] >= 30 and counts["cross_sectional"] >= 30
    assert counts["volatility"] >= 15 and counts["market"] >= 10 and counts["calendar"] >= 4


def test_news_adds_twenty_sentiment_features():
    counts = Counter(build_registry(has_news=True).groups.values())
    assert counts["sentiment"] >= 20


def test_macro_features_per_named_series():
    registry = build_registry(has_macro=["vix", "dgs10"])
    assert {"macro_vix", "macro_dgs10", "macro_vix_chg_5", "macro_dgs10_z_60"} <= set(registry.names)
    with pytest.raises(ValueError, match="names"):
        build_registry(has_macro=True)


def test_without_sectors_no_sector_features():
    names = build_registry(has_sectors=False).names
    assert not [n for n in names if n.startswith("sector_")]
    assert "cs_rank_ret_20" in names


def test_names_unique_and_readable():
    registry = documented_registry()
    assert len(set(registry.names)) == len(registry)
    assert {"rsi_14", "ret_5", "bb_width_20_2", "macd_12_26_9", "adx_14", "obv_ratio_20"} <= set(registry.names)


def test_hash_is_stable_and_tracks_the_feature_set():
    assert build_registry().hash() == build_registry().hash()
    assert build_registry().hash() != build_registry(has_sectors=False).hash()
    assert build_registry().subset(["rsi_14"]).hash() != build_registry().subset(["rsi_30"]).hash()


def test_warmups_follow_the_formula():
    registry = build_registry()
    assert registry.warmup("ret_5") == 5 and registry.warmup("sma_20") == 19
    assert registry.warmup("dist_high_252") == 251
    # RSI 14: the first average at bar 14, then Wilder's seed weight (13/14)^k below the tolerance
    assert 100 < registry.warmup("rsi_14") < 160
    assert registry.max_warmup <= 320  # usable on five years of daily bars


def test_seed_tolerance_sets_recursive_warmups():
    strict = default_config().model_copy(update={"seed_tolerance": 1e-8})
    assert build_registry(config=strict).warmup("rsi_14") > build_registry().warmup("rsi_14")
    assert build_registry(config=strict).warmup("sma_20") == 19


def test_registry_is_ordered_and_not_changed_through_its_lists():
    registry = build_registry()
    assert registry.names == build_registry().names
    registry.names.append("extra")
    registry.groups["rsi_14"] = "price"
    assert "extra" not in registry.names and registry.groups["rsi_14"] == "technical"


def test_docs_are_up_to_date():
    assert PATH.read_text() == render(documented_registry(), default_config().seed_tolerance), \
        "docs/features.md is stale: run `python -m features.docs`"
