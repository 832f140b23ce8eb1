"""The benchmarks' data: the first clean tickers of the shared S&P 500 folder (a developer's
checkout has ``../shared/data/sp500_5yr``), else the sample universe shipped in ``data/``."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def source_folder() -> Path:
    shared = ROOT.parent / "shared" / "data" / "sp500_5yr"
    return shared if shared.is_dir() else ROOT / "data" / "sample"


def clean_tickers(min_bars: int) -> Iterator[tuple[str, pd.DataFrame]]:
    """(symbol, bars) of each file, in name order, that loads cleanly (a few vendor files have a
    high below the low) and has at least ``min_bars`` bars."""
    from common.errors import DataError
    from feeds.loader import load_bars

    for path in sorted(source_folder().glob("*.csv")):
        try:
            symbol, frame = load_bars(path)
        except DataError:
            continue
        if len(frame) >= min_bars:
            yield symbol, frame
