"""Alerts from a live deployment against the local Alpaca server, delivered through Apprise to a
loopback webhook receiver: an order the broker rejects gives one alert naming the symbol and the
broker's reason (and one journal row); the dead-man heartbeat is pinged while the session runs.
And ``run.py live`` as a trader runs it: alert URLs from TRADER_ALERT_URLS, a broker unreachable at
start alerted, journaled, without the keys."""
import pytest

import run
from brokers.alpaca.credentials import KEY_VAR, SECRET_VAR
from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal, sqlite_url
from ops.alerts import URLS_ENV, AlertRules, LiveAlerts
from ops.observer import Observers
from tests.live.harness import Deployment, unreachable_broker_config
from tests.webhook_receiver import WebhookReceiver

REASON = "asset XOM is not tradable"


@pytest.mark.slow
def test_a_rejected_order_alerts_once_and_the_heartbeat_pings(tmp_path):
    with WebhookReceiver() as receiver, AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server:
        # the harness's extra text ends the [live] section: [alerts] follows it
        alerts_section = f"""
[alerts]
urls = ["{receiver.apprise_url}"]
heartbeat_url = "{receiver.ping_url}"
heartbeat_seconds = 0.5
check_seconds = 0.05
"""
        deployment = Deployment(server, tmp_path, extra=alerts_section)
        rules = AlertRules.from_config(deployment.config)
        assert rules.urls == (receiver.apprise_url,) and rules.stale_feed_seconds is not None
        # the journal is opened by start(): the sender thread writes to it once it exists
        alerts = LiveAlerts(rules, record=lambda *row: deployment.journal.record_alert(*row),
                            session="t-momentum_breakout", secrets=(server.key_id, server.secret_key))
        try:
            deployment.start(observers=Observers(alerts))
            deployment.push(deployment.live[:4])
            server.reject_next(REASON, symbol="XOM", status=422)
            deployment.push(deployment.live[4:10])
            pings = receiver.wait_for_pings(3)  # while the runner runs and decides bars
            alerts.drain()
            deployment.stop()
        finally:
            if deployment.thread is not None and deployment.thread.is_alive():
                deployment.stop()
            alerts.close()
    rejected = [p for p in receiver.posts if p["title"].endswith("order rejected")]
    assert len(rejected) == 1, receiver.posts
    assert rejected[0]["title"] == "trader t-momentum_breakout: order rejected"
    assert "for XOM rejected by the broker" in rejected[0]["message"] and REASON in rejected[0]["message"]
    assert all(path == "/ping" for path in pings)
    journal = Journal(deployment.journal_url)
    rows = journal.alerts("order_rejected")
    rejected_orders = [o.client_order_id for o in journal.orders() if o.status == "rejected"]
    journal.close()
    assert [(r["rule"], r["delivered"], r["message"]) for r in rows] == \
        [("order_rejected", True, rejected[0]["message"])]
    assert rows[0]["key"] == f"XOM: {REASON}"
    # the entry and its stop leg, refused together: one alert, naming the entry
    assert len(rejected_orders) == 2 and rejected_orders[0] in rows[0]["message"]
    assert not any(secret in str(receiver.posts) for secret in (server.key_id, server.secret_key))


def test_run_py_live_alerts_an_unreachable_broker_from_the_environments_urls(tmp_path, monkeypatch, capsys):
    secret = "cli-planted-secret-7Zy"
    monkeypatch.setenv(KEY_VAR, "PKALERTTEST01")
    monkeypatch.setenv(SECRET_VAR, secret)
    monkeypatch.chdir(tmp_path)
    config = unreachable_broker_config(tmp_path)
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(URLS_ENV, receiver.apprise_url)
        assert run.main(["live", "--config", str(config), "--strategy", "momentum_breakout"]) == 2
        posts = receiver.wait_for_posts(1)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: Alpaca unreachable")
    assert [p["title"] for p in posts] == ["trader momentum_breakout-momentum_breakout: broker unreachable"]
    assert "Alpaca unreachable (account at 127.0.0.1:9): no connection after 2 attempts" in posts[0]["message"]
    journal = Journal(sqlite_url(tmp_path / "state" / "journal.sqlite"))
    rows = journal.alerts()
    journal.close()
    assert [(r["rule"], r["delivered"]) for r in rows] == [("broker_unreachable", True)]
    assert not any(s in str(posts) + str(rows) for s in ("PKALERTTEST01", secret))
