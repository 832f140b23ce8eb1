"""Entry gates on the account's equity: the daily loss limit and the drawdown kill switch.

Both are fed ``update(timestamp, equity)`` once per bar (timestamps never go back) and persist
across restarts with ``to_dict()`` / ``from_dict()`` (JSON-ready). A trading day is the calendar
date of the timestamp as given: pass exchange-local times (Backtrader's naive datetimes are).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pandas as pd

from config.schema import RiskConfig


def _timestamp(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError("timestamp is missing")
    return ts


def _check_equity(equity: float) -> float:
    equity = float(equity)
    if not math.isfinite(equity):
        raise ValueError(f"equity must be a finite number (got {equity})")
    return equity


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)


class DailyLossLimit:
    """No new entries for the rest of a day once equity fell ``limit`` from the day's start.

    The day's starting equity is the last equity seen before the day's first update (the previous
    day's close), so an overnight gap counts toward the day's loss; the first update ever starts
    its own day. Once blocked, the day stays blocked even if equity recovers. On daily bars "the
    rest of the day" is the decisions taken at that bar; intraday, every later bar of that date.
    """

    def __init__(self, limit: float):
        self.limit = float(limit)
        self.day: dt.date | None = None
        self.day_start_equity: float | None = None
        self.last_equity: float | None = None
        self.last_timestamp: pd.Timestamp | None = None
        self.blocked = False
        self.reason = ""

    @classmethod
    def from_config(cls, config: RiskConfig) -> DailyLossLimit:
        return cls(config.daily_loss_limit)

    @property
    def day_loss(self) -> float:
        """Loss since the day's start as a fraction of it (negative for a gain)."""
        if not self.day_start_equity or self.last_equity is None or self.day_start_equity <= 0:
            return 0.0
        return 1.0 - self.last_equity / self.day_start_equity

    def update(self, timestamp, equity: float) -> bool:
        """Record the equity at ``timestamp``; True while entries are blocked."""
        ts, equity = _timestamp(timestamp), _check_equity(equity)
        if self.last_timestamp is not None and ts < self.last_timestamp:
            raise ValueError(f"timestamp {ts} is before the previous one {self.last_timestamp}")
        day = ts.date()
        if day != self.day:
            self.day = day
            self.day_start_equity = equity if self.last_equity is None else self.last_equity
            self.blocked, self.reason = False, ""
        self.last_equity, self.last_timestamp = equity, ts
        if not self.blocked and self.day_loss >= self.limit:
            self.blocked = True
            self.reason = (f"daily loss limit: equity {equity:,.2f} is {self.day_loss:.2%} below the day's start "
                           f"{self.day_start_equity:,.2f} at {ts} (limit {self.limit:.2%}); no new entries on {day}")
        return self.blocked

    def to_dict(self) -> dict:
        return {"limit": self.limit, "day": None if self.day is None else self.day.isoformat(),
                "day_start_equity": self.day_start_equity, "last_equity": self.last_equity,
                "last_timestamp": _iso(self.last_timestamp), "blocked": self.blocked, "reason": self.reason}

    @classmethod
    def from_dict(cls, state: dict, limit: float | None = None) -> DailyLossLimit:
        """Restore a saved state; ``limit`` (the configured one) applies from now on when given."""
        gate = cls(state["limit"] if limit is None else limit)
        gate.day = None if state["day"] is None else dt.date.fromisoformat(state["day"])
        gate.day_start_equity, gate.last_equity = state["day_start_equity"], state["last_equity"]
        gate.last_timestamp = _parse(state["last_timestamp"])
        gate.blocked, gate.reason = state["blocked"], state["reason"]
        return gate


class DrawdownKillSwitch:
    """Latches when equity falls ``limit`` below its peak: flatten, no new entries, until :meth:`reset`.

    Records when and why it tripped. Only an explicit act clears it: :meth:`reset` (a user's
    command), or restoring a saved state under a different configured limit (a config change,
    see :meth:`from_dict`). A plain restart restores the latch.
    """

    def __init__(self, limit: float):
        self.limit = float(limit)
        self.peak_equity: float | None = None
        self.tripped = False
        self.tripped_at: pd.Timestamp | None = None
        self.reason = ""

    @classmethod
    def from_config(cls, config: RiskConfig) -> DrawdownKillSwitch:
        return cls(config.max_drawdown)

    def drawdown(self, equity: float) -> float:
        """(peak - equity) / peak; 0 before the first update."""
        if not self.peak_equity or self.peak_equity <= 0:
            return 0.0
        return 1.0 - equity / self.peak_equity

    def update(self, timestamp, equity: float) -> bool:
        """Record the equity at ``timestamp``; True once tripped (and until reset)."""
        ts, equity = _timestamp(timestamp), _check_equity(equity)
        if self.tripped:
            return True
        self.peak_equity = equity if self.peak_equity is None else max(self.peak_equity, equity)
        drawdown = self.drawdown(equity)
        if drawdown >= self.limit:
            self.tripped, self.tripped_at = True, ts
            self.reason = (f"kill switch: equity {equity:,.2f} is {drawdown:.2%} below its peak "
                           f"{self.peak_equity:,.2f} at {ts} (limit {self.limit:.2%}); flattened, entries halted "
                           f"until an explicit reset")
        return self.tripped

    def reset(self, equity: float) -> None:
        """Clear the latch; the peak restarts at ``equity`` (else it would trip again at once)."""
        self.peak_equity = _check_equity(equity)
        self.tripped, self.tripped_at, self.reason = False, None, ""

    def to_dict(self) -> dict:
        return {"limit": self.limit, "peak_equity": self.peak_equity, "tripped": self.tripped,
                "tripped_at": _iso(self.tripped_at), "reason": self.reason}

    @classmethod
    def from_dict(cls, state: dict, limit: float | None = None) -> DrawdownKillSwitch:
        """Restore a saved state. A latch tripped under another limit than ``limit`` (the user
        changed ``risk.max_drawdown``) is cleared; the saved peak stays, so the next update trips
        again if the drawdown is still beyond the new limit."""
        switch = cls(state["limit"] if limit is None else limit)
        switch.peak_equity = state["peak_equity"]
        if state["tripped"] and switch.limit == state["limit"]:
            switch.tripped, switch.tripped_at, switch.reason = True, _parse(state["tripped_at"]), state["reason"]
        return switch


@dataclass(frozen=True)
class EntryGate:
    """Whether new entries may go ahead this bar; ``flatten``: close every position (kill switch)."""

    allowed: bool
    flatten: bool
    reason: str


def entries_allowed(daily_loss: DailyLossLimit, kill_switch: DrawdownKillSwitch) -> EntryGate:
    """Combine the two gates (after their ``update``); the kill switch's reason comes first."""
    if kill_switch.tripped:
        return EntryGate(False, True, kill_switch.reason)
    if daily_loss.blocked:
        return EntryGate(False, False, daily_loss.reason)
    return EntryGate(True, False, "")
