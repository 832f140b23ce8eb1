"""Shared fixtures: real sample bars of eight symbols (PYPL starts in July 2015; KO loses three
bars in 2017), the sector map, the news fixture and a macro series, and the full-context registry
(sectors, news and macro) evaluated once in batch and once bar by bar."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import FeatureEngine
from features.sources import load_macro, load_news
from feeds.loader import load_sector_map, load_universe
from tests.features.helpers import (DATA, DELETED_KO_BARS, ROOT, SYMBOLS, TIMEZONE, full_registry,
                                    stream_panel)

@pytest.fixture(scope="session")
def sample_bars() -> dict[str, pd.DataFrame]:
    bars = load_universe([ROOT / "data" / "sample" / f"{s}_data.csv" for s in SYMBOLS])
    ko = bars["KO"]
    bars["KO"] = ko.drop(ko.index[list(DELETED_KO_BARS)])
    return bars


@pytest.fixture(scope="session")
def sectors() -> dict[str, str]:
    return load_sector_map(ROOT / "data" / "sectors.csv")


@pytest.fixture(scope="session")
def news() -> pd.DataFrame:
    return load_news(DATA / "news.csv", TIMEZONE)


@pytest.fixture(scope="session")
def macro(tmp_path_factory) -> dict[str, pd.Series]:
    """A synthetic VIX-like daily series (seeded random walk; there is no real VIX file in the
    repository), written as CSV and read back through the loader."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2013-01-02", "2018-02-09")
    level = np.exp(np.log(14.0) + np.cumsum(rng.normal(0, 0.05, len(days))))
    path = tmp_path_factory.mktemp("macro") / "VIX.csv"
    pd.DataFrame({"DATE": days.strftime("%Y-%m-%d"), "VIXCLS": level.round(2)}).to_csv(path, index=False)
    return load_macro([path])


@pytest.fixture(scope="session")
def engine_options(sectors, news, macro) -> dict:
    return {"sectors": sectors, "news": news, "macro": macro}


@pytest.fixture(scope="session")
def registry():
    return full_registry()


@pytest.fixture(scope="session")
def engine(registry, sample_bars, engine_options) -> FeatureEngine:
    return FeatureEngine(registry, list(sample_bars), **engine_options)


@pytest.fixture(scope="session")
def panel(engine, sample_bars):
    return engine.batch(sample_bars)


@pytest.fixture(scope="session")
def streamed(engine, sample_bars, panel) -> np.ndarray:
    return stream_panel(engine, sample_bars, panel.times)
