"""Build the feature engine a run's config describes: the registry for the inputs it has (sector
map, news, macro series) and the engine over its symbols. The strategy, training and
``run.py features`` all start here, so they compute the same features."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from features.engine import FeatureEngine
from features.registry import build_registry
from features.sources import load_macro, load_news

log = logging.getLogger("features")


def engine_from_config(cfg, symbols: Sequence[str]) -> FeatureEngine:
    """``cfg``: the whole ``Config`` (its ``data`` and ``features`` sections are read)."""
    from feeds.loader import load_sector_map

    sectors = load_sector_map(cfg.data.sector_map) if cfg.data.sector_map else None
    if sectors is not None and not any(s in sectors for s in symbols):
        log.info("no symbol of the run is in %s: no sector features", cfg.data.sector_map)
        sectors = None
    news = load_news(cfg.data.news, cfg.features.exchange_timezone) if cfg.data.news else None
    macro = load_macro(cfg.data.macro) if cfg.data.macro else {}
    registry = build_registry(has_news=news is not None, has_macro=sorted(macro) or False,
                              has_sectors=sectors is not None, config=cfg.features)
    log.info("%d features for %d symbols%s%s", len(registry), len(symbols),
             "".join(f", {what}" for what, given in (("sectors", sectors), ("news", news is not None),
                                                     ("macro " + ", ".join(sorted(macro)), macro)) if given),
             f", {len(registry.normalised)} as cross-sectional {registry.normalise}s (features.normalise)"
             if registry.normalise != "none" else "")
    return FeatureEngine(registry, symbols, sectors=sectors, news=news, macro=macro, config=cfg.features)


def output_path(path: str) -> Path:
    """A feature matrix file: ``.csv`` or ``.parquet`` (anything else is the user's error)."""
    from common.errors import UserError

    out = Path(path)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"--out {path}: the feature matrix is written as .csv or .parquet")
    return out
