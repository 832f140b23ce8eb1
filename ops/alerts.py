"""Alerts of a live session, sent through Apprise (Slack, Telegram, e-mail, webhooks ... one URL each).

:class:`LiveAlerts` is a session observer (``ops.observer``). Its hooks run on the trading loop and
the broker's threads, so they only compare a few values under a lock and put an alert on a queue;
a sender thread delivers it (Apprise is blocking network I/O) and writes it to the journal. A
watchdog thread looks for what brings no callback at all: a feed gone quiet, a loop that hangs, and
pings the dead-man service (``heartbeat_url``) while the loop is healthy, so a killed process is
noticed from outside.

The rules (``RULES``; docs/live.md, "Alerts"): the kill switch tripped, the daily loss limit reached
(once a day), a stale feed (1Min), the broker unreachable, an order rejected, the journal and the
broker in disagreement, a model older than its retrain schedule, features drifting past a PSI
threshold, and the heartbeat (bars received, none decided: a hung loop). Every alert names the
session and the reason, never a secret; the same rule and key is sent once per ``dedup_seconds``;
beyond ``max_per_hour`` alerts are held back, counted, and summarised in the next one sent.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from ops.observer import BarSnapshot, SessionObserver

log = logging.getLogger("live.alerts")

RULES = ("kill_switch", "daily_loss_limit", "stale_feed", "broker_unreachable", "order_rejected",
         "reconciliation_mismatch", "model_age", "feature_drift", "heartbeat")
URLS_ENV = "TRADER_ALERT_URLS"  # Apprise URLs kept out of config files (tokens), whitespace or comma separated
HEARTBEAT_ENV = "TRADER_HEARTBEAT_URL"  # the dead-man URL (it holds the check's token), over alerts.heartbeat_url
SECRETS_ENV_PREFIX = "APCA_"     # the Alpaca keys' variables: their values never appear in an alert
MASK = "***"
REJECTED_STATUSES = ("rejected", "margin")  # the broker's refusals (margin: Backtrader's name for buying power)
HOUR = 3600.0
MIN_SECRET_CHARS = 6  # a URL's parts shorter than this (a port, "services") are not taken for secrets
DRIFT_FEATURES_NAMED = 5  # a drift alert names the worst few features, then counts the rest

Record = Callable[[str, str, str, str, bool], None]  # (session, rule, key, message, delivered)


@dataclass(frozen=True)
class AlertRules:
    """What raises an alert and how often one goes out; :meth:`from_config` reads ``[alerts]``."""

    urls: tuple[str, ...]                 # Apprise URLs (config and TRADER_ALERT_URLS)
    rules: frozenset[str]                 # the rules switched on (RULES)
    stale_feed_seconds: float | None      # None: the feed is not watched (1Day bars come once a day)
    open_grace_seconds: float             # a session is started this long before the open: no bar yet is not stale
    psi_threshold: float
    model_max_age_days: float | None      # None: model age is not checked
    heartbeat_seconds: float
    heartbeat_url: str
    dedup_seconds: float
    max_per_hour: int
    check_seconds: float                  # the watchdog looks this often
    timeout_seconds: float                # one heartbeat ping's HTTP timeout

    @classmethod
    def from_config(cls, cfg, environ=None) -> "AlertRules":
        environ = os.environ if environ is None else environ
        alerts, live = cfg.alerts, cfg.live
        if alerts.model_max_age_days > 0:
            max_age = alerts.model_max_age_days
        elif live.retrain_every_days > 0:
            max_age = live.retrain_every_days + 1.0  # the retrain runs after a close: a day's grace
        else:
            max_age = None
        return cls(urls=alert_urls(alerts.urls, environ), rules=frozenset(alerts.rules),
                   stale_feed_seconds=alerts.stale_feed_seconds if live.timeframe == "1Min" else None,
                   open_grace_seconds=live.prewarm_minutes * 60.0, psi_threshold=live.drift_psi_threshold,
                   model_max_age_days=max_age, heartbeat_seconds=alerts.heartbeat_seconds,
                   heartbeat_url=environ.get(HEARTBEAT_ENV) or alerts.heartbeat_url, dedup_seconds=alerts.dedup_seconds,
                   max_per_hour=alerts.max_per_hour, check_seconds=alerts.check_seconds,
                   timeout_seconds=alerts.timeout_seconds)

    @property
    def configured(self) -> bool:
        """Something to send to: an Apprise URL or a dead-man service."""
        return bool(self.urls or self.heartbeat_url)


def alert_urls(configured, environ=None) -> tuple[str, ...]:
    """The config's Apprise URLs, then those of ``TRADER_ALERT_URLS`` (whitespace or comma separated)."""
    environ = os.environ if environ is None else environ
    from_env = [u for u in re.split(r"[\s,]+", environ.get(URLS_ENV, "")) if u]
    return tuple(dict.fromkeys([*(u.strip() for u in configured if u.strip()), *from_env]))


def url_secrets(url: str) -> list[str]:
    """A URL and the parts of it that can be tokens (user, password, host, path segments, query values):
    an error text may quote a part without the whole."""
    parts = urllib.parse.urlsplit(url)
    candidates = [url, parts.username, parts.password, parts.hostname,
                  *parts.path.split("/"), *(v for _, v in urllib.parse.parse_qsl(parts.query))]
    return [c for c in candidates if c and len(c) >= MIN_SECRET_CHARS and c not in ("127.0.0.1", "localhost")]


def scrub(text: str, secrets) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


@dataclass(frozen=True)
class Alert:
    session: str
    rule: str
    key: str       # what the alert is about (an order id, a day, "feed"): de-duplication is per rule and key
    message: str


class AlertGate:
    """De-duplication and the rate limit, on a clock given each call (pure; not thread-safe).

    An alert whose rule and key were raised less than ``dedup_seconds`` ago is a duplicate (dropped);
    beyond ``max_per_hour`` sent in the last hour it is held back and counted until one is sent."""

    SEND, DUPLICATE, HELD_BACK = "send", "duplicate", "held_back"

    def __init__(self, dedup_seconds: float, max_per_hour: int):
        self.dedup_seconds, self.max_per_hour = dedup_seconds, max_per_hour
        self._raised: dict[tuple[str, str], float] = {}
        self._sent: deque[float] = deque()
        self.held_back: Counter[str] = Counter()  # rule -> alerts held back since the last one sent

    def admit(self, rule: str, key: str, now: float) -> str:
        last = self._raised.get((rule, key))
        if last is not None and now - last < self.dedup_seconds:
            return self.DUPLICATE
        # a held-back alert counts as raised: a lasting condition is not counted again at every bar
        self._raised[(rule, key)] = now
        while self._sent and now - self._sent[0] >= HOUR:
            self._sent.popleft()
        if len(self._sent) >= self.max_per_hour:
            self.held_back[rule] += 1
            return self.HELD_BACK
        self._sent.append(now)
        return self.SEND

    def take_summary(self) -> str | None:
        """The alerts held back since the last one sent, as a sentence (and forget them)."""
        if not self.held_back:
            return None
        counts = ", ".join(f"{rule} {n}" for rule, n in sorted(self.held_back.items()))
        total = sum(self.held_back.values())
        self.held_back.clear()
        return (f"{total} more alert(s) held back by the rate limit ({self.max_per_hour} an hour) since the last "
                f"one sent: {counts} (the journal's alerts table has them)")


def _apprise_notifier(urls) -> Callable[[str, str], bool]:
    import apprise

    sender = apprise.Apprise()
    for i, url in enumerate(urls):
        if not sender.add(url):
            # the URL itself may hold a token: name its position and scheme only
            raise ValueError(f"alert URL {i + 1} ({urllib.parse.urlsplit(url).scheme or '?'}://...) is not a URL "
                             "Apprise knows (alerts.urls, TRADER_ALERT_URLS)")

    def notify(title: str, body: str) -> bool:
        return bool(sender.notify(body=body, title=title, notify_type=apprise.NotifyType.FAILURE))

    return notify


def http_ping(url: str, timeout: float) -> None:
    """One GET to the dead-man service; raises on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the operator's URL)
        response.read()


def _not_after(a: dt.datetime, b: dt.datetime) -> bool:
    """a <= b, for bar times the hooks give alike (naive exchange times); a mix never raises."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a <= b


def _utc_timestamp(moment: dt.datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


class LiveAlerts(SessionObserver):
    """The alert rules as a session observer, with a sender and a watchdog thread (:meth:`close` stops them).

    ``record(session, rule, key, message, delivered)``: writes each alert raised (held back ones with
    delivered False) to the journal, from the sender thread. ``secrets``: texts never sent (the
    broker's keys); the alert URLs, the heartbeat URL and the ``APCA_*`` variables' values are added.
    ``session``: the name alerts carry before a session starts (a broker unreachable at start-up).
    ``notify(title, body) -> bool`` and ``ping(url, timeout)`` default to Apprise and an HTTP GET;
    ``clock`` (time.time) is what tests replace; ``start=False`` runs no thread (tests call
    :meth:`tick` and :meth:`drain`)."""

    def __init__(self, rules: AlertRules, *, record: Record, session: str, secrets=(), notify=None, ping=None,
                 clock: Callable[[], float] = time.time, start: bool = True, environ=None):
        environ = os.environ if environ is None else environ
        self.rules, self.record, self.session, self.clock = rules, record, session, clock
        found = [*secrets, *(v for k, v in environ.items() if k.startswith(SECRETS_ENV_PREFIX))]
        for url in (*rules.urls, rules.heartbeat_url):
            found += url_secrets(url) if url else []
        # longest first: a URL is masked whole before its parts
        self.secrets = tuple(sorted({s for s in found if s}, key=len, reverse=True))
        self.notify = notify or (_apprise_notifier(rules.urls) if rules.urls else None)
        self.ping = ping or http_ping
        self.gate = AlertGate(rules.dedup_seconds, rules.max_per_hour)
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        # state of the rules
        self._kill_switch = False
        self._loss_days: set[dt.date] = set()
        self._in_session = False
        self._feed_watched_from: float | None = None  # stale feed: watched from this wall time
        self._last_bar: float | None = None
        self._stale_alerted = False
        self._latest_received: dt.datetime | None = None
        self._undecided_since: float | None = None    # bars received and not yet decided since then
        self._hung_alerted = False
        self._next_ping = 0.0
        self._ping_failing = False
        self._threads: list[threading.Thread] = []
        if start:
            self._threads = [threading.Thread(target=self._send_loop, name="alerts-sender", daemon=True),
                             threading.Thread(target=self._watch_loop, name="alerts-watchdog", daemon=True)]
            for thread in self._threads:
                thread.start()

    # ---- hooks (the trading loop and the broker's threads: no I/O here) ----------------------------
    def session_started(self, session: str, symbols: list[str]) -> None:
        with self._lock:
            self.session, self._in_session = session, True
            now = self.clock()
            self._feed_watched_from = now + self.rules.open_grace_seconds
            self._last_bar, self._stale_alerted = None, False

    def session_ended(self, session: str) -> None:
        with self._lock:
            self._in_session, self._feed_watched_from = False, None
            self._undecided_since, self._latest_received = None, None

    def bar_received(self, symbol: str, bar_datetime: dt.datetime, wall_time: float) -> None:
        with self._lock:
            self._last_bar, self._stale_alerted = wall_time, False
            if self._latest_received is None or _not_after(self._latest_received, bar_datetime):
                self._latest_received = bar_datetime
            if self._undecided_since is None:
                self._undecided_since = wall_time

    def bar_decided(self, snapshot: BarSnapshot) -> None:
        s = snapshot
        with self._lock:
            self._hung_alerted = False
            latest = self._latest_received
            if latest is None or _not_after(latest, s.bar_datetime):
                self._undecided_since = None
            else:  # progress, bars still waiting (a warm-up's history)
                self._undecided_since = s.wall_time
            if s.trading and self._feed_watched_from is not None:  # trading: the market is open
                self._feed_watched_from = min(self._feed_watched_from, s.wall_time)
            newly_tripped = bool(s.kill_switch_tripped) and not self._kill_switch  # alerted as it turns True
            self._kill_switch = bool(s.kill_switch_tripped)
            day = s.bar_datetime.date()
            loss = bool(s.daily_loss_limit_reached) and day not in self._loss_days
            if loss:
                self._loss_days.add(day)
        if newly_tripped:
            self._raise("kill_switch", "kill_switch", f"kill switch tripped at the bar of {s.bar_datetime}: "
                        f"equity {s.equity:,.2f}, daily P&L {s.daily_pnl:,.2f}; no new entries")
        if loss:
            self._raise("daily_loss_limit", day.isoformat(), f"daily loss limit reached on {day}: daily P&L "
                        f"{s.daily_pnl:,.2f}, equity {s.equity:,.2f}; no new entries today")
        max_age = self.rules.model_max_age_days
        if max_age is not None and s.model_trained_at is not None:
            age_days = (s.wall_time - _utc_timestamp(s.model_trained_at)) / 86400.0
            if age_days > max_age:
                self._raise("model_age", s.model_id or "model",
                            f"model {s.model_id or '(unnamed)'} was trained {age_days:.1f} days ago "
                            f"({s.model_trained_at:%Y-%m-%d %H:%M} UTC): older than its {max_age:g}-day "
                            "retrain schedule")
        if s.feature_drift_psi:
            threshold = self.rules.psi_threshold
            drifting = sorted(((v, f) for f, v in s.feature_drift_psi.items() if v is not None and v > threshold),
                              reverse=True)
            if drifting:
                named = ", ".join(f"{f} {v:.2f}" for v, f in drifting[:DRIFT_FEATURES_NAMED])
                more = len(drifting) - DRIFT_FEATURES_NAMED
                self._raise("feature_drift", "features",
                            f"{len(drifting)} of {len(s.feature_drift_psi)} features drift past PSI {threshold:g} "
                            f"(live against training): {named}" + (f" and {more} more" if more > 0 else ""))

    def order_status(self, client_order_id: str, symbol: str, status: str, reason: str | None = None) -> None:
        if status.lower() in REJECTED_STATUSES:
            # keyed by symbol and reason: a bracket refused with its legs, or one refusal at every bar, is one alert
            self._raise("order_rejected", f"{symbol}: {reason or ''}",
                        f"order {client_order_id} for {symbol} rejected by the broker: {reason or 'no reason given'}")

    def broker_unreachable(self, what: str) -> None:
        self._raise("broker_unreachable", "broker", f"broker unreachable after retries: {what}")

    def reconciliation_mismatch(self, message: str) -> None:
        self._raise("reconciliation_mismatch", message[:200], f"reconciliation: {message}")

    # ---- the watchdog ------------------------------------------------------------------------------
    def check(self, now: float | None = None) -> bool:
        """Look for a stale feed and a hung loop at ``now``; True when the loop is healthy."""
        now = self.clock() if now is None else now
        rules = self.rules
        stale = hung = None
        with self._lock:
            watched = self._feed_watched_from
            if rules.stale_feed_seconds is not None and self._in_session and watched is not None and now >= watched:
                quiet_since = max(self._last_bar or watched, watched)
                if now - quiet_since > rules.stale_feed_seconds and not self._stale_alerted:
                    self._stale_alerted = True
                    stale = now - quiet_since
            healthy = self._undecided_since is None or now - self._undecided_since <= rules.heartbeat_seconds
            if not healthy and not self._hung_alerted:
                self._hung_alerted = True
                hung = now - self._undecided_since
        if stale is not None:
            self._raise("stale_feed", "feed", f"no bar received for {stale:.0f} s during the session "
                        f"(alerts.stale_feed_seconds {rules.stale_feed_seconds:g})")
        if hung is not None:
            self._raise("heartbeat", "loop", f"bars received {hung:.0f} s ago and none decided since: the trading "
                        f"loop looks hung (alerts.heartbeat_seconds {rules.heartbeat_seconds:g})")
        return healthy

    def tick(self, now: float | None = None) -> None:
        """One look of the watchdog: the checks, then the dead-man ping when due and the loop healthy."""
        now = self.clock() if now is None else now
        healthy = self.check(now)
        if healthy and self.rules.heartbeat_url and now >= self._next_ping:
            self._next_ping = now + self.rules.heartbeat_seconds
            self._send_ping()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self.rules.check_seconds):
            try:
                self.tick()
            except Exception:  # the watchdog never dies of one bad look
                log.exception("alerts watchdog")

    def _send_ping(self) -> None:
        try:
            self.ping(self.rules.heartbeat_url, self.rules.timeout_seconds)
            if self._ping_failing:
                log.info("heartbeat ping delivered again")
            self._ping_failing = False
        except Exception as exc:
            if not self._ping_failing:  # once per failing streak, not every heartbeat
                log.warning("heartbeat ping failed: %s", scrub(str(exc), self.secrets))
            self._ping_failing = True

    # ---- raising and sending -----------------------------------------------------------------------
    def _raise(self, rule: str, key: str, message: str) -> None:
        if rule not in self.rules.rules:
            return
        with self._lock:
            verdict = self.gate.admit(rule, key, self.clock())
            summary = self.gate.take_summary() if verdict == AlertGate.SEND else None
            session = self.session
        if verdict != AlertGate.DUPLICATE:
            self._queue.put((Alert(session, rule, key, message), verdict == AlertGate.SEND, summary))

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Send what is queued, on this thread (no sender thread: ``start=False``), or wait for the sender."""
        if self._threads:
            self._queue.join()
            return
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._deliver(*item)
            self._queue.task_done()

    def _deliver(self, alert: Alert, send: bool, summary: str | None) -> None:
        message, key = scrub(alert.message, self.secrets), scrub(alert.key, self.secrets)
        log.warning("alert %s (%s): %s", alert.rule, alert.session, message)  # the live log has every alert
        delivered = False
        if not send:
            message += " (held back by the rate limit)"
        elif self.notify is not None:  # None: no alert URL (a dead-man heartbeat only)
            title = scrub(f"trader {alert.session}: {alert.rule.replace('_', ' ')}", self.secrets)
            body = scrub(f"{alert.message}\n\n{summary}" if summary else alert.message, self.secrets)
            try:
                delivered = bool(self.notify(title, body))
            except Exception as exc:
                log.warning("alert %s not delivered: %s", alert.rule, scrub(repr(exc), self.secrets))
            else:
                if not delivered:
                    log.warning("alert %s not delivered: an alert URL refused it or could not be reached", alert.rule)
        try:
            self.record(alert.session, alert.rule, key, message, delivered)
        except Exception:
            log.exception("alert %s not written to the journal", alert.rule)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the threads."""
        self._stop.set()
        if self._threads:
            self._queue.put(None)
            for thread in self._threads:
                thread.join(timeout)
            self._threads = []
        else:
            self.drain()
