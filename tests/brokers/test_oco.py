"""One-cancels-other exit pairs (a stop and a take-profit, Backtrader's ``oco=``) as Alpaca's OCO orders:
the request model and its alpaca-py shape; the matching engine's OCO on hand-made bars (both legs work
at once, tried in the order placed, as BackBroker tries them; one fills, the other is canceled); replay
through the live broker fill for fill with the backtest; groups that are no OCO refused with the reason."""
import datetime as dt
import logging

import pytest

from brokers.alpaca.execution import AlpacaVenue
from brokers.journal import Journal, sqlite_url
from brokers.simulator import MatchingEngine
from brokers.venue import Leg, OrderRejected, OrderRequest
from config import load_config
from engine.backtest import run_backtest
from engine.compat import bt
from engine.live import run_replay
from feeds.live_feed import Bar
from feeds.loader import load_universe
from strategies.base import PortfolioStrategy
from tests.brokers.random_orders import RandomOrders

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2020, 1, 6)


def oco(cid="t1", *, stop=95.0, target=105.0, qty=10, stop_first=True, side="sell"):
    legs = (Leg("stop_loss", f"{cid}-stop", stop_price=stop), Leg("take_profit", cid, limit_price=target))
    return OrderRequest(cid, "X", side, qty, type="limit", time_in_force="gtc", limit_price=target,
                        legs=legs if stop_first else legs[::-1], order_class="oco", bar_datetime=T0,
                        reference_price=target)


def holding(qty=10) -> MatchingEngine:
    """An engine at T0 + 1 day holding ``qty`` X bought at the open."""
    e = MatchingEngine(10_000.0)
    e.on_bars(T0, {"X": Bar(T0, 100, 101, 99, 100, 1000.0)})
    e.submit(OrderRequest("b1", "X", "buy", qty, bar_datetime=T0, reference_price=100.0))
    e.on_bars(T0 + DAY, {"X": Bar(T0 + DAY, 100, 101, 99, 100, 1000.0)})
    return e


def events(e, day, o, h, low, c):
    return [(u.event, u.order.client_order_id) for u in e.on_bars(T0 + day * DAY,
                                                                   {"X": Bar(T0 + day * DAY, o, h, low, c, 1000.0)})]


def test_an_oco_request_is_alpacas_limit_order_named_by_its_take_profit():
    request = oco()
    assert request.order_class == "oco" and request.exit_side == "sell"
    assert request.client_order_ids == ["t1", "t1-stop"]
    body = AlpacaVenue.order_request(request).to_request_fields()
    assert body == {"symbol": "X", "qty": 10, "side": "sell", "type": "limit", "time_in_force": "gtc",
                    "order_class": "oco", "client_order_id": "t1", "take_profit": {"limit_price": 105.0},
                    "stop_loss": {"stop_price": 95.0}}
    with pytest.raises(ValueError, match="take-profit .105. must be above its stop .106."):
        oco(stop=106.0)
    with pytest.raises(ValueError, match="limit price and client order id are its take-profit's"):
        OrderRequest("s1", "X", "sell", 10, type="limit", limit_price=105.0, order_class="oco",
                     legs=(Leg("stop_loss", "s1", stop_price=95.0), Leg("take_profit", "t1", limit_price=105.0)))
    with pytest.raises(ValueError, match="two legs"):
        OrderRequest("t1", "X", "sell", 10, type="limit", limit_price=105.0, order_class="oco",
                     legs=(Leg("take_profit", "t1", limit_price=105.0),))


def test_oco_legs_work_at_once_and_a_filled_stop_cancels_the_take_profit():
    e = holding()
    parent = e.submit(oco())
    view = e.view(parent)
    assert (view.client_order_id, view.type, view.order_class) == ("t1", "limit", "oco")
    assert [(leg.client_order_id, leg.type, leg.side) for leg in view.legs] == [("t1-stop", "stop", "sell")]
    assert events(e, 2, 100, 101, 94, 96) == [("new", "t1-stop"), ("new", "t1"), ("fill", "t1-stop"),
                                              ("canceled", "t1")]
    assert e.venue_positions() == {} and e.view(parent).status == "canceled"


def test_a_filled_take_profit_cancels_the_stop():
    e = holding()
    e.submit(oco())
    assert events(e, 2, 100, 106, 99, 104)[-2:] == [("fill", "t1"), ("canceled", "t1-stop")]
    assert e.venue_positions() == {}


@pytest.mark.parametrize("stop_first", [True, False])
def test_on_a_bar_reaching_both_the_leg_placed_first_fills(stop_first):
    """BackBroker tries pending orders in the order they were accepted: so does the engine."""
    e = holding()
    e.submit(oco(stop_first=stop_first))
    got = events(e, 2, 100, 106, 94, 100)
    first = "t1-stop" if stop_first else "t1"
    assert got[-2:] == [("fill", first), ("canceled", "t1" if stop_first else "t1-stop")]


def test_canceling_one_leg_cancels_the_other():
    e = holding()
    parent = e.submit(oco())
    events(e, 2, 100, 101, 99, 100)
    e.cancel(e.view(parent).legs[0].id)
    assert [(u.event, u.order.client_order_id) for u in e.take_events()] == [("canceled", "t1-stop"),
                                                                            ("canceled", "t1")]


def test_an_oco_exits_only_shares_held_and_not_held_by_other_orders():
    e = holding()
    with pytest.raises(OrderRejected, match=r"insufficient qty available for order \(requested: 11, available: 10\)"):
        e.submit(oco(qty=11))
    e.submit(OrderRequest("m1", "X", "sell", 4, bar_datetime=T0 + DAY, reference_price=100.0))  # holds 4
    with pytest.raises(OrderRejected, match="available: 6"):
        e.submit(oco())
    e.submit(oco(qty=6))
    with pytest.raises(OrderRejected, match="available: 0"):  # the first oco's two legs hold its 6 once
        e.submit(oco("t2", qty=1))


@pytest.mark.parametrize("seed", [0, 3])
def test_replay_fills_oco_exit_pairs_like_backbroker(tmp_path, seed):
    """Random entries whose exits are replaced now and then by a new stop and take-profit (``oco=``),
    or by a trailing stop re-placed from where it has trailed to: through the live broker the pairs go
    out as OCO orders, the trailing stops' levels follow the bars as in Backtrader, and replay's orders,
    trades and equity equal the backtest's exactly."""
    cfg = load_config(overrides={"backtest.progress": False, "backtest.cash": 20000.0})
    bars = load_universe(["data/sample/AAPL_data.csv", "data/sample/JPM_data.csv"], end="2015-06-30")
    kw = dict(seed=seed, replace_rate=0.3, loose_orders=False)
    backtest = run_backtest(cfg, bars, strategy_cls=RandomOrders, **kw)
    replay = run_replay(cfg, bars, strategy_cls=RandomOrders, journal_dir=tmp_path, **kw)
    orders = backtest.records.orders
    entries = set(zip(orders.loc[orders["side"] == "buy", "datetime"], orders.loc[orders["side"] == "buy", "symbol"]))
    replaced = orders[[(when, symbol) not in entries for when, symbol in zip(orders["datetime"], orders["symbol"])]]
    assert {"completed", "canceled"} <= set(replaced.loc[replaced["type"] == "limit", "status"])
    assert {"completed", "canceled"} <= set(replaced.loc[replaced["type"] == "stop", "status"])
    assert {"completed", "canceled"} <= set(replaced.loc[replaced["type"] == "stoptrail", "status"])
    assert replay.records.orders.equals(orders)
    assert replay.records.trades.equals(backtest.records.trades)
    assert replay.records.equity.equals(backtest.records.equity)


class OddGroups(PortfolioStrategy):
    """Buys 10 X on its first bar; on the third places one-cancels-other groups the live broker cannot
    send as OCO orders: a take-profit below its stop, a pair of different sizes, a third order in a pair."""

    def decide(self, now, fresh):
        d = self.datas[0]
        if not hasattr(self, "first_bar"):
            self.first_bar = len(d)
            self._tag(self.buy(data=d, size=10), d._name, "entry")
        elif len(d) - self.first_bar == 2:
            price = float(d.close[0])
            for size, target, reason in ((2, 0.9, "below"), (3, 1.1, "sizes"), (1, 1.1, "pair")):
                stop = self._tag(self.sell(data=d, size=size, exectype=bt.Order.Stop, price=price * 0.95), d._name,
                                 f"{reason}_stop")
                self._tag(self.sell(data=d, size=size - (reason == "sizes"), exectype=bt.Order.Limit,
                                    price=price * target, oco=stop), d._name, reason)
            self._tag(self.sell(data=d, size=1, exectype=bt.Order.Limit, price=price * 1.2, oco=stop), d._name,
                      "third")


def test_groups_that_are_no_alpaca_oco_are_refused_with_the_reason(tmp_path, caplog):
    cfg = load_config(overrides={"backtest.progress": False})
    bars = load_universe(["data/sample/AAPL_data.csv"], end="2013-03-01")
    with caplog.at_level(logging.WARNING, logger="live.broker"):
        run_replay(cfg, bars, strategy_cls=OddGroups, journal_dir=tmp_path)
    journal = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    rows = {row.reason: row for row in journal.orders()}
    journal.close()
    # a take-profit below its stop: journaled as refused, the stop sent alone
    assert (rows["below"].status, rows["below"].venue_order_id) == ("rejected", None)
    assert "is not above the stop" in rows["below"].status_reason and rows["below_stop"].venue_order_id
    # the pair went out as one OCO; the others were refused with the reason, never sent
    assert (rows["pair"].leg, rows["pair_stop"].parent_client_order_id) == ("take_profit", rows["pair"].client_order_id)
    assert "sizes" not in rows and "third" not in rows and rows["sizes_stop"].venue_order_id
    assert "sizes refused: a one-cancels-other pair live is two orders of one symbol, side, size" in caplog.text
    assert "third refused: one-cancels-other is supported live only between a stop and a take-profit" in caplog.text
