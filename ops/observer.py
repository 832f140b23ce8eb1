"""What the live path tells the operations layer (metrics, alerts): one observer interface, called
from the trading loop, the broker and the streams.

The live code calls :class:`Observers` (a fan-out); each observer's methods must return in
microseconds (a Prometheus gauge set, a queue put: the network is another thread's job) and whatever
one raises is logged and swallowed: watching a session never stops it.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

log = logging.getLogger("live.ops")


@dataclass
class BarSnapshot:
    """The account and the strategy right after a bar was decided, its orders sent and journaled.
    A value a strategy does not have (no kill switch, no model) is None."""

    session: str                       # the deployment's name (order id prefix + strategy)
    bar_datetime: dt.datetime          # the bar's (exchange) time
    wall_time: float                   # time.time() when the bar was decided
    equity: float
    cash: float
    daily_pnl: float                   # equity now minus equity at the day's first bar
    exposure: float                    # gross market value of the positions / equity
    open_positions: int
    open_orders: int
    trading: bool                      # False while the strategy only warms up
    bar_to_order_seconds: float | None = None   # bar released to the bar's orders sent (bars with orders)
    feature_seconds: float | None = None        # the bar's feature update
    entries_halted: str | None = None           # why the broker halts new entries (stale feed, mismatch ...)
    kill_switch_tripped: bool | None = None
    daily_loss_limit_reached: bool | None = None
    risk_score: float | None = None             # the mean risk score of the bar's entry candidates
    confidences: list[float] = field(default_factory=list)  # the bar's model confidences
    calibration_error: float | None = None      # expected calibration error of resolved predictions so far
    feature_drift_psi: dict[str, float] | None = None  # feature -> PSI of live values against training
    model_id: str | None = None
    model_trained_at: dt.datetime | None = None  # UTC, when the traded model was fitted
    model_training_window: list[str] | None = None  # first and last bar (ISO) of its training rows
    entries_halted_by: str | None = None        # what halts them: "broker" (a journal/broker difference) or "feed"
    entries_paused: dict | None = None          # an operator's pause (ops.controls): who, at (UTC), control_id
    risk_figures: dict = field(default_factory=dict)  # the strategy's risk_figures(): kill_switch, daily_loss


class SessionObserver:
    """The hooks, each a no-op here: an observer overrides those it needs."""

    def session_started(self, session: str, symbols: list[str]) -> None:
        pass

    def bar_received(self, symbol: str, bar_datetime: dt.datetime, wall_time: float) -> None:
        """A bar reached the process (history or live); ``wall_time``: time.time() on arrival."""

    def bar_decided(self, snapshot: BarSnapshot) -> None:
        pass

    def order_status(self, client_order_id: str, symbol: str, status: str, reason: str | None = None) -> None:
        """An order reached ``status`` (intent, new, filled, canceled, rejected, ...)."""

    def broker_unreachable(self, what: str) -> None:
        """A request to the broker failed after its retries (``what``: the request and the error)."""

    def reconnected(self, stream: str) -> None:
        """A websocket (``trades``, ``bars`` or ``news``) connected again after a drop."""

    def reconciliation_mismatch(self, message: str) -> None:
        """The journal and the broker disagree (at a restart, a sync, or the daily reconciliation)."""

    def session_ended(self, session: str) -> None:
        pass


class Observers(SessionObserver):
    """Calls every observer in turn; an observer's exception is logged once per hook, never raised."""

    def __init__(self, *observers: SessionObserver):
        self.observers = [o for o in observers if o is not None]
        self._failed: set[tuple[int, str]] = set()

    def add(self, observer: SessionObserver) -> None:
        self.observers.append(observer)

    def _call(self, hook: str, *args, **kwargs) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args, **kwargs)
            except Exception:
                key = (id(observer), hook)
                if key not in self._failed:
                    self._failed.add(key)
                    log.exception("%s.%s failed (logged once; the session goes on)", type(observer).__name__, hook)

    def session_started(self, session, symbols):
        self._call("session_started", session, symbols)

    def bar_received(self, symbol, bar_datetime, wall_time):
        self._call("bar_received", symbol, bar_datetime, wall_time)

    def bar_decided(self, snapshot):
        self._call("bar_decided", snapshot)

    def order_status(self, client_order_id, symbol, status, reason=None):
        self._call("order_status", client_order_id, symbol, status, reason)

    def broker_unreachable(self, what):
        self._call("broker_unreachable", what)

    def reconnected(self, stream):
        self._call("reconnected", stream)

    def reconciliation_mismatch(self, message):
        self._call("reconciliation_mismatch", message)

    def session_ended(self, session):
        self._call("session_ended", session)
