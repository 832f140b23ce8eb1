"""The Prometheus exporter of a live deployment against the local Alpaca server, scraped over HTTP:
the account as the journal has it, every bar counted, a rejection, the reconnects of dropped streams."""
import math

import pytest

from brokers.journal import Journal, sqlite_url
from config import load_config
from engine.live import run_replay
from features.from_config import registry_from_config
from feeds.loader import load_universe
from ops.observer import BarSnapshot, Observers, SessionObserver
from strategies import get_strategy
from tests.live.harness import unreachable_broker_config
from tests.live.metrics_session import run_metrics_session, sample
from tests.live.test_ml_replay import model  # noqa: F401 (the fixture: a small registry model)
from tests.strategies.test_train_cli import SMALL_TOML as SMALL_MODELS_TOML

pytestmark = pytest.mark.slow

SMALL_TOML = SMALL_MODELS_TOML + """
[backtest]
progress = false
[ml]
min_confidence = 0.5
min_expected_return = 0.0
"""
FILES = ["data/sample/AAPL_data.csv", "data/sample/KO_data.csv", "data/sample/XOM_data.csv"]


def test_a_live_session_exports_what_the_journal_records(tmp_path):
    session = run_metrics_session(tmp_path)
    families, deployment = session.families, session.deployment
    journal = Journal(sqlite_url(deployment.journal_path))
    try:
        equity = journal.table("equity")
        orders = journal.orders()
    finally:
        journal.close()
    last = max(equity, key=lambda row: row["id"])
    assert sample(families, "trader_equity_dollars") == pytest.approx(last["equity"])
    assert sample(families, "trader_cash_dollars") == pytest.approx(last["cash"])
    # every bar decided (history warm-up and streamed) is counted once, as the journal records each
    assert sample(families, "trader_bars_total") == len(equity) == len(deployment.history) + 12
    assert sample(families, "trader_trading") == 1
    assert sample(families, "trader_entries_halted") == 0

    rejected = [o for o in orders if o.status == "rejected"]
    assert rejected and rejected[0].symbol == session.rejected_symbol
    assert sample(families, "trader_orders_total", status="rejected") >= 1
    assert sample(families, "trader_order_rejections_total") == len(rejected)
    assert sample(families, "trader_orders_total", status="intent") == len(orders)
    assert sample(families, "trader_orders_total", status="filled") == sum(o.status == "filled" for o in orders)

    # scraped after the last bar, when nothing moves: the orders still working are the journal's
    working = [o for o in orders if o.status not in ("intent", "filled", "canceled", "expired", "rejected",
                                                     "replaced", "abandoned")]
    assert sample(families, "trader_open_orders") == len(working) > 0
    for stream in ("trades", "bars"):
        assert sample(families, "trader_reconnects_total", stream=stream) >= 1
    assert sample(families, "trader_broker_errors_total") == 0

    for symbol in ("AAPL", "JPM", "XOM"):
        age = sample(families, "trader_last_bar_age_seconds", symbol=symbol)
        assert 0 <= age < 60  # scraped right after the last bar
    entries = sum(o.parent_client_order_id is None and o.side == "buy" for o in orders)
    latency = sample(families, "trader_bar_to_order_seconds_count")
    assert 0 < latency <= 12  # only streamed bars trade; only bars with orders are timed
    assert entries >= 1
    assert sample(families, "trader_bar_to_order_seconds_bucket", le="+Inf") == latency
    # momentum_breakout has no model and no kill switch: its figures are absent, not zero
    assert math.isnan(sample(families, "trader_calibration_error"))
    assert sample(families, "trader_model_confidence_count") == 0


class Recorder(SessionObserver):
    def __init__(self):
        self.snapshots: list[BarSnapshot] = []

    def bar_decided(self, snapshot):
        self.snapshots.append(snapshot)


@pytest.mark.parametrize("strategy", ["ml", "ml_rank"])
def test_the_ml_plans_report_their_model_and_gates_each_bar(tmp_path, strategy):
    """A replay of the ML plans training their own model: after the first fit each bar's snapshot
    carries the bar's confidences, the model, the drift of every feature against its training rows,
    the gates; once the decision horizon has passed, the calibration error."""
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    cfg = load_config(config, {"backtest.strategy": strategy})
    bars = {s: frame.loc[:"2016-03-31"] for s, frame in load_universe(FILES).items()}
    recorder = Recorder()
    run_replay(cfg, bars, strategy_cls=get_strategy(strategy), journal_dir=tmp_path, observers=Observers(recorder))
    snapshots = recorder.snapshots
    assert len(snapshots) == len(next(iter(bars.values())))  # every bar decided (one calendar)
    modelled = [s for s in snapshots if s.model_id is not None]
    assert modelled and modelled[0].model_id.startswith("walk-forward@")
    assert len({s.model_id for s in modelled}) >= 2  # retrained every models.retrain_every bars
    assert all(s.kill_switch_tripped is False and s.daily_loss_limit_reached in (False, True) for s in modelled)
    assert all(0 < c < 1 for s in modelled for c in s.confidences)
    assert all(len(s.confidences) == 3 for s in modelled)
    drift = modelled[-1].feature_drift_psi
    assert len(drift) == len(registry_from_config(cfg).names) and max(v for v in drift.values() if v == v) > 0
    horizon = cfg.models.decision_horizon
    assert all(s.calibration_error is None for s in modelled[:horizon])
    assert all(0 <= s.calibration_error <= 1 for s in modelled[horizon:])
    assert modelled[-1].model_trained_at.tzinfo is not None


def test_a_metrics_port_in_use_stops_the_start_in_one_line_naming_the_key(tmp_path, monkeypatch, capsys):
    import socket

    import run

    monkeypatch.setenv("APCA_API_KEY_ID", "PKMETRICSTEST01")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "metrics-test-secret")
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = unreachable_broker_config(tmp_path, metrics_port=port)
        assert run.main(["live", "--config", str(config), "--strategy", "momentum_breakout"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"error: live.metrics_port = {port}: cannot serve metrics on 127.0.0.1:{port}")


def test_a_registry_model_is_monitored_against_the_history_before_its_first_prediction(model, tmp_path):
    name, config = model
    cfg = load_config(config, {"backtest.strategy": "ml"})
    bars = {s: frame.loc[:"2016-03-31"] for s, frame in load_universe(FILES).items()}
    recorder = Recorder()
    run_replay(cfg, bars, strategy_cls=get_strategy("ml"), journal_dir=tmp_path, model=f"{name}@test",
               observers=Observers(recorder))
    modelled = [s for s in recorder.snapshots if s.model_id is not None]
    assert modelled and {s.model_id for s in modelled} == {f"{name}@test"}
    assert all(len(s.confidences) == 3 for s in modelled)
    psi = [v for v in modelled[-1].feature_drift_psi.values() if v == v]
    assert len(psi) > 10 and max(psi) > 0  # edges from real history rows, not an empty window
    assert modelled[-1].calibration_error is not None
    assert modelled[0].model_trained_at == modelled[-1].model_trained_at  # the manifest's time


def test_a_request_failing_after_its_retries_is_told_to_the_observers(tmp_path):
    import requests

    from brokers.alpaca.credentials import Credentials
    from brokers.alpaca.store import AlpacaStore
    from brokers.venue import VenueUnavailable

    class Unreachable(SessionObserver):
        def __init__(self):
            self.told = []

        def broker_unreachable(self, what):
            self.told.append(what)

    observer = Unreachable()
    cfg = load_config(overrides={"live.retry_attempts": 2, "live.retry_min_seconds": 0.01,
                                 "live.retry_max_seconds": 0.01})
    store = AlpacaStore(Credentials("PKOBSERVERTEST01", "observer-secret"), cfg.live, observers=Observers(observer))
    calls = []

    def refuse():
        calls.append(1)
        raise requests.ConnectionError("refused")

    with pytest.raises(VenueUnavailable):
        store.call("account", refuse)
    assert len(calls) == 2 and len(observer.told) == 1
    assert observer.told[0].startswith("Alpaca unreachable (account at ") and "after 2 attempts" in observer.told[0]
    assert store.call("account", lambda: 42) == 42 and len(observer.told) == 1  # a success tells nothing
