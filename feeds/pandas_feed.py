"""Validated bars (from ``feeds.loader``) into Backtrader data feeds."""
from __future__ import annotations

import pandas as pd

from engine.compat import bt

_TIMEFRAMES = {
    "seconds": bt.TimeFrame.Seconds,
    "minutes": bt.TimeFrame.Minutes,
    "days": bt.TimeFrame.Days,
    "weeks": bt.TimeFrame.Weeks,
    "months": bt.TimeFrame.Months,
}


def bars_to_feed(symbol: str, bars: pd.DataFrame) -> bt.feeds.PandasData:
    """One symbol's bars as a preloadable Backtrader feed named after the symbol.

    Symbols with different start dates or missing days need no padding: Backtrader advances
    each feed only on its own timestamps, and the strategy checks which symbols have a bar now.
    """
    from feeds.loader import infer_bar_interval

    unit, compression = infer_bar_interval(bars.index)
    return bt.feeds.PandasData(
        dataname=bars,
        name=symbol,
        datetime=None,  # the index
        open="open", high="high", low="low", close="close",
        volume="volume", openinterest="openinterest",
        timeframe=_TIMEFRAMES[unit],
        compression=compression,
    )
