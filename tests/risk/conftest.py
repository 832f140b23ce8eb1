"""Real sample data for the risk tests: daily returns of the 28 sample stocks and their sectors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config import load_config

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="session")
def risk_config():
    return load_config().risk


@pytest.fixture(scope="session")
def sample_prices() -> dict[str, pd.DataFrame]:
    frames = {}
    for path in sorted((DATA / "sample").glob("*_data.csv")):
        frame = pd.read_csv(path, parse_dates=["date"]).set_index("date")
        frames[frame["Name"].iloc[0]] = frame
    return frames


@pytest.fixture(scope="session")
def sample_returns(sample_prices) -> pd.DataFrame:
    """Daily close-to-close returns, one column per symbol (PYPL: NaN before 2015-07-07)."""
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in sample_prices.items()})
    return closes.pct_change(fill_method=None).iloc[1:]


@pytest.fixture(scope="session")
def sectors() -> dict[str, str]:
    table = pd.read_csv(DATA / "sectors.csv")
    return dict(zip(table["symbol"], table["sector"]))
