"""The command line as a trader meets it: outputs of a run, --help, and bad input as one clear line."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import run

ROOT = Path(__file__).resolve().parents[1]
# the baseline strategy keeps these runs fast; tests/strategies run the ML strategies
SMALL = ["--data", "data/sample/AAPL_data.csv", "--data", "data/sample/JPM_data.csv",
         "--data", "data/sample/XOM_data.csv", "--strategy", "momentum_breakout"]


@pytest.mark.parametrize("command", list(run.COMMANDS))
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out


@pytest.mark.slow
def test_backtest_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert run.main(["backtest", *SMALL, "--out", str(out), "--seed", "3", "--cash", "50000"]) == 0
    for name in ("metrics.json", "orders.csv", "trades.csv", "positions.csv", "equity.csv", "report.html",
                 "equity.png", "monthly_returns.png", "chart.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "avg_win_loss_ratio",
                "n_trades", "max_drawdown_duration_days", "expectancy", "sqn", "avg_holding_days", "exposure",
                "turnover", "costs_paid"):
        assert key in metrics, key
    assert metrics["buy_and_hold"]["total_return"] is not None
    assert metrics["symbols"] == ["AAPL", "JPM", "XOM"] and metrics["seed"] == 3
    assert metrics["config"]["backtest"]["cash"] == 50000.0
    assert set(metrics["data_range"]) == {"start", "end", "bars"}
    equity = pd.read_csv(out / "equity.csv")
    assert equity["equity"].iloc[0] == 50000.0
    page = (out / "report.html").read_text()
    assert "Past results do not predict future ones" in page
    assert "Blueprint target" in page and "data:image/png;base64," in page
    assert (out / "equity.png").read_bytes()[:4] == b"\x89PNG"
    assert "results in" in capsys.readouterr().out


@pytest.mark.slow
def test_same_command_twice_gives_identical_metrics(tmp_path):
    for name in ("a", "b"):
        assert run.main(["backtest", *SMALL, "--out", str(tmp_path / name), "--no-plot"]) == 0
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert not (tmp_path / "a" / "chart.png").exists()


def bad_file(tmp_path, text, name="BAD.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD_ROWS = "date,open,high,low,close,volume\n" + "".join(
    f"2020-01-{d:02d},10,11,9,10.5,100\n" for d in range(1, 29))

BAD_INPUTS = {
    "empty": ("", "empty"),
    "header only": ("date,open,high,low,close,volume\n", "no data rows"),
    "missing columns": ("date,open,close\n2020-01-02,1,1\n", "missing column"),
    "non-numeric": (GOOD_ROWS.replace("2020-01-05,10,11,9,10.5", "2020-01-05,10,11,9,abc"), "row 6"),
    "impossible date": (GOOD_ROWS.replace("2020-01-07", "2020-02-30"), "row 8"),
    "duplicate timestamps": (GOOD_ROWS.replace("2020-01-04", "2020-01-03"), "duplicate"),
    "non-positive price": (GOOD_ROWS.replace("2020-01-09,10,11,9,10.5", "2020-01-09,10,11,-9,10.5"), "row 10"),
    "high below low": (GOOD_ROWS.replace("2020-01-10,10,11,9,10.5", "2020-01-10,10,8,9,10.5"), "row 11"),
    "close outside range": (GOOD_ROWS.replace("2020-01-11,10,11,9,10.5", "2020-01-11,10,11,9,12"), "row 12"),
    "negative volume": (GOOD_ROWS.replace("2020-01-12,10,11,9,10.5,100", "2020-01-12,10,11,9,10.5,-5"), "row 13"),
    "too few bars": ("date,open,high,low,close,volume\n2020-01-02,10,11,9,10.5,100\n", "warm-up"),
    "not csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    text, expected = BAD_INPUTS[case]
    path = bad_file(tmp_path, text)
    out = tmp_path / "out"
    code = run.main(["backtest", "--data", str(path), "--out", str(out), "--no-plot"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0, err
    assert err.startswith("error: ") and "BAD.csv" in err and expected in err, err
    assert not out.exists()


@pytest.mark.slow
def test_an_untidy_universe_runs_with_invalid_rows_dropped_and_a_recent_listing_skipped(tmp_path, capsys):
    """A bad row stops the run with a message naming the option; with ``data.invalid_rows = "drop"`` the
    row is dropped, a file too short for the warm-up skipped, and both counted in metrics.json."""
    universe = tmp_path / "universe"
    universe.mkdir()
    for symbol in ("AAPL", "XOM"):
        (universe / f"{symbol}_data.csv").write_bytes((ROOT / "data" / "sample" / f"{symbol}_data.csv").read_bytes())
    lines = (ROOT / "data" / "sample" / "JPM_data.csv").read_text().splitlines(keepends=True)
    date, open_, high, low, close, volume, name = lines[100].strip().split(",")
    lines[100] = ",".join([date, open_, str(float(low) - 1), low, close, volume, name]) + "\n"  # high below low
    (universe / "JPM_data.csv").write_text("".join(lines))
    (universe / "NEW_data.csv").write_text("".join(lines[:1] + lines[1:11]).replace("JPM", "NEW"))

    args = ["backtest", "--data", str(universe), "--strategy", "momentum_breakout", "--no-plot"]
    assert run.main([*args, "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert "JPM_data.csv, row 101: high" in err and 'data.invalid_rows = "drop"' in err

    config = tmp_path / "untidy.toml"
    config.write_text('[data]\ninvalid_rows = "drop"\n')
    assert run.main([*args, "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["symbols"] == ["AAPL", "JPM", "XOM"]
    assert metrics["data_quality"]["invalid_rows_dropped"] == {"JPM": {"high below low": 1}}
    assert list(metrics["data_quality"]["symbols_skipped"]) == ["NEW"]
    assert metrics["data_quality"]["symbols_skipped"]["NEW"].startswith("only 10 bars (2013-02-08 to 2013-02-22), ")


def test_missing_data_path_and_unknown_strategy(tmp_path, capsys):
    assert run.main(["backtest", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert run.main(["backtest", "--strategy", "magic", "--out", str(tmp_path / "o")]) == 2
    assert "unknown strategy 'magic'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_config_typo_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[costs]\nslipage_bps = 3\n")
    assert run.main(["backtest", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "costs.slipage_bps: unknown key (did you mean slippage_bps?)" in err and err.count("\n") == 1


def test_real_process_exit_status_and_no_traceback(tmp_path):
    path = bad_file(tmp_path, "date,open,high,low,close,volume\n")
    proc = subprocess.run([sys.executable, "run.py", "backtest", "--data", str(path), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_strategy_help_lists_the_strategies(capsys):
    from strategies import STRATEGIES

    for command in ("backtest", "live"):
        try:
            run.main([command, "--help"])
        except SystemExit:
            pass
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text.split("--strategy NAME", 1)[1] for name in STRATEGIES), (command, text)
