"""A replay run of the sample data, made by the real code once per session: its folder is what the
dashboard reads as a finished run, its journal what it reads as a live session's."""
from pathlib import Path

import pytest

import run

SAMPLE = ["data/sample/AAPL_data.csv", "data/sample/JPM_data.csv", "data/sample/XOM_data.csv"]


@pytest.fixture(scope="session")
def replay_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dashboard") / "replay"
    replay = [arg for path in SAMPLE for arg in ("--replay", path)]
    assert run.main(["live", *replay, "--strategy", "momentum_breakout", "--out", str(out), "--no-plot"]) == 0
    return out
