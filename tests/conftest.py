"""Fixtures for the whole suite."""
from __future__ import annotations

import pytest

from features.cache import FeatureCache


@pytest.fixture(autouse=True, scope="session")
def feature_cache_outside_the_repository(tmp_path_factory):
    """Runs with the default config (``features.cache`` on, ``cache_dir`` relative to the working
    directory) keep their feature cache in a temporary folder of the session, not in the repository.
    A cache given an absolute folder (the cache's own tests) is left where it is."""
    root = tmp_path_factory.mktemp("feature-cache")
    configured = FeatureCache.from_config.__func__

    def from_config(cls, config):
        cache = configured(cls, config)
        if cache is not None and not cache.directory.is_absolute():
            cache = FeatureCache(root / cache.directory, cache.dtype)
        return cache

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeatureCache, "from_config", classmethod(from_config))
        yield root
