"""A registry model for the benchmarks that trade the ``ml`` plan bar by bar: the ensemble fitted once,
as ``run.py train`` saves its last fit."""
from __future__ import annotations

import time


def fit_registry_model(cfg, frames: dict, name: str) -> str:
    """Fit the ensemble of ``cfg`` once at the last bar of ``frames`` ({symbol: OHLCV frame};
    ``WalkForward.retrain``) and save it as registry model ``name`` (``models/registry/NAME``, relative
    to the working directory); returns a one-line summary."""
    from config import config_hash
    from features.from_config import engine_from_config
    from models import registry
    from models.dataset import panel_data_from_bars
    from models.walkforward import WalkForward

    start = time.perf_counter()
    symbols = sorted(frames)
    engine = engine_from_config(cfg, symbols)
    panel, data = panel_data_from_bars(engine, frames, cfg.models)
    walk = WalkForward(cfg.models, cfg.backtest.seed)
    walk.retrain(data, data.n_bars - 1)
    p = walk.predictor
    registry.save(p, registry.REGISTRY_ROOT / name, feature_names=panel.names,
                  feature_registry_hash=engine.registry.hash(), config_hash=config_hash(cfg), symbols=symbols,
                  training_range=(data.time_of(p.train_bars_range[0]), data.time_of(p.train_bars_range[1])))
    return (f"model {name}: {', '.join(p.base_names)} fitted on {p.n_train} samples, {len(panel.names)} features, "
            f"in {time.perf_counter() - start:.1f} s")
