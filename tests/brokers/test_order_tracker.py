"""The order tracker's lookups that a bar makes (the orders in flight, a cancel's group) read what is
still open, not every order of the session, and answer as a scan of every order would."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.live.tracker import OrderTracker, Tracked, TrackedOrders


class Order:
    """The part of a Backtrader order the tracker's lookups read."""
    refs = iter(range(1, 1_000_000))

    def __init__(self):
        self.ref, self.dead = next(self.refs), False

    def alive(self):
        return not self.dead

    def clone(self):
        return self


def in_flight_by_scan(tracker):
    """The definition: every tracked record whose order is alive or has a notification waiting."""
    waiting = {order.ref for order in tracker.notifs}
    return [cid for cid, rec in tracker.tracked.items()
            if rec.order is not None and (rec.order.alive() or rec.order.ref in waiting)]


def group_canceling_by_scan(tracker, rec):
    group = rec.parent or rec.client_order_id
    return any(other is not rec and other.cancel_requested and (other.parent or other.client_order_id) == group
               for other in tracker.tracked.values())


def test_records_are_filed_by_bracket_and_a_replaced_record_keeps_its_place():
    orders = TrackedOrders()
    orders["e1"] = entry = Tracked("e1", "AAPL", "buy", 10.0)
    orders["s1"] = stop = Tracked("s1", "AAPL", "sell", 10.0, parent="e1", leg="stop_loss")
    orders["e2"] = Tracked("e2", "MSFT", "buy", 5.0)
    assert orders.group("e1") == [entry, stop] and orders.group("nothing") == []
    orders["s1"] = again = Tracked("s1", "AAPL", "sell", 10.0, parent="e1", leg="stop_loss", status="held")
    assert orders.group("e1") == [entry, again] and list(orders) == ["e1", "s1", "e2"]
    assert [orders.position(cid) for cid in orders] == [0, 1, 2]
    for write in (lambda: orders.update(x=entry), lambda: orders.pop("e1"), orders.clear,
                  lambda: orders.__delitem__("e1"), lambda: orders.setdefault("x", entry)):
        with pytest.raises(TypeError, match="added by item"):
            write()
    assert len(orders) == 3


def test_in_flight_forgets_ended_orders_once_their_notification_is_read():
    tracker = OrderTracker(broker=None, venue=None, journal=None)
    for n in range(1000):
        rec = tracker.tracked[f"c{n}"] = Tracked(f"c{n}", "AAPL", "buy", 1.0)
        tracker.attach(rec, Order())
    for rec in list(tracker.tracked.values())[:-3]:
        rec.order.dead = True
        tracker.notify(rec.order)
    assert len(tracker.in_flight()) == 1000  # ended, but the strategy has not heard of it yet
    tracker.notifs.clear()  # the next bar's notifications
    assert tracker.in_flight() == ["c997", "c998", "c999"]
    assert len(tracker._attached) == 3  # what the next bar reads: not the session's thousand orders


def test_in_flight_keeps_the_order_followed_when_orders_are_attached_out_of_it():
    tracker = OrderTracker(broker=None, venue=None, journal=None)
    for cid in ("a", "b", "c"):  # a restart follows the journal's records, then claims their orders
        tracker.tracked[cid] = Tracked(cid, "AAPL", "sell", 1.0)
    for cid in ("c", "a", "b"):
        tracker.attach(tracker.tracked[cid], Order())
    assert tracker.in_flight() == ["a", "b", "c"]


OPERATIONS = st.lists(st.tuples(st.sampled_from(["follow", "attach", "notify", "end", "read", "cancel",
                                                 "refused", "replace"]),
                                st.integers(0, 40)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(OPERATIONS)
def test_the_lookups_answer_as_a_scan_of_every_order_would(operations):
    tracker = OrderTracker(broker=None, venue=None, journal=None)
    for operation, pick in operations:
        records = list(tracker.tracked.values())
        rec = records[pick % len(records)] if records else None
        if operation == "follow" or rec is None:  # an entry, or a leg of an earlier entry
            entries = [r.client_order_id for r in records if r.parent is None]
            parent = entries[pick % len(entries)] if entries and pick % 3 else None
            cid = f"c{len(records)}"
            tracker.tracked[cid] = Tracked(cid, "AAPL", "buy", 1.0, parent=parent)
        elif operation == "attach":  # a new Backtrader order for the record (a restart's claim, a resend)
            tracker.attach(rec, Order())
        elif operation == "notify" and rec.order is not None and rec.order.alive():  # a partial fill
            tracker.notify(rec.order)
        elif operation == "end" and rec.order is not None and rec.order.alive():  # filled or canceled, told
            rec.order.dead = True
            tracker.notify(rec.order)
        elif operation == "read":  # the strategy reads the bar's notifications
            tracker.notifs.clear()
        elif operation == "cancel":
            rec.cancel_requested = True
        elif operation == "refused":
            rec.cancel_requested = False
        elif operation == "replace":  # a restart's record in place of its placeholder
            tracker.tracked[rec.client_order_id] = Tracked(rec.client_order_id, "AAPL", "sell", 1.0,
                                                           parent=rec.parent)
        assert tracker.in_flight() == in_flight_by_scan(tracker)
        for other in tracker.tracked.values():
            assert tracker.group_canceling(other) == group_canceling_by_scan(tracker, other)
