"""The one typed config: defaults validate, typos fail with their dotted key, overrides apply in order."""
import datetime as dt

import pytest

from common.errors import ConfigError
from config import DEFAULT_PATH, config_hash, load_config, results_config


def write(tmp_path, text):
    path = tmp_path / "my.toml"
    path.write_text(text)
    return path


def test_defaults_hold_the_blueprint_numbers():
    cfg = load_config()
    assert cfg.risk.max_positions == 20
    assert cfg.risk.risk_per_trade == 0.02
    assert cfg.risk.daily_loss_limit == 0.05
    assert cfg.risk.max_position_weight == 0.10
    assert cfg.costs.commission_bps > 0 and cfg.costs.slippage_bps > 0  # costs on by default
    assert cfg.costs.fill == "next_open"
    assert cfg.report.blueprint_targets["win_rate"] == 0.65
    assert cfg.backtest.start is None and cfg.data.news is None  # "" in TOML means unset


def test_unknown_key_names_its_dotted_path_and_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"risk\.max_positon: unknown key \(did you mean max_positions\?\)"):
        load_config(write(tmp_path, "[risk]\nmax_positon = 3\n"))


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"riks: unknown key \(did you mean risk\?\)"):
        load_config(write(tmp_path, "[riks]\nmax_positions = 3\n"))


def test_wrong_type_and_bounds_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"backtest\.cash: .*got 'lots'"):
        load_config(write(tmp_path, "[backtest]\ncash = 'lots'\n"))
    with pytest.raises(ConfigError, match=r"costs\.commission_bps: Input should be greater than or equal to 0"):
        load_config(write(tmp_path, "[costs]\ncommission_bps = -1\n"))
    with pytest.raises(ConfigError, match=r"costs\.fill: "):
        load_config(write(tmp_path, "[costs]\nfill = 'same_bar_close'\n"))


def test_user_file_merges_over_defaults_and_cli_overrides_win(tmp_path):
    path = write(tmp_path, "[backtest]\ncash = 5000.0\nseed = 7\n")
    cfg = load_config(path)
    assert cfg.backtest.cash == 5000.0 and cfg.backtest.seed == 7
    assert cfg.risk.max_positions == 20  # untouched defaults stay
    cfg = load_config(path, {"backtest.cash": 9000.0, "backtest.seed": None})
    assert cfg.backtest.cash == 9000.0 and cfg.backtest.seed == 7  # None: option not given


def test_dates_and_range_check(tmp_path):
    cfg = load_config(overrides={"backtest.start": dt.date(2014, 1, 2)})
    assert cfg.backtest.start == dt.date(2014, 1, 2)
    with pytest.raises(ConfigError, match="start 2015-01-01 is after end 2014-01-01"):
        load_config(write(tmp_path, "[backtest]\nstart = 2015-01-01\nend = 2014-01-01\n"))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[risk\n"))


def test_config_is_frozen_and_hash_is_stable():
    cfg = load_config()
    with pytest.raises(Exception):
        cfg.risk.max_positions = 3
    assert config_hash(cfg) == config_hash(load_config())
    assert config_hash(cfg) != config_hash(load_config(overrides={"backtest.seed": 1}))
    assert DEFAULT_PATH.name == "default.toml"


def test_where_work_runs_or_is_kept_changes_no_recorded_config():
    """The executor and the feature cache's location decide where the work runs or is kept, not what
    it computes: a run on Ray or from the cache records the same config and hash. Storing features
    as float32 changes values, so it counts."""
    base = load_config()
    elsewhere = load_config(overrides={"executor.kind": "ray", "executor.address": "10.0.0.1:6379",
                                       "features.cache": False, "features.cache_dir": "/tmp/x"})
    assert results_config(elsewhere) == results_config(base) and config_hash(elsewhere) == config_hash(base)
    assert "executor" not in results_config(base) and "cache_dtype" in results_config(base)["features"]
    assert config_hash(load_config(overrides={"features.cache_dtype": "float32"})) != config_hash(base)
