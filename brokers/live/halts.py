"""Why new entries are held back (exits still go out): a restart's book the journal cannot explain,
or no consistent view of the venue at start. Each cause is logged and journaled once, until resumed.
An operator's pause (``ops.controls``) is held apart, in ``paused``: it is no mismatch of the book."""
from __future__ import annotations

import logging

log = logging.getLogger("live.broker")


class EntryHalts:
    observers = None  # ops.observer.Observers told of each halt (a journal/broker difference)

    def __init__(self, journal):
        self.journal = journal
        self.reasons: dict[str, str] = {}  # by cause
        self.paused: str | None = None  # why an operator paused new entries (set by ops.controls.ControlDesk)

    def halt(self, key: str, reason: str) -> None:
        """Hold back new entries for ``reason``; logged and journaled once."""
        if self.reasons.get(key) == reason:
            return
        self.reasons[key] = reason
        log.error("new entries halted: %s", reason)
        self.journal.record_event("halt", reason)
        if self.observers is not None:
            self.observers.reconciliation_mismatch(reason)

    def resume(self, key: str, why: str) -> None:
        if self.reasons.pop(key, None) is not None:
            log.warning("new entries resume: %s", why)
            self.journal.record_event("resume", why)

    def reason(self) -> str | None:
        """The first cause holding entries back, if any."""
        return next(iter(self.reasons.values()), None)
