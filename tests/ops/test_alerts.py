"""The alert rules (ops.alerts): each fires from its condition and stays silent without it; the same
alert is sent once per window; beyond the hourly limit alerts are held back and summarised; no secret
leaves; every alert reaches the journal, delivered or not. Time is a clock the tests move; delivery
goes through Apprise to a loopback webhook receiver where the test is about delivery."""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket

import pytest

from brokers.journal import Journal, sqlite_url
from config import load_config
from ops.alerts import HEARTBEAT_ENV, RULES, URLS_ENV, AlertGate, AlertRules, LiveAlerts, alert_urls
from ops.observer import BarSnapshot, Observers
from tests.webhook_receiver import WebhookReceiver

SESSION = "t-momentum_breakout"
START = 1_800_000_000.0  # wall-clock seconds of the tests' clock
BAR = dt.datetime(2027, 1, 14, 10, 0)
MINUTE = dt.timedelta(minutes=1)


class Clock:
    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


def rules(**changes) -> AlertRules:
    """The default [alerts] of a 1Min deployment (every rule on), with ``changes``; no grace before the open."""
    cfg = load_config(None, {"live.timeframe": "1Min"})
    return dataclasses.replace(AlertRules.from_config(cfg, environ={}), **{"open_grace_seconds": 0.0, **changes})


class Harness:
    """LiveAlerts without threads: sent (title, body) and recorded rows in lists."""

    def __init__(self, **changes):
        self.clock = Clock()
        self.sent: list[tuple[str, str]] = []
        self.recorded: list[tuple] = []
        self.pings: list[str] = []
        self.alerts = LiveAlerts(rules(**changes), record=lambda *row: self.recorded.append(row), session=SESSION,
                                 notify=lambda title, body: self.sent.append((title, body)) or True,
                                 ping=lambda url, timeout: self.pings.append(url), clock=self.clock, start=False,
                                 environ={})

    def drained(self) -> list[tuple[str, str]]:
        self.alerts.drain()
        return self.sent

    def rules_recorded(self) -> list[str]:
        self.alerts.drain()
        return [row[1] for row in self.recorded]

    def snapshot(self, bar_datetime=BAR, **fields) -> BarSnapshot:
        values = dict(session=SESSION, bar_datetime=bar_datetime, wall_time=self.clock(), equity=100_000.0,
                      cash=40_000.0, daily_pnl=-150.0, exposure=0.6, open_positions=3, open_orders=2, trading=True)
        return BarSnapshot(**{**values, **fields})

    def bar(self, bar_datetime=BAR, symbols=("AAPL", "JPM"), **fields) -> None:
        """A bar received for ``symbols`` and decided, now."""
        for symbol in symbols:
            self.alerts.bar_received(symbol, bar_datetime, self.clock())
        self.alerts.bar_decided(self.snapshot(bar_datetime, **fields))


@pytest.fixture
def h():
    return Harness()


def test_a_healthy_session_raises_nothing():
    """Bars every minute, orders filled and canceled, a fresh model, features within the threshold:
    every rule on, no alert, and the dead-man service is pinged."""
    h = Harness(heartbeat_url="http://127.0.0.1:9/ping")
    h.alerts.session_started(SESSION, ["AAPL", "JPM"])
    for i in range(30):
        h.clock.t = START + 60 * i
        h.bar(BAR + i * MINUTE, kill_switch_tripped=False, daily_loss_limit_reached=False, model_id="m@1",
              model_trained_at=dt.datetime.fromtimestamp(START, dt.timezone.utc).replace(tzinfo=None)
              - dt.timedelta(days=2), feature_drift_psi={"rsi_14": 0.05, "ret_5": 0.2})
        h.alerts.order_status(f"t-{i}", "AAPL", "new")
        h.alerts.order_status(f"t-{i}", "AAPL", "filled" if i % 2 else "canceled")
        h.alerts.tick(h.clock.t + 30)
    h.alerts.session_ended(SESSION)
    h.alerts.tick(h.clock.t + 10_000)  # after the session: no feed to watch
    assert h.rules_recorded() == [] and h.drained() == []
    # every heartbeat_seconds (300 s) over the 30 minutes, and after the session: the process lives on
    assert len(h.pings) == 7


def test_kill_switch_alerts_when_it_trips_once(h):
    h.bar(kill_switch_tripped=None)
    h.bar(BAR + MINUTE, kill_switch_tripped=False)
    assert h.rules_recorded() == []
    h.bar(BAR + 2 * MINUTE, kill_switch_tripped=True)
    h.bar(BAR + 3 * MINUTE, kill_switch_tripped=True)  # still tripped: the same trip
    assert h.rules_recorded() == ["kill_switch"]
    title, body = h.drained()[0]
    assert SESSION in title and "kill switch" in title
    assert "kill switch tripped" in body and "2027-01-14 10:02:00" in body


def test_kill_switch_tripped_again_after_the_dedup_window_alerts_again(h):
    h.bar(kill_switch_tripped=True)
    h.bar(BAR + MINUTE, kill_switch_tripped=False)
    h.bar(BAR + 2 * MINUTE, kill_switch_tripped=True)  # within the window: a duplicate
    h.clock.t += h.alerts.rules.dedup_seconds
    h.bar(BAR + 3 * MINUTE, kill_switch_tripped=False)
    h.bar(BAR + 4 * MINUTE, kill_switch_tripped=True)
    assert h.rules_recorded() == ["kill_switch", "kill_switch"]


def test_daily_loss_limit_alerts_once_a_day(h):
    h.bar(daily_loss_limit_reached=False)
    h.bar(BAR + MINUTE, daily_loss_limit_reached=None)
    assert h.rules_recorded() == []
    h.bar(BAR + 2 * MINUTE, daily_loss_limit_reached=True, daily_pnl=-2_345.5)
    h.clock.t += 2 * h.alerts.rules.dedup_seconds  # even past the dedup window: once a day
    h.bar(BAR + 3 * MINUTE, daily_loss_limit_reached=True)
    h.bar(BAR + dt.timedelta(days=1), daily_loss_limit_reached=True)
    assert h.rules_recorded() == ["daily_loss_limit", "daily_loss_limit"]
    assert [row[2] for row in h.recorded] == ["2027-01-14", "2027-01-15"]
    assert "-2,345.50" in h.sent[0][1]


def test_stale_feed_alerts_after_stale_seconds_without_a_bar(h):
    stale = h.alerts.rules.stale_feed_seconds
    h.alerts.session_started(SESSION, ["AAPL"])
    h.bar()
    h.alerts.tick(START + stale)  # not yet
    assert h.rules_recorded() == []
    h.alerts.tick(START + stale + 1)
    h.alerts.tick(START + stale + 100)  # still stale: alerted once
    assert h.rules_recorded() == ["stale_feed"]
    assert "no bar received for 301 s" in h.drained()[0][1]


def test_stale_feed_silent_while_bars_arrive_and_outside_sessions(h):
    stale = h.alerts.rules.stale_feed_seconds
    h.alerts.tick(START + 10 * stale)  # no session yet
    h.alerts.session_started(SESSION, ["AAPL"])
    for i in range(20):
        h.clock.t = START + 60 * i
        h.bar(BAR + i * MINUTE)
        h.alerts.tick(h.clock.t + 59)
    h.alerts.session_ended(SESSION)
    h.alerts.tick(h.clock.t + 10 * stale)
    assert h.rules_recorded() == []


def test_stale_feed_waits_for_the_open_and_is_not_watched_on_daily_bars():
    h = Harness(open_grace_seconds=600.0)  # the session started 10 minutes before the open
    stale = h.alerts.rules.stale_feed_seconds
    h.alerts.session_started(SESSION, ["AAPL"])
    h.alerts.tick(START + 600 + stale - 1)  # no bar yet, but the market has been open less than stale seconds
    assert h.rules_recorded() == []
    h.alerts.tick(START + 600 + stale + 1)
    assert h.rules_recorded() == ["stale_feed"]

    daily = Harness(stale_feed_seconds=None)
    daily.alerts.session_started(SESSION, ["AAPL"])
    daily.bar()
    daily.alerts.tick(START + 86_400)
    assert daily.rules_recorded() == []


def test_a_traded_bar_starts_the_stale_watch_before_the_grace_ends():
    h = Harness(open_grace_seconds=600.0)
    stale = h.alerts.rules.stale_feed_seconds
    h.alerts.session_started(SESSION, ["AAPL"])
    h.bar(trading=True)  # a bar traded: the market is open (a restart during the session)
    h.alerts.tick(START + stale + 1)
    assert h.rules_recorded() == ["stale_feed"]


def test_broker_unreachable_alerts_with_what_failed(h):
    h.bar()
    assert h.rules_recorded() == []
    h.alerts.broker_unreachable("POST /v2/orders: ConnectionError after 6 attempts")
    h.alerts.broker_unreachable("GET /v2/account: ConnectionError after 6 attempts")  # the same key: a duplicate
    assert h.rules_recorded() == ["broker_unreachable"]
    assert "POST /v2/orders: ConnectionError" in h.drained()[0][1]


@pytest.mark.parametrize("status", ["intent", "new", "accepted", "partially_filled", "filled", "canceled",
                                    "expired", "replaced"])
def test_order_statuses_other_than_rejected_are_silent(h, status):
    h.alerts.order_status("t-AAPL-1", "AAPL", status)
    assert h.rules_recorded() == []


def test_order_rejected_names_the_symbol_and_the_brokers_reason(h):
    h.alerts.order_status("t-AAPL-1", "AAPL", "rejected", "insufficient buying power")
    h.alerts.order_status("t-JPM-2", "JPM", "rejected", None)
    assert h.rules_recorded() == ["order_rejected", "order_rejected"]
    (_, first), (_, second) = h.drained()
    assert "t-AAPL-1 for AAPL" in first and "insufficient buying power" in first
    assert "JPM" in second and "no reason given" in second
    assert [row[2] for row in h.recorded] == ["AAPL: insufficient buying power", "JPM: "]


def test_one_refusal_of_an_order_and_its_legs_is_one_alert(h):
    """A bracket refused: the entry and its stop leg are both rejected, with the broker's one reason."""
    h.alerts.order_status("t-XOM-1-breakout", "XOM", "rejected", "asset XOM is not tradable")
    h.alerts.order_status("t-XOM-1-stop", "XOM", "rejected", "asset XOM is not tradable")
    h.alerts.order_status("t-XOM-2-breakout", "XOM", "rejected", "insufficient buying power")  # another reason
    h.alerts.drain()
    assert [row[2] for row in h.recorded] == ["XOM: asset XOM is not tradable", "XOM: insufficient buying power"]


def test_reconciliation_mismatch_alerts_with_the_difference(h):
    h.alerts.reconciliation_mismatch("AAPL: broker holds 10 shares, the journal's fills explain 0")
    assert h.rules_recorded() == ["reconciliation_mismatch"]
    assert "broker holds 10 shares" in h.drained()[0][1]


def _trained_days_ago(days: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(START - days * 86_400, dt.timezone.utc).replace(tzinfo=None)  # naive UTC


def test_model_older_than_its_retrain_schedule_alerts(h):
    assert h.alerts.rules.model_max_age_days == 8.0  # live.retrain_every_days 7, plus a day
    h.bar(model_id="m@1", model_trained_at=_trained_days_ago(7.5))
    h.bar(BAR + MINUTE, model_id=None, model_trained_at=None)  # a strategy without a model
    assert h.rules_recorded() == []
    h.bar(BAR + 2 * MINUTE, model_id="m@1", model_trained_at=_trained_days_ago(8.5))
    assert h.rules_recorded() == ["model_age"]
    assert "m@1 was trained 8.5 days ago" in h.drained()[0][1]


def test_model_age_not_checked_without_a_schedule():
    h = Harness(model_max_age_days=None)
    h.bar(model_id="m@1", model_trained_at=_trained_days_ago(400))
    assert h.rules_recorded() == []


def test_model_max_age_comes_from_the_retrain_schedule_or_the_alerts_key():
    def max_age(**overrides):
        return AlertRules.from_config(load_config(None, overrides), environ={}).model_max_age_days

    assert max_age(**{"live.retrain_every_days": 7}) == 8.0
    assert max_age(**{"live.retrain_every_days": 7, "alerts.model_max_age_days": 3.0}) == 3.0
    assert max_age(**{"live.retrain_every_days": 0, "alerts.model_max_age_days": 30.0}) == 30.0
    assert max_age(**{"live.retrain_every_days": 0}) is None


def test_feature_drift_past_the_psi_threshold_names_the_features(h):
    h.bar(feature_drift_psi={"rsi_14": 0.1, "ret_5": 0.25})  # at the threshold: not past it
    h.bar(BAR + MINUTE, feature_drift_psi={})
    assert h.rules_recorded() == []
    h.bar(BAR + 2 * MINUTE, feature_drift_psi={"rsi_14": 0.1, "ret_5": 0.4, "vol_20": float("nan")})
    assert h.rules_recorded() == ["feature_drift"]
    body = h.drained()[0][1]
    assert "1 of 3 features drift past PSI 0.25" in body and "ret_5 0.40" in body and "rsi_14" not in body


def test_hung_loop_alerts_when_bars_wait_undecided_for_heartbeat_seconds(h):
    beat = h.alerts.rules.heartbeat_seconds
    h.bar()
    h.alerts.bar_received("AAPL", BAR + MINUTE, START)  # received, never decided
    h.alerts.tick(START + beat)
    assert h.rules_recorded() == []
    h.alerts.tick(START + beat + 1)
    h.alerts.tick(START + beat + 60)
    assert h.rules_recorded() == ["heartbeat"]
    assert "looks hung" in h.drained()[0][1]


def test_a_long_warm_up_that_progresses_is_not_hung(h):
    beat = h.alerts.rules.heartbeat_seconds
    history = [BAR + i * MINUTE for i in range(10)]
    for bar_datetime in history:  # the history arrives at once ...
        h.alerts.bar_received("AAPL", bar_datetime, START)
    for i, bar_datetime in enumerate(history):  # ... and is decided slowly, a bar every beat - 1 seconds
        h.clock.t = START + (i + 1) * (beat - 1)
        h.alerts.tick()
        h.alerts.bar_decided(h.snapshot(bar_datetime, trading=False))
    h.alerts.tick(h.clock.t + 10 * beat)  # everything decided, nothing waits
    assert h.rules_recorded() == []


def test_dead_man_pings_only_while_the_loop_is_healthy():
    h = Harness(heartbeat_url="https://hc-ping.com/0b1c2d3e-aaaa-bbbb-cccc-123456789abc")
    beat = h.alerts.rules.heartbeat_seconds
    h.alerts.tick(START)
    h.alerts.tick(START + 1)  # not due yet
    assert h.pings == ["https://hc-ping.com/0b1c2d3e-aaaa-bbbb-cccc-123456789abc"]
    h.alerts.bar_received("AAPL", BAR, START + 10)  # the loop hangs on this bar
    h.alerts.tick(START + beat)
    assert len(h.pings) == 2
    h.alerts.tick(START + 2 * beat + 20)  # hung: no ping, the dead-man service notices
    h.alerts.tick(START + 3 * beat + 20)
    assert len(h.pings) == 2
    h.alerts.bar_decided(h.snapshot(BAR))  # the loop goes on
    h.alerts.tick(START + 3 * beat + 21)
    assert len(h.pings) == 3


def test_a_failing_ping_is_logged_and_never_raised(caplog):
    clock = Clock()

    def refuse(url, timeout):
        raise OSError("connection refused")

    alerts = LiveAlerts(rules(heartbeat_url="http://127.0.0.1:9/ping"), record=lambda *row: None, session=SESSION,
                        notify=lambda t, b: True, ping=refuse, clock=clock, start=False, environ={})
    alerts.tick()
    alerts.tick(START + 1_000)
    assert [r.message for r in caplog.records if "heartbeat ping failed" in r.message] == \
        ["heartbeat ping failed: connection refused"]  # once per failing streak


def test_rules_switched_off_are_silent():
    h = Harness(rules=frozenset(set(RULES) - {"order_rejected", "kill_switch"}))
    h.alerts.order_status("t-1", "AAPL", "rejected", "insufficient buying power")
    h.bar(kill_switch_tripped=True)
    h.alerts.broker_unreachable("GET /v2/account: timeout")
    assert h.rules_recorded() == ["broker_unreachable"]


def test_the_same_rule_and_key_is_sent_once_per_window(h):
    for i in range(3):
        h.alerts.order_status(f"t-{i}", "AAPL", "rejected", "insufficient buying power")
    h.alerts.order_status("t-3", "JPM", "rejected", "insufficient buying power")  # another symbol: another alert
    assert len(h.drained()) == 2
    h.clock.t += h.alerts.rules.dedup_seconds - 1
    h.alerts.order_status("t-4", "AAPL", "rejected", "insufficient buying power")
    assert len(h.drained()) == 2
    h.clock.t += 1
    h.alerts.order_status("t-5", "AAPL", "rejected", "insufficient buying power")
    assert len(h.drained()) == 3
    # duplicates are not journaled again
    assert [row[2] for row in h.recorded] == ["AAPL: insufficient buying power", "JPM: insufficient buying power",
                                              "AAPL: insufficient buying power"]


def test_rate_limit_holds_back_the_rest_and_summarises_them_in_the_next_sent():
    h = Harness(max_per_hour=2)
    for i in range(5):
        h.clock.t = START + i
        h.alerts.order_status(f"t-{i}", f"S{i}", "rejected", "insufficient buying power")
    h.alerts.broker_unreachable("GET /v2/account: timeout")
    assert len(h.drained()) == 2
    assert [(row[1], row[4]) for row in h.recorded] == [("order_rejected", True)] * 2 + \
        [("order_rejected", False)] * 3 + [("broker_unreachable", False)]  # every one journaled
    assert h.recorded[2][3].endswith("(held back by the rate limit)")
    h.clock.t = START + 3_600  # an hour after the first sent
    h.alerts.reconciliation_mismatch("XOM: broker holds 5 shares, the journal 0")
    sent = h.drained()
    assert len(sent) == 3
    assert "4 more alert(s) held back by the rate limit (2 an hour)" in sent[2][1]
    assert "broker_unreachable 1, order_rejected 3" in sent[2][1]
    h.clock.t += 1
    h.alerts.order_status("t-9", "JPM", "rejected", "x")
    assert "held back" not in h.drained()[3][1]  # the summary went out once


def test_alert_gate_sliding_hour():
    gate = AlertGate(dedup_seconds=0.0, max_per_hour=3)
    times = [0, 10, 20, 30, 3_599, 3_600, 3_610, 3_615, 3_620]
    verdicts = [gate.admit("r", str(i), t) for i, t in enumerate(times)]
    # an hour after each sent, a place frees: at 3,600 (sent at 0), 3,610 (10), 3,620 (20)
    assert verdicts == ["send", "send", "send", "held_back", "held_back", "send", "send", "held_back", "send"]


def test_no_secret_leaves_in_an_alert_or_the_journal():
    token_url = "json://127.0.0.1:9/hooks/T0KENsecretPART42"
    clock, sent, recorded = Clock(), [], []
    alerts = LiveAlerts(rules(urls=(token_url,), heartbeat_url="https://hc-ping.com/uuid-0b1c2d3e4f"),
                        record=lambda *row: recorded.append(row), session=SESSION,
                        secrets=("PKTESTKEYID123", "s3cr3tK3y"),
                        notify=lambda title, body: sent.append((title, body)) or True, clock=clock, start=False,
                        environ={"APCA_API_SECRET_KEY": "envS3cretValue", "HOME": "/home/trader"})
    alerts.broker_unreachable("GET https://paper-api.alpaca.markets/v2/account?key=PKTESTKEYID123&s=s3cr3tK3y: "
                              "401 (envS3cretValue)")
    alerts.order_status("t-1", "AAPL", "rejected", f"posting to {token_url} failed; token T0KENsecretPART42")
    alerts.reconciliation_mismatch("ping https://hc-ping.com/uuid-0b1c2d3e4f said uuid-0b1c2d3e4f")
    alerts.drain()
    texts = [part for pair in sent for part in pair] + [field for row in recorded for field in row[:4]]
    leaked = [secret for secret in ("PKTESTKEYID123", "s3cr3tK3y", "envS3cretValue", token_url, "T0KENsecretPART42",
                                    "uuid-0b1c2d3e4f") if any(secret in text for text in texts)]
    assert leaked == []
    assert "key=***&s=***" in sent[0][1] and "401 (***)" in sent[0][1]
    assert "paper-api.alpaca.markets" in sent[0][1]  # the rest of the reason stays


def test_alerts_reach_a_webhook_through_apprise_and_the_journal(tmp_path):
    """The real path: hooks on the caller's thread, Apprise on the sender thread, a SQLite journal."""
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    with WebhookReceiver() as receiver:
        alerts = LiveAlerts(rules(urls=(receiver.apprise_url,), check_seconds=0.05), record=journal.record_alert,
                            session=SESSION, environ={})
        observers = Observers(alerts)  # as the live path calls it
        observers.order_status("t-AAPL-1", "AAPL", "rejected", "insufficient buying power")
        observers.reconciliation_mismatch("AAPL: broker holds 10 shares, the journal's fills explain 0")
        alerts.close()
        posts = receiver.wait_for_posts(2)
    rows, rejections = journal.alerts(), journal.alerts("order_rejected")
    journal.close()
    assert [r["key"] for r in rejections] == ["AAPL: insufficient buying power"]
    assert [(p["type"], p["title"]) for p in posts] == [("failure", f"trader {SESSION}: order rejected"),
                                                        ("failure", f"trader {SESSION}: reconciliation mismatch")]
    assert "t-AAPL-1 for AAPL rejected by the broker: insufficient buying power" in posts[0]["message"]
    assert [(r["session"], r["rule"], r["key"], r["delivered"]) for r in rows] == [
        (SESSION, "order_rejected", "AAPL: insufficient buying power", True),
        (SESSION, "reconciliation_mismatch", "AAPL: broker holds 10 shares, the journal's fills explain 0", True)]
    assert rows[0]["message"] == posts[0]["message"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_delivery_is_journaled_undelivered_and_never_raised(tmp_path):
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    with WebhookReceiver(status=500) as failing:
        alerts = LiveAlerts(rules(urls=(failing.apprise_url,)), record=journal.record_alert, session=SESSION,
                            start=False, environ={})
        alerts.order_status("t-1", "AAPL", "rejected", "insufficient buying power")
        alerts.drain()
        assert len(failing.posts) == 1  # it was tried
    nobody = LiveAlerts(rules(urls=(f"json://127.0.0.1:{_closed_port()}/",)), record=journal.record_alert,
                        session=SESSION, start=False, environ={})
    nobody.broker_unreachable("GET /v2/account: timeout")
    nobody.drain()

    def broken(title, body):
        raise RuntimeError("the notifier itself fails")

    raising = LiveAlerts(rules(), record=journal.record_alert, session=SESSION, notify=broken, start=False, environ={})
    raising.reconciliation_mismatch("XOM differs")
    raising.drain()
    assert [(r["rule"], r["delivered"]) for r in journal.alerts()] == [
        ("order_rejected", False), ("broker_unreachable", False), ("reconciliation_mismatch", False)]
    journal.close()


def test_a_journal_that_fails_is_logged_not_raised(caplog):
    def broken(*row):
        raise OSError("database is down")

    alerts = LiveAlerts(rules(), record=broken, session=SESSION, notify=lambda t, b: True, start=False, environ={})
    alerts.order_status("t-1", "AAPL", "rejected", "x")
    alerts.drain()
    assert any("not written to the journal" in r.message for r in caplog.records)


def test_urls_from_config_and_environment():
    assert alert_urls(["slack://a/b/c"], {URLS_ENV: " tgram://bot/chat,json://127.0.0.1:8/  mailto://u:p@x.org "}) == \
        ("slack://a/b/c", "tgram://bot/chat", "json://127.0.0.1:8/", "mailto://u:p@x.org")
    cfg = load_config()
    assert not AlertRules.from_config(cfg, environ={}).configured
    assert AlertRules.from_config(cfg, environ={URLS_ENV: "json://127.0.0.1:8/"}).configured
    assert AlertRules.from_config(cfg, environ={}).stale_feed_seconds is None  # 1Day by default
    # the dead-man URL from the environment (a container's .env) replaces the config's
    ping = "https://hc-ping.com/0b1c2d3e"
    from_env = AlertRules.from_config(load_config(None, {"alerts.heartbeat_url": "http://other/"}),
                                      environ={HEARTBEAT_ENV: ping})
    assert from_env.heartbeat_url == ping and from_env.configured


def test_a_url_apprise_does_not_know_is_refused_without_showing_it():
    with pytest.raises(ValueError) as refused:
        LiveAlerts(rules(urls=("nosuchscheme://T0KENsecretPART42",)), record=lambda *row: None, session=SESSION,
                   start=False, environ={})
    assert "alert URL 1 (nosuchscheme://...)" in str(refused.value) and "T0KEN" not in str(refused.value)


def test_run_py_live_builds_alerts_only_with_somewhere_to_send(tmp_path, monkeypatch):
    from cli.live import alerts_from_config
    from common.errors import UserError

    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    monkeypatch.delenv(URLS_ENV, raising=False)
    assert alerts_from_config(load_config(), journal, (), session=SESSION) is None
    monkeypatch.setenv(URLS_ENV, "json://127.0.0.1:9/T0KENsecretPART42")
    alerts = alerts_from_config(load_config(), journal, ("PKTESTKEYID123",), session=SESSION)
    try:
        assert alerts.rules.urls == ("json://127.0.0.1:9/T0KENsecretPART42",)
        assert {"PKTESTKEYID123", "T0KENsecretPART42"} <= set(alerts.secrets)
        assert alerts.record == journal.record_alert
    finally:
        alerts.close()
    monkeypatch.setenv(URLS_ENV, "nosuchscheme://x")
    with pytest.raises(UserError, match="not a URL Apprise knows"):
        alerts_from_config(load_config(), journal, (), session=SESSION)
    journal.close()


def test_alert_urls_never_reach_a_runs_recorded_config():
    """A run's metrics.json records the config: the alert URLs (tokens) are left out, and change no fingerprint."""
    from config import config_hash, results_config

    plain = load_config()
    with_alerts = load_config(None, {"alerts.urls": ["tgram://123456789:T0KENsecretPART42/-100123"],
                                     "alerts.heartbeat_url": "https://hc-ping.com/uuid-0b1c2d3e4f"})
    assert "alerts" not in results_config(with_alerts)
    assert config_hash(with_alerts) == config_hash(plain)
