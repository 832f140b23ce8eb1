"""Keys come from the environment or .env and never appear in a log line, an error or a file."""
import logging
import os
import signal
import subprocess
import sys

import pytest

import run
from brokers.alpaca.credentials import KEY_VAR, SECRET_VAR, RedactingFilter, load_credentials, protect_logging
from brokers.alpaca.local_server import AlpacaTestServer
from common.errors import UserError
from tests.live.harness import ROOT, Deployment, processed_bar, wait_for

KEY, SECRET = "PKPLANTED7Q2X9ABCDEF", "planted-secret-Zx81Qm-do-not-leak"


def test_keys_from_the_environment_then_a_dotenv_file(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)
    monkeypatch.delenv(SECRET_VAR, raising=False)
    with pytest.raises(UserError, match=f"set {KEY_VAR} and {SECRET_VAR}"):
        load_credentials(tmp_path / ".env")
    (tmp_path / ".env").write_text(f"{KEY_VAR}={KEY}\n{SECRET_VAR}={SECRET}\n")
    credentials = load_credentials(tmp_path / ".env")
    assert credentials.secrets == (KEY, SECRET) and SECRET not in repr(credentials)
    assert KEY_VAR not in os.environ  # the environment is left alone


def test_no_keys_is_one_line_and_exit_status_2(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(KEY_VAR, raising=False)
    monkeypatch.delenv(SECRET_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert run.main(["live"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and KEY_VAR in err and SECRET_VAR in err


def test_log_lines_and_tracebacks_are_redacted():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter([KEY, SECRET]))
    logger = logging.getLogger("test.secrets")
    logger.addHandler(handler)
    try:
        logger.error("auth with %s failed", SECRET)
        try:
            raise RuntimeError(f"headers {{'APCA-API-SECRET-KEY': '{SECRET}'}}")
        except RuntimeError:
            logger.exception("request failed for key %s", KEY)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert SECRET not in text and KEY not in text and text.count("***") == 3 and "RuntimeError" in text


def test_protect_logging_covers_every_root_handler():
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        protect_logging([SECRET])
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    finally:
        root.removeHandler(handler)


@pytest.mark.slow
def test_planted_secret_is_in_no_file_and_no_log_line(tmp_path):
    """A live session (with a rejection and a dropped connection, at debug level) and a replay, run with
    planted keys: neither key appears in any byte they print or write (logs, records, journal)."""
    with AlpacaTestServer(key_id=KEY, secret_key=SECRET, commission_bps=1.0, slippage_bps=5.0) as server:
        deployment = Deployment(server, tmp_path, live=10)
        env = {**os.environ, KEY_VAR: KEY, SECRET_VAR: SECRET, "PYTHONPATH": str(ROOT)}
        out = open(tmp_path / "live-output.txt", "w")
        process = subprocess.Popen([sys.executable, "run.py", "-v", "live", "--config", str(deployment.config_path)],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: server.connected() == (1, 1), timeout=60, what="the live process")
        server.reject_next("insufficient buying power")
        for i, group in enumerate(deployment.live):
            if i == 5:
                server.drop_streams()
                wait_for(lambda: server.connected() == (1, 1), timeout=15, what="a reconnect")
            server.push(group)
            when = max(b.datetime for b in group.values())
            wait_for(lambda: (processed_bar(deployment.journal_path, "t-momentum_breakout") or when.min) >= when,
                     what=f"bar {when}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    replay = subprocess.run([sys.executable, "run.py", "-v", "live", "--replay", "data/sample/AAPL_data.csv",
                             "--strategy", "momentum_breakout", "--out", str(tmp_path / "replay"), "--no-plot"],
                            cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert replay.returncode == 0
    (tmp_path / "replay-output.txt").write_bytes(replay.stdout + replay.stderr)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "live.log" for p in written) and any(p.name == "journal.sqlite" for p in written)
    assert "broker rejected order" in (deployment.state / "live.log").read_text()
    for path in written:
        data = path.read_bytes()
        assert KEY.encode() not in data and SECRET.encode() not in data, path
