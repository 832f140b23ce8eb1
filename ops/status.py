"""The live session's state for a reader (``run.py dashboard``): :class:`JournalStatus`, an observer
that keeps the latest :class:`ops.observer.BarSnapshot` and what the other hooks say, and writes it to
the journal's ``session_status`` table (``Journal.publish_status``) from a thread of its own, at most
every ``dashboard.status_seconds``, and once more when the session ends (state ``ended``).

The status is a JSON-ready dict (:meth:`JournalStatus.status`): every field of the snapshot, the
strategy's risk figures (``kill_switch``, ``daily_loss``, and flat: ``drawdown``, ``peak_equity``,
``kill_switch_limit``, ``day_loss``, ``day_start_equity``, ``daily_loss_limit``), the operator's pause
(``paused``, ``entries_paused``), the broker's and the streams' troubles, and ``state``, one of
:data:`STATES` (:func:`derive_state` says which wins), with ``state_reason`` in words.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

from common.jsonable import to_jsonable
from ops.observer import BarSnapshot, SessionObserver

log = logging.getLogger("live.ops")

# the session's state, by priority: the first that holds is the state
STATES = ("market_closed", "ended", "broker_unreachable", "warming_up", "halted_kill_switch", "paused", "daily_limit", "stale_feed",
          "entries_halted", "trading")


def derive_state(status: dict) -> str:
    """The state of a status dict, the first of :data:`STATES` that holds: ``ended`` (the session is
    over); ``broker_unreachable`` (a request failed after its retries since the last bar decided and
    the last reconnect); ``warming_up`` (no bar traded yet: history only); ``halted_kill_switch`` (the
    drawdown kill switch tripped: flattened, no entries until reset); ``paused`` (an operator paused new
    entries); ``daily_limit`` (the daily loss limit holds entries back today); ``stale_feed`` (the
    stale-data gate holds entries back); ``entries_halted`` (the broker holds entries back: its book and
    the journal's differ); else ``trading``."""
    if status.get("ended"):
        return "market_closed" if status.get("market_closed_until") else "ended"
    unreachable = status.get("broker_unreachable")
    if unreachable and unreachable["wall_time"] >= max(status.get("wall_time") or 0.0,
                                                      (status.get("last_reconnect") or {}).get("wall_time", 0.0)):
        return "broker_unreachable"
    if not status.get("trading"):
        return "warming_up"
    # a strategy's monitoring() or its risk figures, whichever it gives
    if status.get("kill_switch_tripped") or (status.get("kill_switch") or {}).get("tripped"):
        return "halted_kill_switch"
    if status.get("entries_paused"):
        return "paused"
    if status.get("daily_loss_limit_reached") or (status.get("daily_loss") or {}).get("blocked"):
        return "daily_limit"
    if status.get("entries_halted"):
        return "stale_feed" if status.get("entries_halted_by") == "feed" else "entries_halted"
    return "trading"


def state_reason(status: dict, state: str) -> str | None:
    """The state in words: the kill switch's or the daily loss limit's reason, who paused, the halt, the
    broker's error; None for trading, warming up and ended."""
    kill_switch, daily_loss = status.get("kill_switch") or {}, status.get("daily_loss") or {}
    if state == "market_closed":
        return f"the session ended; the next starts {status['market_closed_until']}"
    if state == "broker_unreachable":
        return status["broker_unreachable"]["what"]
    if state == "halted_kill_switch":
        return kill_switch.get("reason") or "the kill switch tripped"
    if state == "paused":
        pause = status["entries_paused"]
        return f"entries paused by {pause.get('who')} at {pause.get('at')} UTC"
    if state == "daily_limit":
        return daily_loss.get("reason") or "the daily loss limit is reached"
    if state in ("stale_feed", "entries_halted"):
        return status.get("entries_halted")
    return None


# the risk figures also given flat, as a reader shows them: key -> (figures, their key)
_FLAT = {"drawdown": ("kill_switch", "drawdown"), "peak_equity": ("kill_switch", "peak_equity"),
         "kill_switch_limit": ("kill_switch", "limit"), "day_loss": ("daily_loss", "day_loss"),
         "day_start_equity": ("daily_loss", "day_start_equity"), "daily_loss_limit": ("daily_loss", "limit")}


class JournalStatus(SessionObserver):
    """Publishes the session's state to ``journal`` (``publish_status``) every ``every_seconds`` at most,
    from its own thread; the hooks only store (microseconds, under a lock). A failed write is logged
    once and retried at the next turn; nothing reaches the session. :meth:`close` publishes what is
    left and stops the thread."""

    def __init__(self, journal, every_seconds: float, *, start: bool = True):
        self.journal, self.every_seconds = journal, float(every_seconds)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._state: dict = {}
        self._session: str | None = None
        self._dirty = False
        self._failed = False
        self.published = 0  # statuses written (tests, the log)
        self.publisher_threads: set[str] = set()  # the names of the threads that wrote (tests)
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="status-publisher", daemon=True)
            self._thread.start()

    # ---- hooks (the trading loop and the broker's threads: no I/O here) ----------------------------
    def session_started(self, session: str, symbols: list[str]) -> None:
        with self._lock:
            self._session = session
            self._state = {"session": session, "symbols": list(symbols), "started_at": time.time(), "trading": False,
                           "reconnects": {}}
            self._dirty = True
        self._wake.set()  # a reader sees the session at once, before the warm-up's first bar

    def bar_decided(self, snapshot: BarSnapshot) -> None:
        values = {f.name: getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)}
        figures = values.pop("risk_figures") or {}
        with self._lock:
            self._state.update(values, kill_switch=figures.get("kill_switch"), daily_loss=figures.get("daily_loss"),
                               risk_components=figures.get("risk_components"))
            self._dirty = True

    def broker_unreachable(self, what: str) -> None:
        with self._lock:
            self._state["broker_unreachable"] = {"wall_time": time.time(), "what": what}
            self._dirty = True

    def reconnected(self, stream: str) -> None:
        with self._lock:
            reconnects = self._state.setdefault("reconnects", {})
            reconnects[stream] = reconnects.get(stream, 0) + 1
            self._state["last_reconnect"] = {"wall_time": time.time(), "stream": stream}
            self._dirty = True

    def reconciliation_mismatch(self, message: str) -> None:
        with self._lock:
            self._state["reconciliation_mismatch"] = {"wall_time": time.time(), "message": message}
            self._dirty = True

    def session_ended(self, session: str) -> None:
        with self._lock:
            self._state["ended"] = True
            self._state["ended_at"] = time.time()
            self._dirty = True
        self._wake.set()  # published at once, from the publisher's thread

    def market_closed(self, until: str) -> None:
        """The runner sleeps until the next session (``until``: when, in words): said as the state
        ``market_closed`` until a session starts."""
        with self._lock:
            if self._session is None:
                return
            self._state["market_closed_until"] = until
            self._dirty = True
        self._wake.set()

    # ---- the status and its publication -------------------------------------------------------
    def status(self) -> dict | None:
        """The JSON-ready status now (None before a session started)."""
        with self._lock:
            if self._session is None:
                return None
            state = dict(self._state)
        state["paused"] = bool(state.get("entries_paused"))
        for key, (figures, name) in _FLAT.items():
            state[key] = (state.get(figures) or {}).get(name)
        state["state"] = derive_state(state)
        state["state_reason"] = state_reason(state, state["state"])
        state["updated"] = time.time()
        return to_jsonable(state)

    def publish(self) -> bool:
        """Write the status if it changed since the last write; whether it wrote. The publisher's thread
        calls it (and :meth:`close`); never raises."""
        with self._lock:
            if not self._dirty or self._session is None:
                return False
            self._dirty = False
            session = self._session
        status = self.status()
        try:
            self.journal.publish_status(session, status)
        except Exception:
            with self._lock:
                self._dirty = True  # tried again at the next turn
            if not self._failed:
                self._failed = True
                log.exception("publishing the session's status failed (logged once; the session goes on)")
            return False
        self.published += 1
        self.publisher_threads.add(threading.current_thread().name)
        return True

    def _loop(self) -> None:
        # every every_seconds, and at once when a session starts or ends (a wake-up)
        while not self._closing:
            self._wake.wait(self.every_seconds)
            self._wake.clear()
            if not self._closing:
                self.publish()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread, publishing what is left (the ``ended`` state)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.publish()
