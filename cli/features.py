"""``python run.py features``: write the feature matrix of some data, computed by the same engine
(``features.from_config.engine_from_config`` then ``features.cache.batch_panel``) the strategy's feature
hub and the model training use, through the same feature cache."""
from __future__ import annotations

import argparse
import logging

import numpy as np

from cli.common import add_config_option, add_data_option, config_from_args, load_data

log = logging.getLogger("features")

CSV_ROWS_PER_CHUNK = 5000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    add_config_option(parser)
    parser.add_argument("--out", required=True, metavar="FILE.csv|FILE.parquet",
                        help="the feature matrix: one row per bar (and symbol), one column per feature")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from features.cache import batch_panel
    from features.from_config import engine_from_config, output_path

    out = output_path(args.out)
    cfg = config_from_args(args)
    bars = load_data(cfg)
    engine = engine_from_config(cfg, list(bars))
    panel = batch_panel(engine, bars, progress=True)
    frame = panel.to_frame()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(out)
    else:
        chunks = range(0, len(frame), CSV_ROWS_PER_CHUNK)
        for start in tqdm(chunks, desc="writing", unit="chunk", leave=False, disable=len(chunks) < 4):
            frame.iloc[start:start + CSV_ROWS_PER_CHUNK].to_csv(out, mode="w" if start == 0 else "a",
                                                               header=start == 0)
    usable = np.isfinite(frame[panel.names].to_numpy()).all(axis=1).sum()
    print(f"{len(frame)} rows x {len(panel.names)} features ({len(bars)} symbols, "
          f"{usable} rows with every feature finite) -> {out}")
    return 0
