"""The orders the strategy transmitted, on their way to the venue.

:class:`Outbox` queues each family (an entry with its bracket children, or an OCO pair) until the
strategy says its orders are complete (:meth:`Outbox.send_ready`, as each decision is placed) or its
``next`` is over (:meth:`Outbox.flush`), then sends it: journal first (an ``intent`` before the send), never twice
(an id the journal has seen is not sent again; a duplicate-id refusal means "already sent" and the
venue's order is adopted). An exit of shares that open orders still hold (``exits_hold_shares``) waits
for their cancels, at most ``cancel_wait_seconds``, then parked until they are answered. A send the
venue did not answer is settled by the next sync (:meth:`settle_unconfirmed`), never sent blindly again.
"""
from __future__ import annotations

import logging
import queue
import time
from typing import Callable

from brokers.live.mapping import EPS, FallbackIds, intent_rows, legs_by_kind, members, request_for, venue_type
from brokers.venue import DuplicateClientOrderId, NotCancelable, OrderRejected, OrderRequest, VenueOrder, \
    VenueUnavailable
from engine.compat import bt

log = logging.getLogger("live.broker")


class Outbox:
    def __init__(self, broker, venue, journal, tracker, halts, *, fallback_ids: FallbackIds,
                 entry_gate: Callable[[], str | None] | None, cancel_wait_seconds: float,
                 checkpoint: Callable[[str], None]):
        self.broker = broker  # the Backtrader broker the orders are submitted to
        self.venue = venue
        self.journal = journal
        self.tracker = tracker
        self.halts = halts
        self.fallback_ids = fallback_ids
        self.entry_gate = entry_gate
        self.cancel_wait_seconds = cancel_wait_seconds
        self.checkpoint = checkpoint
        self._families: dict[int, list] = {}  # root ref -> members until the last is transmitted
        self._queued: list[list] = []  # transmitted families, sent at the next flush
        self._parked: list[list] = []  # exits waiting for the cancel of the orders holding their shares
        self._unconfirmed: list[list] = []  # [family, request] the venue did not answer
        self._logged_refusals: set[str] = set()  # take-profit refusals logged once
        self._sent_early = 0  # families send_ready sent since the last flush

    # ---- queueing ------------------------------------------------------------------------------
    def queue(self, order, oco=None):
        """Queue an order (BackBroker's parent/children rules); a family goes out when its last member
        is transmitted, and is sent by :meth:`send_ready` or :meth:`flush`."""
        notify = self.tracker.notify
        if oco is not None:
            pair, refusal = self._oco_pair(order, oco)
            if pair is not None:  # sent with its stop, as one OCO order
                pair.append(order)
                order.submit(self.broker)
                notify(order)
                return order
            order.addinfo(**refusal)
        root = order.parent.ref if order.parent is not None else order.ref
        if order.parent is not None and root not in self._families:
            order.reject(self.broker)  # its entry was already sent or refused: Backtrader rejects it too
            notify(order)
            return order
        family = self._families.setdefault(root, [])
        family.append(order)
        if order.transmit:
            for member in self._families.pop(root):
                member.submit(self.broker)
                notify(member)
            self._queued.append(family)
        return order

    def _oco_pair(self, order, oco) -> tuple[list | None, dict]:
        """The unsent family of ``oco`` that ``order`` joins as an OCO pair; else (None, the info that
        refuses ``order``). A take-profit that cannot be in an OCO with its stop (the venue's
        ``oco_refusal``, e.g. a trailing stop) is marked ``_dropped``: refused and journaled when sent,
        while the stop goes alone."""
        family = next((f for f in self._queued if any(member.ref == oco.ref for member in f)), None)
        o = bt.Order
        if family is None or len(family) != 1 or order.parent is not None or not order.transmit:
            return None, {"_refused": "one-cancels-other is supported live only between a stop and a take-profit "
                                      "placed together in one bar, outside a bracket"}
        if order.data is not oco.data or order.isbuy() != oco.isbuy() or order.valid != oco.valid \
                or abs(order.created.size) != abs(oco.created.size):
            return None, {"_refused": "a one-cancels-other pair live is two orders of one symbol, side, size "
                                      "and validity"}
        kinds = {order.exectype, oco.exectype}
        if kinds not in ({o.Stop, o.Limit}, {o.StopLimit, o.Limit}, {o.StopTrail, o.Limit}):
            return None, {"_refused": "one-cancels-other pairs live are a stop (or stop-limit) with a take-profit "
                                      "limit order"}
        target, stop = (order, oco) if order.exectype == o.Limit else (oco, order)
        capabilities = self.venue.capabilities
        dropped = capabilities.oco_refusal(venue_type(stop))
        if dropped:
            target.addinfo(_dropped=dropped)
            return None, {}
        if (target.created.price > stop.created.price) != stop.issell():
            target.addinfo(_dropped=f"the take-profit ({target.created.price:.4f}) is not "
                                    f"{'above' if stop.issell() else 'below'} the stop ({stop.created.price:.4f}), "
                                    f"which {capabilities.name}'s OCO orders require: the stop goes alone")
            return None, {}
        return family, {}

    def drop_unsent(self, order) -> bool:
        """Cancel ``order`` (and its family) if it is still here, not sent; whether it was."""
        for waiting in (self._queued, self._parked):
            for family in waiting:
                if order in family:
                    for member in family:
                        member.cancel()
                        self.tracker.notify(member)
                    waiting.remove(family)
                    return True
        return False

    def cancel(self, rec) -> bool:
        """Ask the venue to cancel a sent order; its end arrives as a trade update."""
        if rec.venue_id is None:
            return False
        canceling = self.tracker.canceling
        rec.cancel_requested = True
        canceling.setdefault(rec.symbol, set()).add(rec.client_order_id)
        try:
            self.venue.cancel(rec.venue_id)
        except NotCancelable as exc:
            (log.debug if self.tracker.group_canceling(rec) else log.info)("cancel %s: %s", rec.client_order_id,
                                                                          exc.reason)
            canceling[rec.symbol].discard(rec.client_order_id)
            return False
        except VenueUnavailable as exc:
            log.error("cancel %s not sent: %s", rec.client_order_id, exc.reason)
            canceling[rec.symbol].discard(rec.client_order_id)
            return False
        return True

    # ---- sending -------------------------------------------------------------------------------
    def send_ready(self) -> int:
        """Send now, while the strategy's ``next`` goes on, the transmitted families that wait for no
        cancel: a bar's first order leaves once it is decided, not after the whole decision. The
        venue's answers are taken in first (a cancel answered frees the exit waiting for it); the
        families go in :meth:`flush`'s order (the strategy's, an exit waiting for cancels after them:
        it stays queued for :meth:`flush`). Returns the number of families sent (or refused)."""
        if not self._queued:
            return 0
        queued, self._queued = self._queued, []
        with self.journal.batch():
            self._queued = self._send_unheld(queued)
        sent = len(queued) - len(self._queued)
        self._sent_early += sent
        return sent

    def flush(self) -> int:
        """Send what the strategy transmitted during its ``next`` and :meth:`send_ready` left (after
        taking in the venue's answers to its cancels: an exit waits until the orders holding its shares
        are canceled), in one journal transaction. Returns the number of families the bar sent (or
        refused), those :meth:`send_ready` sent included."""
        queued, self._queued = self._queued, []
        sent, self._sent_early = self._sent_early + len(queued), 0
        if queued:
            with self.journal.batch():
                self._send_queued(queued)
        return sent

    def _send_unheld(self, queued: list) -> list:
        """Take in the venue's answers, then send, in the strategy's order, each family that waits for
        no cancel; returns those that wait (exits whose shares canceled orders still hold)."""
        self.tracker.take_updates()
        held = []
        for family in queued:
            if self.waits_for_cancels(family[0]):
                held.append(family)
            else:
                self._send(family)
        return held

    def _send_queued(self, queued: list) -> None:
        if not queued:
            return
        for family in self._send_unheld(queued):  # exits waiting for cancels: after the others
            self._await_cancels(family[0])
            if self.waits_for_cancels(family[0]):
                self._parked.append(family)
            else:
                self._send(family)

    def _await_cancels(self, entry) -> None:
        """Take trade updates until the cancels holding ``entry``'s shares are answered (a venue answers
        in milliseconds), or ``cancel_wait_seconds`` pass; then the exit waits parked."""
        deadline = time.monotonic() + self.cancel_wait_seconds
        while self.waits_for_cancels(entry):
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("exit %s waits for the cancel of %s", entry.info.get("client_order_id"),
                         ", ".join(sorted(self.tracker.canceling.get(entry.data._name, ()))))
                return
            try:
                update = self.venue.updates.get(timeout=left)
            except queue.Empty:
                return
            self.tracker.on_update(update)

    def waits_for_cancels(self, entry) -> bool:
        """At a venue whose open orders hold their shares, an exit waits for the canceled orders of its
        side (a sell for the canceled stop) to be gone."""
        canceling = self.tracker.canceling.get(entry.data._name)
        if not canceling or not self.venue.capabilities.exits_hold_shares:
            return False
        side = "buy" if entry.isbuy() else "sell"
        return any(self.tracker.tracked[cid].side == side for cid in canceling)

    def release_parked(self) -> None:
        parked, self._parked = self._parked, []
        for family in parked:
            entry = family[0]
            if self.waits_for_cancels(entry):
                self._parked.append(family)
            elif entry.issell() and self.tracker.positions[entry.data].size <= 0 < abs(entry.created.size):
                reason = "the position was closed meanwhile (by the order being canceled)"
                log.warning("exit %s not sent: %s", entry.info.get("client_order_id"), reason)
                self.tracker.refuse(family, reason)
            else:
                self._send(family)

    def _send(self, family: list) -> None:
        tracker, entry = self.tracker, family[0]
        for order in family:
            if not order.info.get("client_order_id"):
                order.addinfo(client_order_id=self.fallback_ids.next_for(order))
        problem = next((o.info.get("_refused") for o in family if o.info.get("_refused")), None)
        request = None
        if problem is None:
            try:
                request = request_for(family, opens_position=tracker.opens_position,
                                      venue_name=self.venue.capabilities.name)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            log.warning("order %s refused: %s", entry.info["client_order_id"], problem)
            for order in family:
                tracker.observe(order.info["client_order_id"], order.data._name, "rejected", problem)
            tracker.refuse(family, problem)
            return
        cid = request.client_order_id
        known = self.journal.order(cid) if cid in tracker.journal_ids else None
        if known is not None and known.venue_order_id is None and known.status in ("rejected", "abandoned"):
            tracker.refuse(family, known.status_reason or known.status)  # decided again: same answer
            return
        if known is not None and known.status != "intent":
            self.bind(family, request, self.venue.order_by_client_id(cid))
            return
        reason = self.held_back(entry, cid)
        if reason:
            if known is None:
                self._record_intents(request, family)
            tracker.journal_family(request, "rejected", reason)
            tracker.refuse(family, reason)
            return
        if known is None:
            self._record_intents(request, family)
        self.checkpoint("after_intent")
        try:
            view = self.venue.submit(request)
        except DuplicateClientOrderId:
            view = self.venue.order_by_client_id(cid)
            log.info("order %s was already at the broker: adopted, not sent again", cid)
        except OrderRejected as exc:
            log.warning("broker rejected order %s (%s %g %s): %s", cid, request.side, request.qty,
                        request.symbol, exc.reason)
            tracker.journal_family(request, "rejected", exc.reason)
            tracker.refuse(family, exc.reason)
            return
        except VenueUnavailable as exc:
            log.error("order %s: %s; its fate is checked at the next sync, it is not sent again blindly",
                      cid, exc.reason)
            self._unconfirmed.append([family, request])
            return
        self.checkpoint("after_submit")
        self.bind(family, request, view)

    def _record_intents(self, request: OrderRequest, family: list) -> None:
        rows = intent_rows(request, family)
        self.journal.record_intents(rows)
        self.tracker.journal_ids.update(row["client_order_id"] for row in rows)
        for row in rows:
            self.tracker.observe(row["client_order_id"], row["symbol"], "intent")

    def held_back(self, entry, cid: str) -> str | None:
        """Why a family is journaled and refused rather than sent: a take-profit dropped from its pair
        (logged once per reason); a long-only strategy's sell of more than the long position held (the
        book is the broker's, reconciled at start); or, for an entry, a halt, an operator's pause or the entry
        gate's reason."""
        dropped = entry.info.get("_dropped")
        if dropped:
            if dropped not in self._logged_refusals:
                self._logged_refusals.add(dropped)
                log.warning("take-profit %s not sent: %s", cid, dropped)
            else:
                log.debug("take-profit %s not sent: %s", cid, dropped)
            return dropped
        held = self.tracker.positions[entry.data].size
        if entry.issell() and getattr(entry.owner, "long_only", False) and abs(entry.created.size) > held + EPS:
            reason = (f"a sell of {abs(entry.created.size):g} {entry.data._name} with {held:g} held would leave a "
                      f"long-only strategy short")
            log.error("order %s not sent: %s", cid, reason)
            return reason
        if self.tracker.opens_position(entry):
            reason = self.halts.reason() or self.halts.paused or (self.entry_gate() if self.entry_gate else None)
            if reason:
                log.warning("entry %s not sent: %s", cid, reason)
                return reason
        return None

    def bind(self, family: list, request: OrderRequest, view: VenueOrder | None) -> None:
        """Follow the venue's order (and legs) as these Backtrader orders; tell them what it did so far."""
        tracker = self.tracker
        if view is None:
            reason = "the broker does not know this order"
            tracker.journal_family(request, "rejected", reason)
            tracker.refuse(family, reason)
            return
        views = legs_by_kind(view)
        for order, cid, parent, kind in members(request, family):
            if parent is None:  # the order itself: an entry, or an oco's take-profit
                tracker.follow(cid, view, order, leg=kind)
                continue
            leg_view = views.get(kind)
            rec = tracker.follow(cid, leg_view, order, parent=parent, leg=kind)
            if leg_view is None:
                rec.status = view.status if view.final else "held"
        for order in family:
            tracker.catch_up(tracker.by_ref[order.ref])

    def settle_unconfirmed(self):
        """The sends the venue did not answer: followed if it has them, else refused; a generator that
        pauses after each venue request (see ``brokers.live.sync``)."""
        unconfirmed, self._unconfirmed = self._unconfirmed, []
        for family, request in unconfirmed:
            view = self.venue.order_by_client_id(request.client_order_id)
            if view is not None:
                self.bind(family, request, view)
            else:
                reason = "not sent: the broker was unreachable"
                self.tracker.journal_family(request, "rejected", reason)
                self.tracker.refuse(family, reason)
            yield
