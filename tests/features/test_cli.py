"""``python run.py features``: the feature matrix as CSV or parquet, equal to the engine's batch."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import run
from features.from_config import engine_from_config
from config import load_config
from feeds.loader import load_universe
from tests.features.helpers import ROOT

FILES = [str(ROOT / "data" / "sample" / f"{s}_data.csv") for s in ("AAPL", "PYPL")]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_writes_the_same_matrix_as_the_engine(tmp_path, suffix, capsys):
    out = tmp_path / f"features{suffix}"
    assert run.main(["features", "--data", FILES[0], "--data", FILES[1], "--out", str(out)]) == 0
    written = pd.read_csv(out, index_col="datetime", parse_dates=True) if suffix == ".csv" else pd.read_parquet(out)
    cfg = load_config(None, {"data.paths": FILES})
    bars = load_universe(FILES)
    expected = engine_from_config(cfg, list(bars)).batch(bars).to_frame()
    assert list(written.columns) == list(expected.columns) and written["symbol"].tolist() == expected["symbol"].tolist()
    assert (written.index == expected.index).all()
    values = expected.columns[1:]
    assert_allclose(written[values].to_numpy(np.float64), expected[values].to_numpy(), rtol=1e-12, equal_nan=True)
    assert f"{len(expected)} rows" in capsys.readouterr().out


def test_other_extensions_are_a_user_error(tmp_path, capsys):
    assert run.main(["features", "--data", FILES[0], "--out", str(tmp_path / "f.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
