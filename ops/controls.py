"""An operator's commands to a live session: written into the journal's ``controls`` table (by
``run.py dashboard``, or ``Journal.request_control``), applied by the session at its next traded bar.

- ``pause``: no new entries (exits still go) until ``resume``. A gate of the broker's, like its
  halts (``brokers.live.halts``), so it holds for every strategy; kept in the journal's meta
  (:data:`PAUSE_META`), so it survives a restart.
- ``reset_kill_switch``: the strategy's ``reset_kill_switch(equity)`` (only a strategy with a
  drawdown kill switch has one that does something); its saved state carries the reset.
- ``flatten``: the strategy's ``flatten(symbol)``: sell one symbol's position, or every one, with the
  bar's orders (exit reason ``manual``). It does not pause: the strategy may enter again.

:class:`ControlDesk` applies them: on the trading thread, at the top of the strategy's bar, before it
decides (``PortfolioStrategy.next``), one indexed SELECT a bar while nothing is pending. Each is
resolved ``applied`` or ``refused`` with a message and the bar's datetime, logged, and journaled as a
``control`` event.
"""
from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger("live.controls")

PAUSE, RESUME, RESET_KILL_SWITCH, FLATTEN = "pause", "resume", "reset_kill_switch", "flatten"
ACTIONS = (PAUSE, RESUME, RESET_KILL_SWITCH, FLATTEN)
PAUSE_META = "entries_paused"  # the journal's meta: {"who", "at", "control_id", "bar_datetime"} while paused, else null
APPLIED, REFUSED = "applied", "refused"


class ControlRefused(Exception):
    """A control the strategy cannot apply; the message says why (the control's ``message``)."""


def validate(action: str, symbol: str | None, symbols) -> str | None:
    """Why a control is refused before it is tried (an unknown action, a flatten of a symbol this
    session does not trade, a symbol given to an action that takes none); None: it may be applied."""
    if action not in ACTIONS:
        return f"unknown action {action!r}: one of {', '.join(ACTIONS)}"
    if action == FLATTEN:
        if symbol is not None and symbol not in symbols:
            return f"{symbol} is not traded by this session ({', '.join(sorted(symbols))})"
    elif symbol is not None:
        return f"{action} takes no symbol (got {symbol})"
    return None


def pause_reason(pause: dict) -> str:
    """The broker's refusal of an entry while paused."""
    return f"entries paused by {pause.get('who') or 'an operator'} at {pause.get('at')} UTC (resume to trade again)"


def _utcnow() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


class ControlDesk:
    """The session's side of the controls: the pause restored from the journal at start (into the
    broker's ``halts.paused``), then :meth:`apply` at each traded bar."""

    def __init__(self, journal, halts, symbols):
        self.journal, self.halts, self.symbols = journal, halts, set(symbols)
        self.paused: dict | None = journal.get_meta(PAUSE_META)
        self._set_gate()
        if self.paused:
            log.warning("new entries stay paused: %s", pause_reason(self.paused))

    def _set_gate(self) -> None:
        self.halts.paused = pause_reason(self.paused) if self.paused else None

    def apply(self, strategy, bar_datetime: dt.datetime) -> int:
        """Apply the pending controls, oldest first, at the bar of ``bar_datetime`` (called by the
        strategy before it decides); returns how many."""
        if not self.journal.has_pending_controls():  # the cost of a bar without controls: one small SELECT
            return 0
        pending = self.journal.pending_controls()
        for control in pending:
            action, symbol, who = control["action"], control["symbol"], control["who"]
            try:
                refusal = validate(action, symbol, self.symbols)
                if refusal is not None:
                    raise ControlRefused(refusal)
                status, message = APPLIED, self._apply(control, strategy, bar_datetime)
            except ControlRefused as exc:
                status, message = REFUSED, str(exc)
            except Exception as exc:  # a bug must not end the session: refused, logged with its trace
                log.exception("control #%s %s failed", control["id"], action)
                status, message = REFUSED, f"failed: {type(exc).__name__}: {exc}"
            what = f"{action}{' ' + symbol if symbol else ''}"
            (log.warning if status == APPLIED else log.error)("control #%s %s by %s at the bar of %s: %s: %s",
                                                              control["id"], what, who, bar_datetime, status, message)
            self.journal.resolve_control(control["id"], status, message, bar_datetime)
            self.journal.record_event("control", f"#{control['id']} {what} by {who}: {status}: {message}")
        return len(pending)

    def _apply(self, control: dict, strategy, bar_datetime: dt.datetime) -> str:
        action = control["action"]
        if action == PAUSE:
            if self.paused:
                raise ControlRefused(f"already {pause_reason(self.paused)}")
            self.paused = {"who": control["who"], "at": _utcnow(), "control_id": control["id"],
                           "bar_datetime": bar_datetime.isoformat()}
            self.journal.set_meta(PAUSE_META, self.paused)
            self._set_gate()
            return "new entries paused from this bar (exits still go; it survives a restart) until resume"
        if action == RESUME:
            if not self.paused:
                raise ControlRefused("entries are not paused")
            was = self.paused
            self.paused = None
            self.journal.set_meta(PAUSE_META, None)
            self._set_gate()
            return f"new entries allowed from this bar (paused by {was.get('who')} at {was.get('at')} UTC)"
        if action == RESET_KILL_SWITCH:
            return strategy.reset_kill_switch(strategy.broker.getvalue())
        return strategy.flatten(control["symbol"])
