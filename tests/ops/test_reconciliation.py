"""The live-versus-replay comparison (ops.reconciliation) on hand-made tables."""
import math

import pandas as pd
import pytest

from ops.reconciliation import SessionTables, Thresholds, pair_orders, reconcile, slippage_bps

T0, T1, T2 = (pd.Timestamp("2026-12-04 09:3%d" % m) for m in range(3))


def order(symbol, side, size, status="completed", *, at=T0, price=100.0, filled=T1, cid=None, type_="market"):
    return {"datetime": at, "symbol": symbol, "side": side, "size": size if side == "buy" else -size,
            "type": type_, "status": status, "price": price, "stop_price": None,
            "client_order_id": cid if cid is not None else f"t-{symbol}-{at:%H%M}-{side}", "reason": "signal",
            "filled_datetime": filled if status == "completed" else None, "commission": 0.0}


def tables(orders, positions=None, start=100_000.0, end=100_000.0):
    return SessionTables(orders=pd.DataFrame(orders), positions=positions or {}, start_equity=start, end_equity=end)


def run(live, replay, **thresholds):
    return reconcile(live, replay, Thresholds(**thresholds), session="t-momentum", date="2026-12-04")


def test_the_same_session_has_no_differences():
    orders = [order("AAPL", "buy", 10), order("XOM", "buy", 5, price=80.0), order("AAPL", "sell", 10, at=T1)]
    result = run(tables(orders, {"XOM": 5}, end=100_050.0), tables(orders, {"XOM": 5}, end=100_050.0))
    assert result.clean and result.differences == 0 and not result.alarms
    assert result.pnl["difference"] == 0 and result.pnl["live"] == 50.0
    assert "live equals the replay" in result.summary()
    assert "No differences." in result.to_markdown()


def test_a_rejected_order_is_named_with_its_bar_side_and_size():
    live = [order("AAPL", "buy", 10), order("XOM", "buy", 5, "rejected", at=T1)]
    replay = [order("AAPL", "buy", 10), order("XOM", "buy", 5, at=T1, price=80.0)]
    result = run(tables(live, {"AAPL": 10}, end=100_010.0), tables(replay, {"AAPL": 10, "XOM": 5}, end=100_020.0))
    [difference] = result.order_differences
    assert difference["kind"] == "status" and difference["symbol"] == "XOM" and difference["side"] == "buy"
    assert difference["size_live"] == 5 and difference["datetime"] == str(T1)
    assert difference["message"] == f"XOM buy 5 (market) at the bar of {T1}: rejected live, filled in the replay"
    assert result.position_differences == [{"symbol": "XOM", "live": 0.0, "replay": 5.0,
                                            "message": "XOM: 0 shares live, 5 in the replay"}]
    assert result.pnl["difference"] == -10.0
    assert len(result.alarms) == 2  # an order, a position; the P&L's 10 of 100,000 is within 0.1%
    assert not result.clean and difference["message"] in result.to_markdown()


def test_orders_on_one_side_only_and_a_size_difference():
    live = [order("AAPL", "buy", 10), order("JPM", "buy", 7, at=T2)]
    replay = [order("AAPL", "buy", 12), order("XOM", "sell", 3, at=T1)]
    result = run(tables(live), tables(replay), max_order_differences=5, max_pnl_difference_fraction=1.0)
    kinds = [(d["kind"], d["symbol"]) for d in result.order_differences]
    assert kinds == [("size", "AAPL"), ("only_replay", "XOM"), ("only_live", "JPM")]  # in time order
    assert "size 10 live, 12 in the replay" in result.order_differences[0]["message"]
    assert "not placed live" in result.order_differences[1]["message"]
    assert "not placed in the replay" in result.order_differences[2]["message"]
    assert not result.alarms  # 3 differences, 5 tolerated
    assert not result.clean


def test_fill_price_differences_in_basis_points_against_the_trader():
    assert slippage_bps("buy", 100.10, 100.0) == pytest.approx(10.0)
    assert slippage_bps("sell", 99.90, 100.0) == pytest.approx(10.0)
    assert slippage_bps("sell", 100.10, 100.0) == pytest.approx(-10.0)
    live = [order("AAPL", "buy", 10, price=100.30), order("XOM", "sell", 5, price=80.0, at=T1, filled=T2)]
    replay = [order("AAPL", "buy", 10, price=100.0), order("XOM", "sell", 5, price=80.0, at=T1, filled=T1)]
    result = run(tables(live), tables(replay), max_slippage_bps=25.0)
    aapl, xom = result.fill_differences
    assert aapl["slippage_bps"] == pytest.approx(30.0) and "+30.0 bps" in aapl["message"]
    assert xom["slippage_bps"] == 0.0 and f"filled at {T2} live, {T1} in the replay" in xom["message"]
    assert not result.order_differences
    [alarm] = result.alarms
    assert alarm.startswith("slippage +30.0 bps beyond 25")
    assert not run(tables(live), tables(replay), max_slippage_bps=31.0).alarms


def test_float_noise_in_fill_prices_is_no_difference():
    live = [order("AAPL", "buy", 10, price=100.0 * (1 + 1e-13))]
    assert not run(tables(live), tables([order("AAPL", "buy", 10)])).fill_differences


def test_pnl_threshold_is_a_fraction_of_the_start_equity():
    live, replay = tables([], start=100_000.0, end=100_200.0), tables([], start=100_000.0, end=100_100.0)
    assert run(live, replay, max_pnl_difference_fraction=0.002).clean
    result = run(live, replay, max_pnl_difference_fraction=0.0005)
    assert math.isclose(result.pnl["fraction"], 0.001)
    assert result.alarms and result.alarms[0].startswith("P&L differs by 100.00")


def test_orders_without_client_ids_pair_by_bar_symbol_side_and_type_in_order():
    live = pd.DataFrame([order("AAPL", "buy", 10), order("AAPL", "buy", 4)]).drop(columns="client_order_id")
    replay = pd.DataFrame([order("AAPL", "buy", 10), order("AAPL", "buy", 5)]).drop(columns="client_order_id")
    pairs = pair_orders(live.assign(client_order_id=None), replay.assign(client_order_id=None))
    assert [(a["size"], b["size"]) for a, b in pairs] == [(10, 10), (4, 5)]
    result = run(tables(live.to_dict("records")), tables(replay.to_dict("records")))
    [difference] = result.order_differences
    assert difference["kind"] == "size" and difference["size_replay"] == 5


def test_thresholds_come_from_the_config_section():
    from config import load_config

    section = load_config().reconciliation
    assert Thresholds.of(section) == Thresholds(section.max_order_differences, section.max_position_differences,
                                                section.max_slippage_bps, section.max_pnl_difference_fraction)
