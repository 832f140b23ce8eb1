"""The Alpaca venue drives the real alpaca-py clients against the local Alpaca-compatible server:
payload shapes, submit, fill, partial fill, cancel, rejection, duplicates, stream reconnects."""
import datetime as dt

import pytest

from brokers.alpaca.credentials import Credentials
from brokers.alpaca.execution import AlpacaVenue, tick
from brokers.alpaca.local_server import AlpacaTestServer
from brokers.alpaca.store import AlpacaStore
from brokers.venue import DuplicateClientOrderId, Leg, OrderRejected, OrderRequest, VenueUnavailable
from config import load_config
from feeds.live_feed import Bar
from tests.live.harness import wait_for

T0 = dt.datetime(2024, 1, 2, 14, 30)


def bar(i, close=100.0):
    return Bar(T0 + dt.timedelta(minutes=i), close, close + 1, close - 1, close, 1000.0)


@pytest.fixture
def server():
    with AlpacaTestServer(commission_bps=1.0) as srv:
        srv.add_history("AAPL", [bar(i) for i in range(3)])
        yield srv


@pytest.fixture
def venue(server):
    cfg = load_config(overrides={**{f"live.{k}": v for k, v in server.urls.items()},
                                 "live.retry_attempts": 2, "live.retry_min_seconds": 0.05,
                                 "live.retry_max_seconds": 0.1})
    store = AlpacaStore(Credentials(server.key_id, server.secret_key), cfg.live, paper=True)
    v = AlpacaVenue(store, "UTC")
    v.start()
    wait_for(lambda: server.connected()[0] == 1, what="the trade updates stream")
    yield v
    v.stop()


def next_updates(venue, n, timeout=5.0):
    got = []
    for _ in range(n):
        got.append(venue.updates.get(timeout=timeout))
    return got


def test_server_payloads_parse_as_alpaca_models(server):
    """Every payload the server sends validates against alpaca-py's own models."""
    from alpaca.trading.models import Asset, Calendar, Clock, Order, Position, TradeAccount, TradeUpdate

    code, order = server.handle("POST", "/v2/orders", {}, {
        "symbol": "AAPL", "qty": "5", "side": "buy", "type": "market", "time_in_force": "gtc",
        "client_order_id": "b1", "order_class": "bracket", "take_profit": {"limit_price": 110},
        "stop_loss": {"stop_price": 95}}, {"APCA-API-KEY-ID": server.key_id, "APCA-API-SECRET-KEY": server.secret_key})
    assert code == 200 and Order(**order).legs[0].type == "stop"
    updates = server.push({"AAPL": bar(3)})
    TradeUpdate(**server._update_json(updates[-1])["data"])
    TradeAccount(**server._account())
    Clock(**server._clock())
    Position(**server._position("AAPL"))
    Asset(**server._asset("AAPL"))
    [Calendar(**row) for row in server._calendar({"start": ["2024-01-02"], "end": ["2024-01-05"]})]


def test_bracket_submit_fill_and_stream_updates(venue, server):
    request = OrderRequest("b1", "AAPL", "buy", 10, time_in_force="gtc",
                           legs=(Leg("stop_loss", "b1-stop", stop_price=95.123), Leg("take_profit", "b1-tp",
                                                                                    limit_price=110.0)))
    order = venue.submit(request)
    assert order.client_order_id == "b1" and order.order_class == "bracket"
    assert [leg.type for leg in order.legs] == ["stop", "limit"]
    assert order.legs[0].stop_price == 95.12  # a cent tick
    server.push({"AAPL": bar(3, 101.0)})
    updates = next_updates(venue, 4)
    assert [(u.event, u.order.client_order_id) for u in updates] == [
        ("new", "b1"), ("new", "b1-sl"), ("new", "b1-tp"), ("fill", "b1")]
    assert updates[-1].qty == 10 and updates[-1].price == 101.0 and updates[-1].position_qty == 10
    assert venue.positions()["AAPL"].qty == 10
    assert venue.account().cash == pytest.approx(100_000 - 10 * 101.0 * 1.0001)


def test_partial_fills_arrive_in_parts(venue, server):
    server.split_next_fill("AAPL", parts=3)
    venue.submit(OrderRequest("p1", "AAPL", "buy", 10))
    server.push({"AAPL": bar(3)})
    updates = [u for u in next_updates(venue, 4) if u.event in ("partial_fill", "fill")]
    assert [u.event for u in updates] == ["partial_fill", "partial_fill", "fill"]
    assert [u.qty for u in updates] == [3.0, 3.0, 4.0]
    assert [u.order.filled_qty for u in updates] == [3.0, 6.0, 10.0]


def test_cancel_answers_on_the_stream_and_a_refusal_too(venue, server):
    order = venue.submit(OrderRequest("l1", "AAPL", "buy", 5, type="limit", time_in_force="gtc", limit_price=50.0))
    server.push({"AAPL": bar(3)})
    venue.cancel(order.id)  # returns at once; Alpaca's answer comes as trade updates
    assert [u.event for u in next_updates(venue, 2)] == ["new", "canceled"]
    venue.cancel(order.id)
    refused = next_updates(venue, 1)[0]
    assert (refused.event, refused.order.id, refused.reason) == ("order_cancel_rejected", order.id,
                                                                 "order is not cancelable")


def test_rejection_carries_alpacas_reason(venue, server):
    server.reject_next("asset AAPL is not tradable", status=422)
    with pytest.raises(OrderRejected, match="not tradable"):
        venue.submit(OrderRequest("r1", "AAPL", "buy", 5))
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        venue.submit(OrderRequest("r2", "AAPL", "buy", 100_000))


def test_duplicate_client_order_id_is_recognised(venue, server):
    venue.submit(OrderRequest("d1", "AAPL", "buy", 5))
    with pytest.raises(DuplicateClientOrderId):
        venue.submit(OrderRequest("d1", "AAPL", "buy", 5))
    assert venue.order_by_client_id("d1").qty == 5
    assert venue.order_by_client_id("nope") is None
    assert server.submissions == ["d1", "d1"]


def test_trade_updates_resume_after_a_disconnect(venue, server):
    server.drop_streams()
    wait_for(lambda: server.connected()[0] == 1, timeout=10, what="the stream to reconnect")
    venue.submit(OrderRequest("c1", "AAPL", "buy", 5))
    server.push({"AAPL": bar(3)})
    assert [u.event for u in next_updates(venue, 2)][-1] == "fill"


def test_unreachable_broker_is_one_clear_error_after_retries():
    cfg = load_config(overrides={"live.trading_url": "http://127.0.0.1:9", "live.retry_attempts": 3,
                                 "live.retry_min_seconds": 0.01, "live.retry_max_seconds": 0.02})
    venue = AlpacaVenue(AlpacaStore(Credentials("k", "s"), cfg.live), "UTC")
    with pytest.raises(VenueUnavailable, match=r"Alpaca unreachable \(account at 127.0.0.1:9\): no connection "
                                               r"after 3 attempts"):
        venue.account()


def test_prices_round_to_alpacas_ticks():
    assert tick(88.87125) == 88.87 and tick(0.123456) == 0.1235 and tick(None) is None



def test_trailing_stop_and_limit_orders_map_to_alpacas(venue, server):
    venue.submit(OrderRequest("b1", "AAPL", "buy", 10))
    server.push({"AAPL": bar(3, 100.0)})
    trail = venue.submit(OrderRequest("t1", "AAPL", "sell", 10, type="trailing_stop", time_in_force="gtc",
                                      trail_percent=2.0))
    limit = venue.submit(OrderRequest("l1", "AAPL", "buy", 1, type="limit", time_in_force="day", limit_price=50.0))
    assert (trail.type, limit.type, limit.limit_price) == ("trailing_stop", "limit", 50.0)
    server.push({"AAPL": bar(4, 110.0)})  # the stop trails the close up to 107.8
    server.push({"AAPL": Bar(T0 + dt.timedelta(minutes=5), 107.0, 108.0, 106.0, 107.0, 1000.0)})
    fills = [u for u in next_updates(venue, 5) if u.event == "fill"]
    assert [(u.order.client_order_id, u.price) for u in fills] == [("b1", 100.0), ("t1", 107.0)]


def test_an_oco_exit_is_one_request_and_the_server_checks_it_as_alpaca_does(venue, server):
    """One request, answered by the take-profit with the stop as its leg (alpaca-py's Order model reads
    it); the stop's fill cancels the take-profit. Refused as Alpaca does: beyond the shares held, not a
    limit order, a take-profit not above a sell's stop."""
    from alpaca.trading.models import Order

    headers = {"APCA-API-KEY-ID": server.key_id, "APCA-API-SECRET-KEY": server.secret_key}
    body = {"symbol": "AAPL", "qty": "10", "side": "sell", "type": "limit", "time_in_force": "gtc",
            "order_class": "oco", "take_profit": {"limit_price": "105"}, "stop_loss": {"stop_price": "95"}}
    assert server.handle("POST", "/v2/orders", {}, body, headers) == (
        403, {"code": 40310000, "message": "insufficient qty available for order (requested: 10, available: 0)"})
    assert server.handle("POST", "/v2/orders", {}, {**body, "type": "market"}, headers)[1]["message"] == \
        "oco orders must be limit orders"
    refused = server.handle("POST", "/v2/orders", {}, {**body, "stop_loss": {"stop_price": "106"}}, headers)
    assert refused[0] == 422 and "must be above stop_loss.stop_price" in refused[1]["message"]
    venue.submit(OrderRequest("b1", "AAPL", "buy", 10))
    server.push({"AAPL": bar(3)})
    view = venue.submit(OrderRequest("t1", "AAPL", "sell", 10, type="limit", time_in_force="gtc", limit_price=105.0,
                                     order_class="oco", legs=(Leg("stop_loss", "t1-stop", stop_price=95.0),
                                                              Leg("take_profit", "t1", limit_price=105.0))))
    assert (view.client_order_id, view.type, view.order_class, view.limit_price) == ("t1", "limit", "oco", 105.0)
    assert [(leg.type, leg.side, leg.stop_price) for leg in view.legs] == [("stop", "sell", 95.0)]
    assert server.submissions[-1] == "t1"
    Order(**server._order_json(server.engine.view(server.engine.by_client_id["t1"])))
    server.push({"AAPL": Bar(T0 + dt.timedelta(minutes=4), 99.0, 100.0, 94.0, 96.0, 1000.0)})
    updates = [(u.event, u.order.id) for u in next_updates(venue, 6)]
    assert updates[-2:] == [("fill", view.legs[0].id), ("canceled", view.id)]
    assert venue.positions() == {}


def test_alpaca_times_read_as_naive_exchange_time():
    """RFC 3339 from Alpaca (Z or an offset, up to nanoseconds) -> the bars' naive exchange time, as
    pandas reads it; a time without an offset is refused (the update is then logged and ignored)."""
    import pandas as pd

    cfg = load_config()
    venue = AlpacaVenue(AlpacaStore(Credentials("k", "s"), cfg.live), "America/New_York")
    for text in ("2024-01-02T14:30:00Z", "2024-07-02T14:30:00.123456789Z", "2024-11-03T05:59:59.5-00:00",
                 "2024-03-10T07:00:00.000001+00:00", "2024-01-02T09:30:00-05:00"):
        expected = pd.Timestamp(text).tz_convert("America/New_York").tz_localize(None).floor("us").to_pydatetime()
        assert venue._time(text) == expected, text
    assert venue._time("2024-07-02T14:30:00.123456789Z") == dt.datetime(2024, 7, 2, 10, 30, 0, 123456)
    assert venue._time(None) is None and venue._time("") is None
    with pytest.raises(ValueError, match="without an offset"):
        venue._time("2024-01-02T14:30:00")


def test_a_sell_of_shares_an_open_stop_holds_is_refused_as_alpaca_does(venue, server):
    """Alpaca holds a position's shares for its open exit orders: a market sell while the bracket's
    stop rests is refused with its qty_available; once the stop is canceled the sell goes through."""
    entry = venue.submit(OrderRequest("b1", "AAPL", "buy", 10, legs=(Leg("stop_loss", "b1-stop", stop_price=95.0),)))
    server.push({"AAPL": bar(3)})
    assert [u.event for u in next_updates(venue, 3)][-1] == "fill"
    with pytest.raises(OrderRejected, match=r"insufficient qty available for order \(requested: 10, available: 0\)"):
        venue.submit(OrderRequest("x1", "AAPL", "sell", 10))
    venue.cancel(entry.legs[0].id)
    assert next_updates(venue, 1)[0].event == "canceled"
    assert venue.submit(OrderRequest("x2", "AAPL", "sell", 10)).status in ("new", "accepted", "pending_new")
