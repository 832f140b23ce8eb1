"""The ML trading plan through the live path with a registry model: ``run.py train`` then
``run.py live --replay ... --model NAME``; every prediction reaches the journal with the model's id."""
import json
import shutil
import uuid

import pytest
from sqlalchemy import create_engine, text

import run
from models.registry import REGISTRY_ROOT
from tests.strategies.test_train_cli import SMALL_TOML as SMALL_MODELS_TOML

pytestmark = pytest.mark.slow

SMALL_TOML = SMALL_MODELS_TOML + "[backtest]\nprogress = false\n"
FILES = ["data/sample/AAPL_data.csv", "data/sample/KO_data.csv", "data/sample/XOM_data.csv"]


@pytest.fixture
def model(tmp_path):
    name = f"test-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    data = [arg for path in FILES for arg in ("--data", path)]
    assert run.main(["train", *data, "--config", str(config), "--end", "2016-12-30",
                     "--out", str(REGISTRY_ROOT / name)]) == 0
    yield name, config
    shutil.rmtree(REGISTRY_ROOT / name, ignore_errors=True)


def test_replay_trades_a_registry_model_and_journals_its_predictions(model, tmp_path, capsys):
    name, config = model
    out = tmp_path / "replay"
    replay = [arg for path in FILES for arg in ("--replay", path)]
    assert run.main(["live", *replay, "--strategy", "ml", "--model", name, "--config", str(config),
                     "--out", str(out), "--no-plot"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "replay" and metrics["strategy"] == "ml"
    with create_engine(f"sqlite:///{out / 'journal.sqlite'}").connect() as conn:
        rows = conn.execute(text("select model_id, symbol, \"values\" from predictions")).fetchall()
    assert len(rows) > 1000 and {r[0].split("@")[0] for r in rows} == {name}
    assert {r[1] for r in rows} == {"AAPL", "KO", "XOM"}
    values = json.loads(rows[0][2]) if isinstance(rows[0][2], str) else rows[0][2]
    assert {"confidence", "expected_return", "stop_distance", "regime"} <= set(values)
    # a model trained on another universe is refused, in one line
    capsys.readouterr()
    assert run.main(["live", "--replay", FILES[0], "--strategy", "ml", "--model", name, "--config", str(config),
                     "--out", str(tmp_path / "other")]) == 2
    assert "trained on the symbols" in capsys.readouterr().err
