"""The matching engine fills like Backtrader's BackBroker: fill for fill on real data through the live
broker, and the individual rules on hand-made bars."""
import datetime as dt

import pytest
from numpy.testing import assert_allclose

from brokers.simulator import INSUFFICIENT_FUNDS, MatchingEngine
from brokers.venue import DuplicateClientOrderId, Leg, NotCancelable, OrderRequest
from config import load_config
from engine.backtest import run_backtest
from engine.live import run_replay
from feeds.live_feed import Bar
from feeds.loader import load_universe
from tests.brokers.random_orders import RandomOrders

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2020, 1, 6)


def bar(day, o, h, low, c):
    return Bar(T0 + day * DAY, o, h, low, c, 1000.0)


def engine(**kw):
    e = MatchingEngine(kw.pop("cash", 10_000.0), commission_bps=kw.pop("commission_bps", 10.0),
                       slippage_bps=kw.pop("slippage_bps", 5.0), **kw)
    e.on_bars(T0, {"X": bar(0, 100, 101, 99, 100)})
    return e


def events(e, day, o, h, low, c):
    return [(u.event, u.order.client_order_id, u.qty, u.price) for u in e.on_bars(T0 + day * DAY,
                                                                                    {"X": bar(day, o, h, low, c)})]


@pytest.mark.slow
@pytest.mark.parametrize("fill", ["next_open", "next_close"])
@pytest.mark.parametrize("seed", [0, 1])
def test_replay_fills_like_backbroker_for_every_order_kind(tmp_path, fill, seed):
    """Market or close, limit, stop, stop-limit and trailing orders, brackets with stop and take-profit,
    day orders that expire, cancels: replay's orders, trades and equity equal the backtest's exactly."""
    cfg = load_config(overrides={"backtest.progress": False, "costs.fill": fill, "backtest.cash": 20000.0})
    bars = load_universe(["data/sample/AAPL_data.csv", "data/sample/JPM_data.csv", "data/sample/PYPL_data.csv"],
                         end="2016-06-30")
    backtest = run_backtest(cfg, bars, strategy_cls=RandomOrders, seed=seed)
    replay = run_replay(cfg, bars, strategy_cls=RandomOrders, journal_dir=tmp_path, seed=seed)
    kinds = set(backtest.records.orders["type"])
    assert {"market" if fill == "next_open" else "close", "limit", "stop", "stoptrail"} <= kinds
    assert {"completed", "canceled", "expired"} <= set(backtest.records.orders["status"])
    assert replay.records.orders.equals(backtest.records.orders)
    assert replay.records.trades.equals(backtest.records.trades)
    assert replay.records.equity.equals(backtest.records.equity)


def test_market_order_fills_at_next_open_with_slippage_and_commission():
    e = engine()
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0))
    got = events(e, 1, 102, 104, 101, 103)
    assert got[0] == ("new", "b1", None, None)
    assert got[1][:3] == ("fill", "b1", 10.0)
    assert_allclose(got[1][3], 102 * 1.0005)
    assert_allclose(e.cash, 10_000 - 10 * 102 * 1.0005 * 1.001)


def test_market_order_never_fills_on_the_bar_it_was_decided_on():
    e = engine()
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0 + DAY, reference_price=100.0))
    assert [ev[0] for ev in events(e, 1, 102, 104, 101, 103)] == ["new"]
    assert [ev[0] for ev in events(e, 2, 103, 104, 101, 103)] == ["fill"]


def test_stop_gapped_through_fills_at_the_slipped_open():
    e = engine()
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0,
                          legs=(Leg("stop_loss", "s1", stop_price=95.0),)))
    events(e, 1, 100, 101, 99, 100)  # entry fills; the stop becomes active on the next bar
    got = events(e, 2, 90, 92, 89, 91)
    assert got[0][:3] == ("fill", "s1", 10.0)
    assert_allclose(got[0][3], 90 * (1 - 0.0005))


def test_take_profit_fill_cancels_the_stop():
    e = engine()
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0,
                          legs=(Leg("stop_loss", "s1", stop_price=95.0), Leg("take_profit", "t1", limit_price=105.0))))
    events(e, 1, 100, 101, 99, 100)
    got = events(e, 2, 101, 106, 100, 104)
    assert [(ev[0], ev[1]) for ev in got] == [("fill", "t1"), ("canceled", "s1")]
    assert got[0][3] == 105.0
    assert e.venue_positions() == {}


def test_order_beyond_cash_is_rejected_with_its_bracket():
    e = engine(cash=500.0)
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0,
                          legs=(Leg("stop_loss", "s1", stop_price=95.0),)))
    got = e.on_bars(T0 + DAY, {"X": bar(1, 100, 101, 99, 100)})
    assert [(u.event, u.order.client_order_id) for u in got] == [("rejected", "b1"), ("rejected", "s1")]
    assert got[0].reason == INSUFFICIENT_FUNDS


def test_duplicate_client_order_id_is_refused_and_fills_nothing_twice():
    e = engine()
    e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0))
    with pytest.raises(DuplicateClientOrderId):
        e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0))
    events(e, 1, 100, 101, 99, 100)
    assert e.venue_positions()["X"].qty == 10


def test_cancel_of_a_filled_order_is_refused():
    e = engine()
    order = e.submit(OrderRequest("b1", "X", "buy", 10, bar_datetime=T0, reference_price=100.0))
    events(e, 1, 100, 101, 99, 100)
    with pytest.raises(NotCancelable):
        e.cancel(order.id)


def test_replace_moves_a_limit_price():
    e = engine()
    order = e.submit(OrderRequest("l1", "X", "buy", 10, type="limit", time_in_force="gtc", limit_price=90.0))
    events(e, 1, 100, 101, 99, 100)
    new = e.replace(order.id, limit_price=99.5)
    assert e.orders[order.id].status == "replaced" and new.client_order_id == "l1-r1"
    got = events(e, 2, 100, 101, 99, 100)
    assert got[-1][:2] == ("fill", "l1-r1") and got[-1][3] == 99.5


def test_the_shares_open_orders_hold_are_read_from_the_working_orders_alone():
    """``held_qty`` reads the orders still working, not every order of the session, and answers as a
    scan of every order would, through entries, brackets, OCO exits, fills, cancels and replaces."""
    import random

    from brokers.venue import OrderRejected

    def held_by_scan(e, side):
        groups = {}
        for o in e.orders.values():
            leg = o.parent_id is not None and o.order_class != "oco"
            if o.alive and o.symbol == "X" and o.side == side and (not leg or e.orders[o.parent_id].status == "filled"):
                groups[o.parent_id or o.id] = max(groups.get(o.parent_id or o.id, 0.0), o.remaining)
        return sum(groups.values())

    rng, e, n = random.Random(7), engine(cash=1e6), 0
    for day in range(1, 60):
        for _ in range(3):
            n += 1
            draw, close = rng.random(), 100.0 + day % 7
            try:
                if draw < 0.3:
                    e.submit(OrderRequest(f"b{n}", "X", "buy", rng.randint(1, 9), bar_datetime=T0, reference_price=close,
                                          legs=(Leg("stop_loss", f"s{n}", stop_price=close - 3),
                                                Leg("take_profit", f"t{n}", limit_price=close + 3))))
                elif draw < 0.6:
                    e.submit(OrderRequest(f"t{n}", "X", "sell", rng.randint(1, 9), type="limit", limit_price=close + 2,
                                          order_class="oco", bar_datetime=T0,
                                          legs=(Leg("stop_loss", f"s{n}", stop_price=close - 2),
                                                Leg("take_profit", f"t{n}", limit_price=close + 2))))
                elif draw < 0.7:
                    e.submit(OrderRequest(f"m{n}", "X", "buy", rng.randint(1, 9), bar_datetime=T0, reference_price=close))
                working = [o for o in e.orders.values() if o.alive]
                if working and draw > 0.8:
                    target = rng.choice(working)
                    if draw < 0.9 and target.type == "limit":
                        e.replace(target.id, limit_price=target.limit_price + 1)
                    else:
                        e.cancel(target.id)
            except (OrderRejected, NotCancelable):
                pass
            assert {o.id for o in e._working()} == {o.id for o in e.orders.values() if o.alive}
            assert e.held_qty("X", "sell") == held_by_scan(e, "sell") and e.held_qty("X", "buy") == held_by_scan(e, "buy")
        price = 100.0 + (day * 5) % 11 - 5
        e.on_bars(T0 + day * DAY, {"X": bar(day, price, price + 4, price - 4, price)})
    assert sum(not o.alive for o in e.orders.values()) > 100   # a session's ended orders, which it skips
