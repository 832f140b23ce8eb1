"""ops.status: the session's state for the dashboard, by priority, published from a thread of its
own at most every ``status_seconds``, never raising into the session."""
import dataclasses
import datetime as dt
import json
import threading
import time

import pytest

from brokers.journal import Journal, sqlite_url
from ops.observer import BarSnapshot, Observers
from ops.status import STATES, JournalStatus, derive_state

BAR = dt.datetime(2024, 3, 1, 15, 30)


def snapshot(**fields) -> BarSnapshot:
    values = dict(session="s", bar_datetime=BAR, wall_time=time.time(), equity=1000.0, cash=400.0, daily_pnl=-5.0,
                  exposure=0.6, open_positions=2, open_orders=1, trading=True, confidences=[0.6, 0.7],
                  feature_drift_psi={"ret_1": 0.1}, model_id="m@1", model_trained_at=dt.datetime(2024, 2, 1),
                  risk_figures={"kill_switch": {"tripped": False, "peak_equity": 1010.0, "drawdown": 0.0099,
                                                "limit": 0.1},
                                "daily_loss": {"day_start_equity": 1005.0, "day_loss": 0.005, "limit": 0.02}})
    return BarSnapshot(**{**values, **fields})


@pytest.mark.parametrize("status, state", [
    ({"trading": True}, "trading"),
    ({"trading": False}, "warming_up"),
    ({"trading": True, "entries_halted": "stale data: ...", "entries_halted_by": "feed"}, "stale_feed"),
    ({"trading": True, "entries_halted": "positions differ", "entries_halted_by": "broker"}, "entries_halted"),
    ({"trading": True, "entries_halted": "x", "entries_halted_by": "feed", "daily_loss_limit_reached": True},
     "daily_limit"),
    ({"trading": True, "daily_loss_limit_reached": True, "entries_paused": {"who": "me"}}, "paused"),
    ({"trading": True, "entries_paused": {"who": "me"}, "kill_switch_tripped": True}, "halted_kill_switch"),
    ({"trading": False, "kill_switch_tripped": True}, "warming_up"),
    ({"trading": True, "kill_switch_tripped": True, "wall_time": 10.0,
      "broker_unreachable": {"wall_time": 11.0, "what": "x"}}, "broker_unreachable"),
    ({"trading": True, "wall_time": 12.0, "broker_unreachable": {"wall_time": 11.0, "what": "x"}}, "trading"),
    ({"trading": True, "wall_time": 10.0, "broker_unreachable": {"wall_time": 11.0, "what": "x"},
      "last_reconnect": {"wall_time": 12.0, "stream": "trades"}}, "trading"),
    ({"trading": True, "ended": True, "broker_unreachable": {"wall_time": 11.0, "what": "x"}}, "ended"),
    ({"trading": True, "ended": True, "market_closed_until": "2024-03-04 09:25 EST"}, "market_closed"),
    ({"trading": True, "kill_switch": {"tripped": True}}, "halted_kill_switch"),  # from the risk figures
    ({"trading": True, "daily_loss": {"blocked": True}}, "daily_limit"),
])
def test_the_state_by_priority(status, state):
    assert state in STATES and derive_state(status) == state


def test_the_status_holds_every_snapshot_field_and_the_risk_figures():
    status = JournalStatus(journal=None, every_seconds=60, start=False)
    assert status.status() is None
    status.session_started("s", ["AAPL", "JPM"])
    status.bar_decided(snapshot(entries_paused={"who": "me", "at": "2024-03-01T15:00:00"}))
    status.reconnected("bars")
    status.reconnected("bars")
    status.reconciliation_mismatch("positions differ")
    s = status.status()
    json.dumps(s)  # JSON-ready
    names = {f.name for f in dataclasses.fields(BarSnapshot)} - {"risk_figures"}
    assert names <= set(s)
    assert s["state"] == "paused" and s["paused"] is True and s["symbols"] == ["AAPL", "JPM"]
    assert s["state_reason"] == "entries paused by me at 2024-03-01T15:00:00 UTC"
    assert (s["drawdown"], s["peak_equity"], s["kill_switch_limit"]) == (0.0099, 1010.0, 0.1)
    assert (s["day_loss"], s["day_start_equity"], s["daily_loss_limit"]) == (0.005, 1005.0, 0.02)
    assert s["bar_datetime"] == BAR.isoformat() and s["model_trained_at"] == "2024-02-01T00:00:00"
    assert s["kill_switch"]["peak_equity"] == 1010.0 and s["daily_loss"]["day_start_equity"] == 1005.0
    assert s["reconnects"] == {"bars": 2} and s["reconciliation_mismatch"]["message"] == "positions differ"
    assert s["feature_drift_psi"] == {"ret_1": 0.1} and s["confidences"] == [0.6, 0.7]


class SlowJournal:
    def __init__(self, fail=False):
        self.rows, self.threads, self.fail = [], set(), fail

    def publish_status(self, session, status):
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("database down")
        self.rows.append((time.monotonic(), session, status))


def test_published_from_its_own_thread_at_most_every_period_then_ended():
    journal = SlowJournal()
    status = JournalStatus(journal, every_seconds=0.2)
    observers = Observers(status)
    observers.session_started("s", ["AAPL"])
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # a bar every 10 ms
        observers.bar_decided(snapshot(wall_time=time.time()))
        time.sleep(0.01)
    observers.session_ended("s")
    deadline = time.monotonic() + 2
    while not (journal.rows and journal.rows[-1][2]["state"] == "ended") and time.monotonic() < deadline:
        time.sleep(0.01)
    status.close()
    assert journal.threads == {"status-publisher"}
    assert journal.rows[-1][2]["state"] == "ended"
    times = [t for t, _, _ in journal.rows]
    # one at the start, one every period, one at the end: never one per bar
    assert 4 <= len(times) <= 9
    gaps = [b - a for a, b in zip(times[1:-1], times[2:-1])]
    assert all(gap >= 0.15 for gap in gaps)


def test_a_failing_journal_is_logged_once_and_never_raises(caplog):
    journal = SlowJournal(fail=True)
    status = JournalStatus(journal, every_seconds=0.02)
    status.session_started("s", ["AAPL"])
    for _ in range(5):
        status.bar_decided(snapshot())
        time.sleep(0.03)
    status.close()
    assert len([r for r in caplog.records if "publishing the session's status failed" in r.getMessage()]) == 1


def test_publish_status_on_a_journal(tmp_path):
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    status = JournalStatus(journal, every_seconds=60, start=False)
    status.session_started("s", ["AAPL"])
    status.bar_decided(snapshot())
    assert status.publish() and not status.publish(), "unchanged: not written again"
    (row,) = journal.session_status()
    assert row["session"] == "s" and row["status"]["equity"] == 1000.0 and row["status"]["state"] == "trading"
    journal.close()


def test_between_sessions_the_state_says_when_the_next_starts():
    status = JournalStatus(journal=None, every_seconds=60, start=False)
    status.market_closed("2024-03-04 09:25 EST")  # before any session: nothing to say
    assert status.status() is None
    status.session_started("s", ["AAPL"])
    status.bar_decided(snapshot())
    status.session_ended("s")
    assert status.status()["state"] == "ended"
    status.market_closed("2024-03-04 09:25 EST")
    s = status.status()
    assert s["state"] == "market_closed" and "the next starts 2024-03-04 09:25 EST" in s["state_reason"]
    status.session_started("s", ["AAPL"])  # the next session
    assert status.status()["state"] == "warming_up"
