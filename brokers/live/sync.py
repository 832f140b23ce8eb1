"""The live broker's periodic sync with the venue: what a dropped trade update stream missed.

A sync reads open orders' fills and statuses from the list of open orders; those of orders that left
it (finished while the stream was down, or a filled bracket's legs, listed with their entry) from one
list of recently closed orders; the few found in neither one by one, at most ``order_lookups`` per sync,
so the requests do not grow with the orders followed (Alpaca allows 200 a minute). Then it settles
unconfirmed sends and compares cash and positions with the venue's (:meth:`PeriodicSync.sync_account`).
A sync pauses after each venue request for a bar that arrives meanwhile.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

from brokers.live.mapping import EPS, whole
from brokers.live.tracker import Tracked
from brokers.venue import VenueOrder, VenueUnavailable
from engine.compat import bt

log = logging.getLogger("live.broker")

# subtracted from the earliest submission time a sync's closed-orders list must cover (see
# PeriodicSync._closed_listing_start): more than any rounding of a venue's timestamp
CLOSED_LIST_MARGIN = dt.timedelta(seconds=1)


class PeriodicSync:
    observers = None  # ops.observer.Observers told of a book corrected to the broker's

    def __init__(self, venue, journal, tracker, halts, outbox, *, every_seconds: float | None,
                 order_lookups: int | None, recheck_seconds: float, bar_waiting: Callable[[], bool] | None):
        self.venue = venue
        self.journal = journal
        self.tracker = tracker
        self.halts = halts
        self.outbox = outbox
        self.every_seconds = every_seconds  # None: only at start
        self.order_lookups = order_lookups  # None: all
        self.recheck_seconds = recheck_seconds  # the next sync comes this soon after one that saw a difference
        self.bar_waiting = bar_waiting  # True while a bar waits to be processed (a sync pauses for it)
        self.last_sync = time.monotonic()
        self._syncs = 0  # syncs started
        self._in_progress = None  # the steps of a sync paused for a bar (see _steps)
        self._differences: dict = {}  # cash or symbol -> (here, at the venue) at the last sync

    def continue_sync(self) -> None:
        """Start a sync when one is due, or go on with one a bar paused: a bar that arrives while the
        sync waits for the venue is handled after that one request, not after the whole sync."""
        if self._in_progress is None:
            if self.every_seconds is None:
                return
            # a difference between the book and the venue is looked at again soon, not a whole interval later
            every = min(self.every_seconds, self.recheck_seconds) if self._differences else self.every_seconds
            if time.monotonic() - self.last_sync < every:
                return
            self._in_progress = self._steps()
        for _ in self._in_progress:
            if self.bar_waiting is not None and self.bar_waiting():
                return
        self._in_progress = None

    def sync(self) -> None:
        """One whole sync (see the module's docstring)."""
        for _ in self._steps():
            pass

    def _steps(self):
        """:meth:`sync` as a generator that pauses after each venue request. Each answer is applied
        as soon as it comes, so a pause (a bar, trade updates) never leaves a stale answer to apply."""
        self.last_sync = time.monotonic()
        self._syncs += 1
        try:
            unlisted = self._sync_from(self.venue.open_orders(),
                                       [r for r in self.tracker.tracked.values() if not r.final and r.venue_id])
            yield
            unlisted = [rec for rec in unlisted if not rec.final]  # updates may have settled some meanwhile
            after = self._closed_listing_start(unlisted)
            if after is not None:
                unlisted = self._sync_from(self.venue.closed_orders(after), unlisted)
                yield
            for rec in self._lookups(unlisted):
                if not rec.final:
                    rec.synced = self._syncs
                    self._see_synced(rec, self.venue.get_order(rec.venue_id))
                    yield
            yield from self.outbox.settle_unconfirmed()
            self.sync_account()
        except VenueUnavailable as exc:
            log.error("sync with the broker failed: %s (retried at the next sync)", exc.reason)

    def _sync_from(self, views: list[VenueOrder], records: list[Tracked]) -> list[Tracked]:
        """Apply a venue order list (legs included) to ``records``; returns those it does not hold."""
        listed = {}
        for view in views:
            listed[view.id] = view
            listed.update((leg.id, leg) for leg in view.legs)
        missing = []
        for rec in records:
            view = listed.get(rec.venue_id)
            if view is None:
                missing.append(rec)
            else:
                rec.synced = self._syncs
                self._see_synced(rec, view)
        return missing

    def _closed_listing_start(self, records: list[Tracked]) -> dt.datetime | None:
        """Where the list of closed orders must start to hold every one of ``records``, or None when no
        submission time is known (those orders are looked up one by one).

        The venue filters that list on submission time, ``after`` exclusive, and nests a bracket's legs
        under their entry (``Venue.closed_orders``), so a leg counts from its entry's submission: the
        earliest of these times, less :data:`CLOSED_LIST_MARGIN`, misses none of them. The margin only
        covers rounding on the way (Alpaca stamps in nanoseconds, a Python datetime holds microseconds):
        the time is the venue's own, so no clock difference enters. Listing from the earliest (oldest
        first) is what lets a long-lived order, such as a stop held for weeks, settle even when more
        than a page of orders closed since: what a page leaves out is looked up, and the next sync
        starts later."""
        times = []
        for rec in records:
            entry = self.tracker.tracked.get(rec.parent) if rec.parent is not None else None
            known = [t for t in (rec.submitted_at, entry.submitted_at if entry is not None else None) if t is not None]
            if known:
                times.append(min(known))
        return min(times) - CLOSED_LIST_MARGIN if times else None

    def _lookups(self, records: list[Tracked]) -> list[Tracked]:
        """The orders of ``records`` (in neither list) this sync asks about one by one: at most
        ``order_lookups``, those read from the venue longest ago first (never read: first of all), so
        every order's turn comes; the rest wait for the next sync."""
        cap = self.order_lookups
        if cap is None or len(records) <= cap:
            return records
        waiting = sorted(records, key=lambda rec: rec.synced)  # stable: in the order they were sent
        log.debug("sync: %d order(s) in neither order list wait for a later sync", len(waiting) - cap)
        return waiting[:cap]

    def _see_synced(self, rec: Tracked, view: VenueOrder | None) -> None:
        if view is None or rec.final:
            return
        tracker = self.tracker
        rec.submitted_at = rec.submitted_at or view.submitted_at
        tracker.see_trail(rec.order, view)
        if view.filled_qty > rec.venue_filled + EPS:
            tracker.fill(rec, view.filled_qty, view.filled_avg_price, tracker.fill_time(rec, view),
                         execution_id=None, position_qty=None)
        if view.status != rec.status:
            tracker.set_status(rec, view.status)

    def sync_account(self) -> None:
        """The venue's cash and positions win, but only over a difference seen at two syncs in a row
        with no fill in between: a fill on its way explains a passing difference (and would be counted
        twice if the snapshot were taken), while a trade made elsewhere, a fee or a dividend stays. The
        second look comes ``recheck_seconds`` after the first. A sync that finds no difference lifts a
        halt for a restart that found no consistent view."""
        tracker = self.tracker
        seen, self._differences = self._differences, {}
        account = self.venue.account()
        if abs(account.cash - tracker.cash) > 0.005:
            self._differences["cash"] = (tracker.cash, account.cash)
        held = self.venue.positions()
        for symbol, data in tracker.data_by_symbol.items():
            venue_qty = held[symbol].qty if symbol in held else 0.0
            if abs(tracker.positions[data].size - venue_qty) > EPS:
                self._differences[symbol] = (tracker.positions[data].size, venue_qty)
        for key, (here, there) in self._differences.items():
            if seen.get(key) != (here, there) or tracker.fills_since_sync:
                continue
            log.error("%s %g here, %g at the broker at two syncs: taking the broker's", key, here, there)
            message = f"{key} {here:g} in the book, {there:g} at the broker at two syncs: the broker's taken"
            self.journal.record_event("book_corrected", message)
            if self.observers is not None:
                self.observers.reconciliation_mismatch(message)
            if key == "cash":
                tracker.cash = account.cash
            else:
                tracker.positions[tracker.data_by_symbol[key]] = bt.Position(
                    whole(there), held[key].avg_entry_price if key in held else 0.0)
        tracker.fills_since_sync = False
        if not self._differences:
            self.halts.resume("reconcile", "a sync found the book and the broker in agreement")
