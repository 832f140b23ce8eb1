"""The dashboard's API (FastAPI's TestClient) on what the real code wrote: a replay run's folder (a
finished run, from its records) and its journal (read as a live session's), and its access rules."""
import logging
import shutil

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import run
from brokers.journal import Journal, sqlite_url
from config import load_config
from dashboard.app import CONTROL_HEADER, RESET_CONFIRMATION, SECURITY_HEADERS, Tokens, check_binding, create_app
from dashboard.sources import LiveJournal, RunFolder, open_source

VIEWS = ["overview", "positions", "orders", "risk", "models", "chart", "logs"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(None)


@pytest.fixture
def live_copy(replay_run, tmp_path):
    """The replay's journal copied, so a test may write controls into it."""
    shutil.copy(replay_run / "journal.sqlite", tmp_path / "journal.sqlite")
    return tmp_path


def client(source, cfg, tokens=None):
    return TestClient(create_app(source, cfg, tokens=tokens or Tokens()))


# ---- a finished run --------------------------------------------------------------------------------
def test_a_run_folder_answers_every_view_from_its_records(replay_run, cfg):
    c = client(open_source(cfg, run=replay_run), cfg)
    for view in VIEWS:
        page = c.get("/" if view == "overview" else f"/{view}")
        assert page.status_code == 200 and "momentum_breakout" in page.text
        assert c.get(f"/api/{view}").status_code == 200
    equity = pd.read_csv(replay_run / "equity.csv")
    overview = c.get("/api/overview").json()
    assert overview["state"] == "finished" and overview["stale"] is False and overview["age_seconds"] is None
    assert overview["equity_curve"]["equity"][-1] == pytest.approx(equity["equity"].iloc[-1])
    assert overview["equity_curve"]["equity"][0] == pytest.approx(equity["equity"].iloc[0])
    assert len(overview["equity_curve"]["benchmark"]) == len(overview["equity_curve"]["t"])
    trades = pd.read_csv(replay_run / "trades.csv")
    assert overview["cards"]["n_trades"] == int((trades["exit_reason"] != "end").sum())
    assert [t["key"] for t in overview["targets"]] == list(cfg.report.blueprint_targets)
    orders = pd.read_csv(replay_run / "orders.csv")
    answer = c.get("/api/orders", params={"limit": 1000}).json()
    assert answer["total"] == len(orders) and len(answer["orders"]) == len(orders)
    by_id = {o["id"]: o for o in answer["orders"]}
    bars = pd.read_csv("data/sample/AAPL_data.csv", parse_dates=["date"]).set_index("date")
    filled = orders[(orders["symbol"] == "AAPL") & (orders["status"] == "completed")].iloc[0]
    close = bars.loc[pd.Timestamp(filled["datetime"]), "close"]
    sign = 1 if filled["side"] == "buy" else -1
    assert by_id[filled["client_order_id"]]["slippage_bps"] == pytest.approx(sign * (filled["price"] / close - 1) * 1e4)
    chart = c.get("/api/chart", params={"symbol": "AAPL", "bars": 50}).json()
    assert chart["candles"]["close"][-1] == pytest.approx(bars.loc[:pd.Timestamp(equity["datetime"].iloc[-1]), "close"].iloc[-1])
    assert c.get("/api/chart", params={"symbol": "NOPE"}).status_code == 404
    assert c.post("/api/controls", json={"action": "pause"}).status_code == 403


def test_a_runs_positions_are_those_held_at_its_last_bar(replay_run, cfg):
    source = RunFolder(replay_run, cfg)
    positions = pd.read_csv(replay_run / "positions.csv")
    last = pd.read_csv(replay_run / "equity.csv")["datetime"].iloc[-1]
    held = positions[positions["datetime"] == last]
    answer = client(source, cfg).get("/api/positions").json()
    assert sorted((p["symbol"], p["size"]) for p in answer["positions"]) == sorted(zip(held["symbol"], held["size"]))


# ---- a live journal ----------------------------------------------------------------------------------
def test_a_journal_answers_from_its_tables(replay_run, cfg):
    url = sqlite_url(replay_run / "journal.sqlite")
    source = open_source(cfg, journal=url)
    c = client(source, cfg)
    journal = Journal(url)
    equity = pd.DataFrame(journal.table("equity"))
    overview = c.get("/api/overview").json()
    assert overview["kind"] == "live" and overview["age_seconds"] is not None
    assert overview["equity_curve"]["equity"][-1] == pytest.approx(equity["equity"].iloc[-1])
    orders = journal.orders()
    answer = c.get("/api/orders", params={"limit": 1000}).json()
    assert answer["total"] == len(orders)
    assert {o["id"] for o in answer["orders"]} == {o.client_order_id for o in orders}
    positions = pd.DataFrame(journal.table("positions"))
    last = positions[positions["bar_datetime"] == positions["bar_datetime"].max()]
    if positions["bar_datetime"].max() == equity["bar_datetime"].max():
        expected = sorted(zip(last["symbol"], last["qty"]))
    else:
        expected = []  # flat after the last bar
    assert sorted((p["symbol"], p["size"]) for p in c.get("/api/positions").json()["positions"]) == expected
    bars = pd.DataFrame(journal.table("bars"))
    aapl = bars[bars["symbol"] == "AAPL"].drop_duplicates("bar_datetime").tail(30)
    chart = c.get("/api/chart", params={"symbol": "AAPL", "bars": 30}).json()
    assert chart["candles"]["close"] == pytest.approx(aapl["close"].tolist())
    assert c.get("/api/logs", params={"which": "events"}).json()["lines"]
    journal.close()
    source.close()


def test_a_journal_is_read_incrementally_as_the_session_writes(live_copy, cfg):
    url = sqlite_url(live_copy / "journal.sqlite")
    source = LiveJournal(url, cfg)
    c = client(source, cfg)
    before = c.get("/api/overview").json()["equity_curve"]
    journal = Journal(url)
    last = pd.Timestamp(before["t"][-1]).to_pydatetime()
    later = last + pd.Timedelta(days=1)
    journal.record_bar(later, equity_value=123456.0, cash=123456.0, holdings=[],
                       bars=[("AAPL", later, 1.0, 2.0, 0.5, 1.5, 10.0)])
    after = c.get("/api/overview").json()
    assert after["equity_curve"]["t"][-1] == later.isoformat() and after["cards"]["equity"] == 123456.0
    assert after["age_seconds"] < 60
    chart = c.get("/api/chart", params={"symbol": "AAPL", "bars": 10}).json()
    assert chart["candles"]["close"][-1] == 1.5
    journal.close()
    source.close()


def test_the_models_view_and_positions_read_the_latest_predictions_and_the_status(live_copy, cfg):
    url = sqlite_url(live_copy / "journal.sqlite")
    journal = Journal(url)
    last = max(row["bar_datetime"] for row in journal.table("equity"))
    journal.record_predictions(last, "m@1", [("AAPL", {"confidence": 0.71, "expected_return": 0.01}),
                                             ("XOM", {"confidence": 0.4, "expected_return": -0.02})])
    journal.publish_status("t-momentum_breakout", {
        "state": "trading", "model_id": "m@1", "model_trained_at": "2026-01-02T00:00:00",
        "model_training_window": ["2015-01-02T00:00:00", "2017-12-29T00:00:00"], "calibration_error": 0.031,
        "feature_drift_psi": {f"f{i}": i / 100 for i in range(30)}, "risk_components": {"var": 0.1, "sector": 0.2}})
    c = client(LiveJournal(url, cfg), cfg)
    models = c.get("/api/models").json()
    assert models["model_id"] == "m@1" and models["calibration_error"] == 0.031
    assert models["training_window"] == ["2015-01-02T00:00:00", "2017-12-29T00:00:00"]
    assert models["confidence"]["n"] == 2 and sorted(p["symbol"] for p in models["predictions"]) == ["AAPL", "XOM"]
    assert [d["feature"] for d in models["drift"]] == [f"f{i}" for i in range(29, 19, -1)]
    assert c.get("/api/risk").json()["risk_components"] == {"var": 0.1, "sector": 0.2}
    assert c.get("/api/overview").json()["state"] == "trading"
    assert c.get("/api/positions").status_code == 200
    journal.close()


def test_without_run_or_journal_a_deployments_config_names_the_journal(replay_run, tmp_path):
    cfg = load_config(None, {"live.journal": sqlite_url(replay_run / "journal.sqlite"),
                             "live.state_dir": str(tmp_path)})
    (tmp_path / "live.log").write_text("INFO live: a line of the session\n")
    source = open_source(cfg)
    assert isinstance(source, LiveJournal) and source.logs("session")["lines"] == ["INFO live: a line of the session"]
    source.close()
    cfg = load_config(None, {"live.state_dir": str(replay_run)})  # no journal URL: the state folder's
    assert isinstance(open_source(cfg), RunFolder)  # a replay folder holds records: read as a finished run


def test_a_missing_source_is_one_line_naming_it(tmp_path, capsys):
    assert run.main(["dashboard", "--run", str(tmp_path / "nowhere")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    assert run.main(["dashboard", "--journal", sqlite_url(tmp_path / "none.sqlite")]) == 2
    assert "no journal at" in capsys.readouterr().err


# ---- access -------------------------------------------------------------------------------------------
def test_without_a_token_the_dashboard_reads_and_refuses_controls(live_copy, cfg):
    c = client(LiveJournal(sqlite_url(live_copy / "journal.sqlite"), cfg), cfg)
    assert c.get("/api/overview").status_code == 200
    page = c.get("/")
    assert "read-only" in page.text and 'data-action="pause"' not in page.text
    refused = c.post("/api/controls", json={"action": "pause"}, headers={CONTROL_HEADER: "1"})
    assert refused.status_code == 403 and "control token" in refused.json()["detail"]


def test_tokens_gate_reading_and_controls(live_copy, cfg):
    url = sqlite_url(live_copy / "journal.sqlite")
    c = client(LiveJournal(url, cfg), cfg, Tokens(control="ctl-secret-1", read="read-secret-2"))
    assert c.get("/api/overview").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/healthz").status_code == 200
    moved = c.get("/positions?token=read-secret-2&x=1", follow_redirects=False)
    assert moved.status_code == 303 and "secret" not in moved.headers["location"]
    assert moved.headers["location"] == "/positions?x=1"
    cookie = moved.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    reader = TestClient(c.app, cookies={"dashboard_token": "read-secret-2"})
    assert reader.get("/api/positions").status_code == 200
    assert reader.post("/api/controls", json={"action": "pause"}, headers={CONTROL_HEADER: "1"}).status_code == 403
    controller = TestClient(c.app, headers={"Authorization": "Bearer ctl-secret-1"})
    assert controller.post("/api/controls", json={"action": "pause"}).status_code == 403  # no control header
    asked = controller.post("/api/controls", json={"action": "pause"}, headers={CONTROL_HEADER: "1"})
    assert asked.status_code == 200 and asked.json()["status"] == "pending"
    bad = [({"action": "reset_kill_switch"}, "confirmation"), ({"action": "reset_kill_switch", "confirm": "yes"},
           "confirmation"), ({"action": "flatten", "symbol": "TSLA"}, "not a symbol"), ({"action": "explode"}, "unknown")]
    for body, why in bad:
        answer = controller.post("/api/controls", json=body, headers={CONTROL_HEADER: "1"})
        assert answer.status_code == 422 and why in answer.json()["detail"]
    for body in ({"action": "flatten", "symbol": "aapl"}, {"action": "reset_kill_switch", "confirm": RESET_CONFIRMATION}):
        assert controller.post("/api/controls", json=body, headers={CONTROL_HEADER: "1"}).status_code == 200
    journal = Journal(url)
    pending = journal.pending_controls()
    assert [(p["action"], p["symbol"]) for p in pending] == [("pause", None), ("flatten", "AAPL"),
                                                             ("reset_kill_switch", None)]
    assert all(p["who"].startswith("dashboard ") for p in pending)
    shown = controller.get("/api/controls").json()
    assert shown["allowed"] is True and [c["action"] for c in shown["controls"]][:3] == ["reset_kill_switch", "flatten",
                                                                                           "pause"]
    journal.close()


def test_every_answer_carries_the_security_headers(replay_run, cfg):
    c = client(open_source(cfg, run=replay_run), cfg, Tokens(control="t0ken"))
    for answer in (c.get("/api/overview"), c.get("/", headers={"Authorization": "Bearer t0ken"}),
                   c.get("/static/dashboard.js")):
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value
    assert c.get("/", headers={"Authorization": "Bearer t0ken"}).headers["cache-control"] == "no-store"


def test_binding_beyond_this_machine_needs_a_token(replay_run, capsys, monkeypatch):
    for host in ("127.0.0.1", "localhost", "::1"):
        check_binding(host, Tokens())
    with pytest.raises(ValueError, match="SSH tunnel"):
        check_binding("0.0.0.0", Tokens())
    check_binding("0.0.0.0", Tokens(read="r"))
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("DASHBOARD_READ_TOKEN", raising=False)
    assert run.main(["dashboard", "--run", str(replay_run), "--host", "0.0.0.0"]) == 2
    assert "reachable from other machines" in capsys.readouterr().err


def test_the_token_never_reaches_a_log(replay_run, cfg, caplog, capfd):
    secret = "do-not-log-this-9f3a"
    c = client(open_source(cfg, run=replay_run), cfg, Tokens(control=secret))
    with caplog.at_level(logging.DEBUG):
        c.get(f"/orders?token={secret}")
        c.get("/api/orders", headers={"Authorization": f"Bearer {secret}"})
        c.get("/api/orders", headers={"Authorization": "Bearer wrong"})
    captured = capfd.readouterr()
    server_side = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))  # not the client's
    assert secret not in server_side and secret not in captured.out and secret not in captured.err
    assert "GET /orders 303" in server_side  # the requests were logged, by path


@pytest.mark.slow
def test_run_py_dashboard_serves_and_never_prints_its_token(replay_run, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "cli-token-never-printed-42"
    env = {**os.environ, "DASHBOARD_TOKEN": secret}
    process = subprocess.Popen([sys.executable, "run.py", "dashboard", "--run", str(replay_run), "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and answer is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/overview?token={secret}",
                                                 headers={"Authorization": f"Bearer {secret}"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = response.status
            except OSError:
                time.sleep(0.2)
        assert answer == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output and "controls with the control token" in output
    assert secret not in output
