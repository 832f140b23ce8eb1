"""One features context: the engine a run computes with, a strategy's warm-up and a live start's
history count all read ``features.from_config.registry_from_config``, so they agree when the run
configures sectors, news and macro series."""
import math

import numpy as np
import pandas as pd
import pytest

from config import load_config
from engine.live import warmup_needed
from features.from_config import engine_from_config, registry_from_config
from strategies import get_strategy
from tests.features.helpers import DATA, ROOT, SYMBOLS


@pytest.fixture(scope="module")
def full_context(tmp_path_factory):
    """A config with a sector map, the news fixture and a macro series (a synthetic VIX-like file)."""
    path = tmp_path_factory.mktemp("macro") / "VIX.csv"
    days = pd.bdate_range("2013-01-02", "2018-02-09")
    pd.DataFrame({"DATE": days.strftime("%Y-%m-%d"), "VIXCLS": np.linspace(12.0, 20.0, len(days)).round(2)}) \
        .to_csv(path, index=False)
    return load_config(overrides={"data.sector_map": str(ROOT / "data" / "sectors.csv"),
                                  "data.news": str(DATA / "news.csv"), "data.macro": [str(path)]})


def test_the_registry_is_that_of_the_engine(full_context):
    engine = engine_from_config(full_context, list(SYMBOLS))
    assert registry_from_config(full_context).hash() == engine.registry.hash()
    assert registry_from_config(full_context, list(SYMBOLS)).hash() == engine.registry.hash()
    names = engine.registry.names
    assert "news_count_1" in names and "sector_rel_ret_5" in names and "macro_vix" in names


def test_no_symbol_in_the_sector_map_no_sector_features(full_context):
    # without the news file: a news file with no headline of the run's symbols is an error
    cfg = full_context.model_copy(update={"data": full_context.data.model_copy(update={"news": None})})
    engine = engine_from_config(cfg, ["NOTASTOCK"])
    assert not any(name.startswith("sector_") for name in engine.registry.names)
    assert registry_from_config(cfg, ["NOTASTOCK"]).hash() == engine.registry.hash()


def test_warmup_counts_are_those_of_the_features_computed(full_context):
    """``MLStrategy.required_bars`` and a live start's warm-up count read the features the engine
    computes (news and macro included), not the default context's."""
    cfg = full_context
    engine = engine_from_config(cfg, list(SYMBOLS))
    own = np.sort(engine.warmups[~engine.calendar_clock])
    k = math.ceil(cfg.models.min_feature_fraction * len(own)) - 1
    ml = get_strategy("ml")
    assert ml.required_bars(cfg) == int(own[max(k, 0)]) + 1
    assert warmup_needed(cfg, ml, model="a-model")[0] == max(int(engine.warmups.max()), ml.required_bars(cfg))
    every = np.sort(engine.warmups)
    enough = next(c for c in range(1, len(every) + 1) if c / len(every) >= cfg.models.min_feature_fraction)
    assert warmup_needed(cfg, ml)[0] == int(every[enough - 1]) + cfg.models.train_bars
