"""Build the feature engine a run's config describes: the registry for the inputs it has (sector
map, news, macro series) and the engine over its symbols. The strategy, training, ``run.py
features`` and a live start's warm-up count all start here, so they agree on the features."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from features.engine import FeatureEngine
from features.registry import Registry, build_registry
from features.sources import load_macro, load_news, macro_name

log = logging.getLogger("features")


def registry_from_config(cfg, symbols: Sequence[str] | None = None) -> Registry:
    """The features a run of ``cfg`` computes (the one features context: the engine, a strategy's
    warm-up and a live start's history count all read it): news, macro and sector features as its
    ``data`` section configures them. ``symbols``: the run's symbols, where known; the sector map is
    then read, and the sector features dropped when none of them is in it (without symbols no file
    is read)."""
    has_sectors = bool(cfg.data.sector_map) if symbols is None else _sector_map(cfg, symbols) is not None
    return _registry(cfg, has_sectors)


def engine_from_config(cfg, symbols: Sequence[str]) -> FeatureEngine:
    """``cfg``: the whole ``Config`` (its ``data`` and ``features`` sections are read)."""
    sectors = _sector_map(cfg, symbols)
    news = load_news(cfg.data.news, cfg.features.exchange_timezone) if cfg.data.news else None
    if news is not None:
        _check_news_symbols(cfg.data.news, news, symbols)
    macro = load_macro(cfg.data.macro) if cfg.data.macro else {}
    registry = _registry(cfg, sectors is not None)
    log.info("%d features for %d symbols%s%s", len(registry), len(symbols),
             "".join(f", {what}" for what, given in (("sectors", sectors), ("news", news is not None),
                                                     ("macro " + ", ".join(sorted(macro)), macro)) if given),
             f", {len(registry.normalised)} as cross-sectional {registry.normalise}s (features.normalise)"
             if registry.normalise != "none" else "")
    return FeatureEngine(registry, symbols, sectors=sectors, news=news, macro=macro, config=cfg.features)


def _check_news_symbols(path, news, symbols: Sequence[str]) -> None:
    """The headlines of symbols outside the run are ignored (a warning names them and counts their
    rows); a file whose headlines are all of other symbols is an error (the wrong file or universe); one
    with no headline at all only a warning (a replayed live session may have had none)."""
    from common.errors import DataError

    counts = news["symbol"].value_counts()
    unknown = counts[~counts.index.isin(list(symbols))].sort_index()
    if len(news) and len(unknown) == len(counts):
        raise DataError(path, f"no headline of the run's {len(symbols)} symbols (the file has "
                              f"{_listed(unknown.index)})")
    if not len(news):
        log.warning("%s: no headlines (the news features count none)", path)
    if len(unknown):
        log.warning("%s: %d headline rows of %d symbols not in the run ignored: %s", path, int(unknown.sum()),
                    len(unknown), _listed(f"{symbol} ({count})" for symbol, count in unknown.items()))


def _listed(items, most: int = 10) -> str:
    items = list(items)
    return ", ".join(map(str, items[:most])) + (f" and {len(items) - most} more" if len(items) > most else "")


def _registry(cfg, has_sectors: bool) -> Registry:
    # the macro series are named after their files (``load_macro`` names them the same way)
    return build_registry(has_news=bool(cfg.data.news), has_sectors=has_sectors,
                          has_macro=sorted(macro_name(path) for path in cfg.data.macro) or False,
                          config=cfg.features)


def _sector_map(cfg, symbols: Sequence[str]) -> dict | None:
    """The sector map, or None when none is configured or none of ``symbols`` is in it."""
    from feeds.loader import load_sector_map

    sectors = load_sector_map(cfg.data.sector_map) if cfg.data.sector_map else None
    if sectors is not None and not any(s in sectors for s in symbols):
        log.info("no symbol of the run is in %s: no sector features", cfg.data.sector_map)
        sectors = None
    return sectors


def output_path(path: str) -> Path:
    """A feature matrix file: ``.csv`` or ``.parquet`` (anything else is the user's error)."""
    from common.errors import UserError

    out = Path(path)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"--out {path}: the feature matrix is written as .csv or .parquet")
    return out
