"""``run.py live`` as a trader meets it: paper by default, real money only when confirmed, and every
error one line with exit status 2, no traceback, no secret."""
from pathlib import Path

import pytest

import run
from brokers.alpaca.credentials import KEY_VAR, SECRET_VAR
from cli.live import CONFIRMATION
from config import load_config
from engine.live import check_warmup_bars, warmup_needed
from strategies import get_strategy
from tests.live.harness import unreachable_broker_config

SECRET = "cli-planted-secret-9Qx"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_VAR, "PKCLITEST0001")
    monkeypatch.setenv(SECRET_VAR, SECRET)
    monkeypatch.chdir(tmp_path)
    return unreachable_broker_config(tmp_path)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("phrase", [None, "yes"])
def test_real_money_needs_the_exact_confirmation(keys, capsys, phrase):
    args = ["live", "--config", str(keys), "--live-money"] + (["--confirm-live-money", phrase] if phrase else [])
    assert run.main(args) == 2
    line = one_line_error(capsys)
    assert "--live-money not confirmed" in line and CONFIRMATION in line


def test_unreachable_broker_is_retried_then_one_clear_line(keys, capsys):
    assert run.main(["live", "--config", str(keys), "--strategy", "momentum_breakout"]) == 2
    line = one_line_error(capsys)
    assert line == "error: Alpaca unreachable (account at 127.0.0.1:9): no connection after 2 attempts"
    assert SECRET not in capsys.readouterr().err


def test_a_warmup_shorter_than_the_features_need_is_refused_before_connecting(keys, capsys):
    """The first live bar must see every feature warmed up, as the backtest's does: a shorter
    ``live.warmup_bars`` is one line naming the key and the value needed, before any request."""
    keys.write_text(keys.read_text().replace("[live]\n", "[live]\nwarmup_bars = 300\n"))
    needed, who = warmup_needed(load_config(keys), get_strategy("momentum_breakout"))
    assert run.main(["live", "--config", str(keys), "--strategy", "momentum_breakout"]) == 2
    assert one_line_error(capsys) == (f"error: live.warmup_bars = 300 is too short: {who} needs {needed} bars of "
                                      f"history before the first live bar; set live.warmup_bars to at least {needed}")
    assert needed >= 302 and who.startswith("the feature ")  # the longest feature warm-up (rsi_30 today)


def test_an_ml_warmup_too_short_for_its_own_training_is_refused_in_one_line(keys, capsys):
    """Without --model, ``ml`` trains before its first prediction (tests/live/test_warmup_check.py):
    the default warm-up is refused before connecting, naming both ways out."""
    assert run.main(["live", "--config", str(keys), "--strategy", "ml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and "unreachable" not in "\n".join(err)
    assert err[-1].startswith("error: live.warmup_bars = 320 is too short: the strategy ml (training its own model")
    assert err[-1].endswith("or trade a registry model with --model NAME (trained with `python run.py train --out "
                            "models/registry/NAME`)")

def test_the_default_warmup_covers_every_feature_and_strategy():
    """... except the ML strategies' own first training (tests/live/test_warmup_check.py)."""
    cfg = load_config()
    check_warmup_bars(cfg, get_strategy("momentum_breakout"))
    for name in ("ml", "ml_equal_weight"):
        check_warmup_bars(cfg, get_strategy(name), model="trained@0123456789ab")
    assert cfg.live.warmup_bars >= warmup_needed(cfg, get_strategy("momentum_breakout"))[0]


def test_an_unknown_model_is_one_line(capsys):
    assert run.main(["live", "--replay", "data/sample/AAPL_data.csv", "--model", "no-such-model"]) == 2
    assert "no-such-model: not a model folder" in one_line_error(capsys)


def test_a_model_for_a_strategy_that_trades_none_is_one_line(capsys):
    assert run.main(["live", "--replay", "data/sample/AAPL_data.csv", "--strategy", "momentum_breakout",
                     "--model", "any"]) == 2
    assert "--model any: the strategy momentum_breakout trades no models" in one_line_error(capsys)


def test_a_model_trained_on_other_features_is_refused(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "models" / "registry" / "old"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"feature_names": ["ret_1", "ret_2"], "feature_registry_hash": "x"}')
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\nsector_map = "{ROOT / "data" / "sectors.csv"}"\n')
    monkeypatch.chdir(tmp_path)  # models/registry/ is found from the working folder
    sample = str(ROOT / "data" / "sample" / "AAPL_data.csv")
    assert run.main(["live", "--replay", sample, "--config", str(config), "--model", "old"]) == 2
    assert "--model old: trained on other features than the code computes" in one_line_error(capsys)


def test_replay_speed_must_not_be_negative(capsys):
    assert run.main(["live", "--replay", "data/sample/AAPL_data.csv", "--speed", "-1"]) == 2
    assert "--speed" in one_line_error(capsys)
