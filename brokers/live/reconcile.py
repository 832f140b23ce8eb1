"""A restart: one consistent view of the venue becomes the live broker's book and orders.

On start, cash and positions are read before and after the venue's orders, again until they agree;
the journal's open orders (a filled entry's open legs included) are matched with the venue's by client
order id, and each fill the journal lacks is recorded once (at the venue's time); venue orders the
journal does not know are adopted; trade updates that came meanwhile are applied after, a fill already
in the view recognised by its order's filled quantity. The venue's positions must be what the journal's
fills explain, else new entries halt (:meth:`Reconciler.check_book`). A restored strategy reclaims its
orders by id (:meth:`Reconciler.claim`), exits in flight too, and hears what happened while it was down,
at the times it happened.
"""
from __future__ import annotations

import collections
import logging
from typing import Callable

from brokers.live.mapping import EPS, exectype_of, legs_by_kind, whole
from brokers.live.tracker import Tracked
from brokers.venue import VenueOrder
from engine.compat import bt

log = logging.getLogger("live.broker")

RECONCILE_READS = 5  # reads of the venue a restart makes at most for one consistent view
BASELINE_KEY = "positions_baseline"  # journal meta: the positions the account held when the journal began


class Reconciler:
    def __init__(self, venue, journal, tracker, halts, *, checkpoint: Callable[[str], None]):
        self.venue = venue
        self.journal = journal
        self.tracker = tracker
        self.halts = halts
        self.checkpoint = checkpoint
        self.unsent_at_start: list[str] = []  # intents the journal holds that never reached the venue

    def reconcile(self) -> None:
        """Take one consistent view of the venue and make it the book (see :meth:`_read_venue`): cash
        and positions from the venue; the journal's open orders (a filled entry's open legs too) matched
        with the venue's by client order id, their fills recorded once each; the venue's open orders the
        journal does not know adopted. Trade updates that arrived meanwhile wait in the venue's queue
        and are applied after this (a fill already in the view is recognised by its order's filled
        quantity and not booked again). Then :meth:`check_book`."""
        tracker = self.tracker
        rows = self.journal.orders()
        tracker.journal_ids = {row.client_order_id for row in rows}
        families = open_families(rows)
        account, held, views, listed = self._read_venue(families)
        tracker.cash = account.cash
        for symbol, position in held.items():
            data = tracker.data_by_symbol.get(symbol)
            if data is None:
                tracker.foreign_positions[symbol] = position
                log.warning("the account holds %g %s, a symbol this strategy does not trade: kept, not managed",
                            position.qty, symbol)
            else:
                tracker.positions[data] = bt.Position(whole(position.qty), position.avg_entry_price)
                log.info("adopted position %s %g @ %.4f", symbol, position.qty, position.avg_entry_price)
        for root, members in families.values():
            view = views[root.client_order_id]
            if view is not None:
                log.info("order %s reached the broker before the restart: adopted (%s)", root.client_order_id,
                         view.status)
                self._track_view(view, root, members)
            elif root.status == "intent":
                self._track_unsent(root, members)
            else:
                log.warning("order %s (%s in the journal) is unknown to the broker: marked rejected",
                            root.client_order_id, root.status)
                for row in [root, *members]:
                    if row.open:
                        tracker.journal_status(row.client_order_id, "rejected", "unknown to the broker on restart")
        for view in listed:
            if view.client_order_id not in tracker.tracked and view.id not in tracker.by_venue_id:
                log.warning("adopting %s order %s (%s %g %s) not in the journal", view.status,
                            view.client_order_id, view.side, view.qty, view.symbol)
                tracker.adopt(view, already_booked=True)
        self.check_book(held)

    def _read_venue(self, families: dict) -> tuple:
        """(account, positions, {root client id: venue order or None}, open orders) as one consistent
        view: the account and positions are read before and after the orders, and the whole read again
        while they differ (a fill happened in between: the orders read may hold it and the positions not,
        or the reverse). After ``RECONCILE_READS`` reads that never agree, the last one is taken and new
        entries are halted until a sync finds the book and the venue agree."""
        before = self._account_view()
        for attempt in range(1, RECONCILE_READS + 1):
            self.checkpoint("reconcile")
            views = {cid: self._venue_order(root, members) for cid, (root, members) in families.items()}
            listed = self.venue.open_orders()
            after = self._account_view()
            if same_account(before, after):
                break
            log.info("reconcile: the broker's cash or positions changed while its orders were read (a fill): "
                     "reading again (%d of %d)", attempt, RECONCILE_READS)
            before = after
        else:
            self.halts.halt("reconcile", f"the broker's cash and positions kept changing over {RECONCILE_READS} "
                                         f"reads of its orders: no consistent view to start from")
        return (*after, views, listed)

    def _account_view(self) -> tuple:
        return self.venue.account(), self.venue.positions()

    def _venue_order(self, root, members) -> VenueOrder | None:
        """The venue's order for a journal family, legs nested (by the venue's id when the journal has it)."""
        if root.venue_order_id is not None:
            view = self.venue.get_order(root.venue_order_id)
            if view is not None:
                return view
        view = self.venue.order_by_client_id(root.client_order_id)
        if view is not None and members and not view.legs:  # a listing without its legs
            view = self.venue.get_order(view.id) or view
        return view

    def check_book(self, held: dict) -> None:
        """The venue's positions must be what the journal explains: the positions the account held when
        this journal started (its baseline) plus every fill recorded since. A difference is a trade this
        deployment does not know of, or a fill lost or booked twice: new entries halt (exits still go
        out) until the positions are adopted (``python run.py live --adopt-positions``)."""
        fills = self.journal.fills()
        if self.journal.get_meta(BASELINE_KEY) is None:
            # a new journal (or one from before baselines were kept): what the account holds now is right
            adopt_venue_positions(self.venue, self.journal, held=held, quiet=not fills)
        expected = collections.defaultdict(float, self.journal.get_meta(BASELINE_KEY))
        for symbol, qty in net_fills(fills).items():
            expected[symbol] += qty
        differences = {}
        for symbol in self.tracker.data_by_symbol:
            there = held[symbol].qty if symbol in held else 0.0
            if abs(expected[symbol] - there) > EPS:
                differences[symbol] = (expected[symbol], there)
        if differences:
            words = ", ".join(f"{symbol} {there:g} at the broker, {here:g} by the journal"
                              for symbol, (here, there) in sorted(differences.items()))
            self.halts.halt("positions", f"the broker's positions differ from what the journal's fills explain "
                                         f"({words}): new entries halted; if the broker is right (a trade made "
                                         f"outside this deployment), restart with --adopt-positions")

    def _track_unsent(self, root, members) -> None:
        for row in [root, *members]:
            self.tracker.tracked[row.client_order_id] = Tracked(
                row.client_order_id, row.symbol, row.side, row.qty, status="intent",
                parent=row.parent_client_order_id, leg=row.leg, info=row.info)
        self.unsent_at_start.append(root.client_order_id)

    def _track_view(self, view: VenueOrder, root, members) -> None:
        """Follow a journal family the venue knows as the venue shows it, legs by kind; fills the journal
        lacks are recorded, not booked (they are in the positions read with it)."""
        tracker = self.tracker
        rec = Tracked(root.client_order_id, view.symbol, view.side, view.qty, leg=root.leg, info=root.info)
        tracker.tracked[rec.client_order_id] = rec
        tracker.see_view(rec, view)
        tracker.sync_fills(rec, view, already_booked=True)
        views = legs_by_kind(view)
        for row in members:
            leg_view = views.get(row.leg)
            leg = Tracked(row.client_order_id, row.symbol, row.side, row.qty, parent=root.client_order_id,
                          leg=row.leg, info=row.info)
            tracker.tracked[leg.client_order_id] = leg
            if leg_view is not None:
                tracker.see_view(leg, leg_view)
                tracker.sync_fills(leg, leg_view, already_booked=True)
                continue
            if view.final and view.status != "filled":  # the entry's end ended its legs
                leg.status = view.status
            else:
                leg.status = "held"
                if view.status == "filled":
                    log.warning("the broker shows %s filled without its %s leg %s", root.client_order_id, row.leg,
                                row.client_order_id)
            tracker.journal_status(leg.client_order_id, leg.status, None)

    def claim(self, client_order_id: str, owner):
        """The Backtrader order for a venue order placed before a restart (a restored strategy's plan
        refers to it by id): built as the strategy last knew it (accepted), then told what the venue
        did since (fills, cancels) through ordinary notifications. None if the broker has no such order."""
        tracker = self.tracker
        rec = tracker.tracked.get(client_order_id)
        row = self.journal.order(client_order_id)
        if rec is None and row is not None and row.venue_order_id is not None:
            # final before the restart (filled, canceled...), so not reconciled: in the positions already
            fills = self.journal.fills(client_order_id)
            rec = Tracked(client_order_id, row.symbol, row.side, whole(row.qty), status=row.status,
                          venue_id=row.venue_order_id, parent=row.parent_client_order_id, leg=row.leg,
                          venue_filled=row.filled_qty, accounted=row.filled_qty,
                          filled_value=row.filled_qty * (row.filled_avg_price or 0.0), info=row.info,
                          reason=row.status_reason,
                          filled_at=max((f["filled_datetime"] for f in fills), default=None))
            tracker.tracked[client_order_id] = rec
            tracker.by_venue_id.setdefault(rec.venue_id, rec)
        if rec is None or rec.status == "intent":
            return None
        if rec.order is not None:
            return rec.order
        data = tracker.data_by_symbol.get(rec.symbol)
        if data is None or row is None:
            return None
        broker = tracker.broker
        order_cls = bt.BuyOrder if rec.side == "buy" else bt.SellOrder
        exectype, price, plimit, trail = exectype_of(row)
        order = order_cls(owner=owner, data=data, size=rec.qty, price=price, pricelimit=plimit, exectype=exectype,
                          trailpercent=trail)
        if exectype == bt.Order.StopTrail:
            order.created.price = price  # the stop as sent (Backtrader would trail it once more from there)
            tracker.trailing[order.ref] = order
        order.addinfo(**{k: v for k, v in row.info.items() if not k.startswith("_")})
        order.addinfo(client_order_id=client_order_id)
        order.addcomminfo(broker.getcommissioninfo(data))
        order.submit(broker)
        order.accept(broker)
        tracker.attach(rec, order)
        tracker.catch_up(rec)
        return order

    def abandon_unsent(self) -> list[str]:
        """Intents found unsent at start that the strategy did not decide again: never sent, marked."""
        abandoned = []
        for cid in self.unsent_at_start:
            rec = self.tracker.tracked.get(cid)
            if rec is not None and rec.status == "intent" and rec.order is None:
                rec.status = "abandoned"
                self.tracker.journal_status(cid, "abandoned", "not sent before a restart; not decided again")
                abandoned.append(cid)
        if abandoned:
            log.warning("%d order(s) written but never sent before the restart, and not decided again: %s",
                        len(abandoned), ", ".join(abandoned))
        self.unsent_at_start = []
        return abandoned


def adopt_venue_positions(venue, journal, *, held: dict | None = None, quiet: bool = False) -> None:
    """The operator's answer to a positions halt (``run.py live --adopt-positions``), and a new
    journal's start: the venue's positions (``held``, else read now) are right, so the journal's
    baseline becomes them less the fills it recorded."""
    held = venue.positions() if held is None else held
    baseline = collections.defaultdict(float, {symbol: position.qty for symbol, position in held.items()})
    for symbol, qty in net_fills(journal.fills()).items():
        baseline[symbol] -= qty
    journal.set_meta(BASELINE_KEY, {s: q for s, q in baseline.items() if abs(q) > EPS})
    words = ", ".join(f"{s} {p.qty:g}" for s, p in sorted(held.items())) or "flat"
    journal.record_event("positions_adopted", f"the broker's positions taken as right: {words}")
    (log.debug if quiet else log.warning)("the broker's positions taken as right: %s", words)


def net_fills(fills: list[dict]) -> dict[str, float]:
    """Shares bought less shares sold, per symbol, over journal fill rows."""
    net = collections.defaultdict(float)
    for fill in fills:
        net[fill["symbol"]] += fill["qty"] if fill["side"] == "buy" else -fill["qty"]
    return net


def open_families(rows) -> dict[str, tuple]:
    """{root client id: (root row, its legs' rows)} for each journal family (an entry and its legs, or an
    OCO pair) with an open member: a filled entry's open stop is reconciled with it."""
    by_id = {row.client_order_id: row for row in rows}
    legs = collections.defaultdict(list)
    for row in rows:
        if row.parent_client_order_id is not None:
            legs[row.parent_client_order_id].append(row)
    families = {}
    for row in rows:
        if row.open:
            root = by_id.get(row.parent_client_order_id, row)
            families.setdefault(root.client_order_id, (root, legs[root.client_order_id]))
    return families


def same_account(before: tuple, after: tuple) -> bool:
    """Whether two (account, positions) reads show the same cash and position sizes (equity moves with
    prices; only a fill, a fee or a transfer moves these)."""
    (account_a, held_a), (account_b, held_b) = before, after
    return abs(account_a.cash - account_b.cash) <= 0.005 and \
        {s: p.qty for s, p in held_a.items()} == {s: p.qty for s, p in held_b.items()}
