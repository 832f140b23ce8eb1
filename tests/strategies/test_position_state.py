"""A plan's rule state (``risk.position_rules.PositionState``) in the state a live restart carries on
from: saved as a dict, restored typed, and read from a state the code before the typed state saved
(its four keys in the plan's ``extra``)."""
import datetime as dt
import json

from risk.position_rules import PositionState
from strategies.base import OpenPosition, plan_from_state, plan_state


class Order:
    def __init__(self, cid):
        self.info = {"client_order_id": cid}


def test_a_plan_state_round_trips_through_json():
    entry, stop = Order("e-JPM"), Order("s-JPM")
    plan = OpenPosition(symbol="JPM", size=10, signal_price=100.0, entry_order=entry, stop_price=97.0,
                        entry_datetime=dt.datetime(2017, 4, 3), entry_price=100.5, bars_held=4, children=[stop],
                        state=PositionState(renewed_at=2, highest=104.0, trailing=True, halved=False))
    saved = json.loads(json.dumps(plan_state(plan)))
    assert saved["state"] == {"renewed_at": 2, "highest": 104.0, "trailing": True, "halved": False}
    restored = plan_from_state(saved, entry, [stop])
    assert restored == plan


def test_a_state_saved_with_the_untyped_extra_dict_restores():
    saved = {"symbol": "XOM", "size": 16, "signal_price": 80.0, "entry_order": "e-XOM", "stop_price": 79.98,
             "target_price": None, "confidence": 0.611, "expected_return": 0.012,
             "entry_datetime": "2017-04-20T00:00:00", "entry_price": 80.1, "bars_held": 5, "children": ["s-XOM"],
             "exiting": False, "extra": {"renewed_at": 3, "highest": 84.2, "trailing": True, "halved": True}}
    entry, stop = Order("e-XOM"), Order("s-XOM")
    plan = plan_from_state(saved, entry, [stop])
    assert plan.state == PositionState(renewed_at=3, highest=84.2, trailing=True, halved=True)
    assert (plan.entry_datetime, plan.size, plan.children) == (dt.datetime(2017, 4, 20), 16, [stop])
    # a position no rule had touched yet saved an empty extra
    assert plan_from_state({**saved, "extra": {}}, entry, []).state == PositionState()
