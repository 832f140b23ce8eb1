"""Causal features from one registry, computed in batch (training, backtests) or bar by bar (live).

``build_registry`` lists the active features for a context; ``FeatureEngine`` evaluates them
(``batch`` over a history, ``stream`` one bar at a time) with identical results;
``engine_from_config(cfg, symbols)`` builds both from a run's config (sector map, news, macro),
``registry_from_config(cfg)`` the registry alone;
``features.cache.batch_panel`` is a run's batch through the feature cache on disk. Pure Python: no
Backtrader, no broker (``indicators.feature_hub`` carries the engine into Backtrader).
"""
from features.engine import FeatureEngine, FeaturePanel, FeatureStream
from features.from_config import engine_from_config, registry_from_config
from features.registry import Registry, build_registry, feature

__all__ = ["build_registry", "engine_from_config", "FeatureEngine", "FeaturePanel", "FeatureStream", "Registry",
           "feature", "registry_from_config"]
