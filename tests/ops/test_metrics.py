"""LiveMetrics: the exporter's families, names and values, read back as Prometheus text."""
import datetime as dt
import math
import socket
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.errors import UserError
from ops.metrics import LiveMetrics
from ops.observer import BarSnapshot, Observers

GAUGES = ["trader_equity_dollars", "trader_cash_dollars", "trader_daily_pnl_dollars", "trader_exposure_ratio",
          "trader_open_positions", "trader_open_orders", "trader_last_bar_age_seconds",
          "trader_last_bar_decided_timestamp_seconds", "trader_calibration_error", "trader_feature_drift_psi_max",
          "trader_features_drifting", "trader_risk_score", "trader_kill_switch_tripped",
          "trader_daily_loss_limit_reached", "trader_entries_halted", "trader_trading"]
COUNTERS = ["trader_bars", "trader_orders", "trader_order_rejections", "trader_reconnects", "trader_broker_errors"]
HISTOGRAMS = ["trader_bar_to_order_seconds", "trader_feature_update_seconds", "trader_model_confidence"]


def families(metrics: LiveMetrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}


def value(family, suffix: str = "", **labels) -> float:
    name = family.name + suffix
    matches = [s.value for s in family.samples if s.name == name and all(s.labels.get(k) == v
                                                                         for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, family.samples)
    return matches[0]


def snapshot(**fields) -> BarSnapshot:
    base = dict(session="t-momentum", bar_datetime=dt.datetime(2024, 1, 2, 10, 0), wall_time=1_700_000_000.0,
                equity=101_000.0, cash=40_000.0, daily_pnl=1_000.0, exposure=0.6, open_positions=3, open_orders=2,
                trading=True)
    base.update(fields)
    return BarSnapshot(**base)


def test_every_metric_is_exposed_from_the_start_with_its_label_series_at_zero():
    metrics = LiveMetrics(clock=lambda: 100.0)
    metrics.session_started("t-momentum", ["AAPL", "JPM"])
    found = families(metrics)
    assert {*GAUGES, *COUNTERS, *HISTOGRAMS} <= set(found)
    assert {f.type for n, f in found.items() if n in COUNTERS} == {"counter"}
    assert {f.type for n, f in found.items() if n in HISTOGRAMS} == {"histogram"}
    for status in ("new", "filled", "canceled", "rejected", "expired"):
        assert value(found["trader_orders"], "_total", status=status) == 0
    for stream in ("trades", "bars"):
        assert value(found["trader_reconnects"], "_total", stream=stream) == 0
    assert value(found["trader_trading"]) == 0
    assert math.isnan(value(found["trader_equity_dollars"]))  # nothing known before the first bar
    assert math.isnan(value(found["trader_last_bar_age_seconds"], symbol="AAPL"))  # no bar yet


def test_a_snapshot_sets_the_gauges_and_fills_the_histograms():
    metrics = LiveMetrics(drift_psi_threshold=0.25)
    metrics.bar_decided(snapshot(bar_to_order_seconds=0.004, feature_seconds=0.0003, kill_switch_tripped=True,
                                 daily_loss_limit_reached=False, risk_score=0.4, confidences=[0.55, 0.72, 0.91],
                                 calibration_error=0.06, feature_drift_psi={"rsi": 0.05, "vol": 0.4, "mom": 0.3},
                                 entries_halted="stale data: no bar for 200 s"))
    metrics.bar_decided(snapshot(equity=99_500.0, daily_pnl=-500.0, trading=True))
    found = families(metrics)
    assert value(found["trader_bars"], "_total") == 2
    assert value(found["trader_equity_dollars"]) == 99_500.0
    assert value(found["trader_cash_dollars"]) == 40_000.0
    assert value(found["trader_daily_pnl_dollars"]) == -500.0
    assert value(found["trader_exposure_ratio"]) == 0.6
    assert value(found["trader_open_positions"]) == 3 and value(found["trader_open_orders"]) == 2
    assert value(found["trader_last_bar_decided_timestamp_seconds"]) == 1_700_000_000.0
    assert value(found["trader_trading"]) == 1
    # the second snapshot carries no halt, no kill switch: cleared; no model figures: NaN
    assert value(found["trader_entries_halted"]) == 0 and value(found["trader_kill_switch_tripped"]) == 0
    assert math.isnan(value(found["trader_risk_score"]))
    # the drift figures stay as the last bar that had them
    assert value(found["trader_feature_drift_psi_max"]) == 0.4
    assert value(found["trader_features_drifting"]) == 2
    latency = found["trader_bar_to_order_seconds"]
    assert value(latency, "_count") == 1 and value(latency, "_sum") == pytest.approx(0.004)
    assert value(latency, "_bucket", le="0.005") == 1 and value(latency, "_bucket", le="0.002") == 0
    assert {s.labels["le"] for s in latency.samples if s.name.endswith("_bucket")} >= {"0.001", "5.0", "+Inf"}
    confidence = found["trader_model_confidence"]
    assert value(confidence, "_count") == 3 and value(confidence, "_bucket", le="0.6") == 1
    assert value(found["trader_feature_update_seconds"], "_count") == 1


def test_the_first_snapshot_shows_the_halt_and_the_model_figures():
    metrics = LiveMetrics()
    metrics.bar_decided(snapshot(entries_halted="positions differ", daily_loss_limit_reached=True, risk_score=0.3,
                                 calibration_error=0.08))
    found = families(metrics)
    assert value(found["trader_entries_halted"]) == 1 and value(found["trader_daily_loss_limit_reached"]) == 1
    assert value(found["trader_risk_score"]) == 0.3 and value(found["trader_calibration_error"]) == 0.08


def test_orders_rejections_reconnects_and_broker_errors_are_counted():
    metrics = LiveMetrics()
    observers = Observers(metrics)  # as the live path calls it
    for status in ("intent", "new", "filled", "intent", "rejected"):
        observers.order_status("t-AAPL-1", "AAPL", status)
    observers.order_status("t-XOM-1", "XOM", "done_for_day")  # a status not created in advance
    observers.reconnected("bars")
    observers.broker_unreachable("submit order: no connection after 6 attempts")
    found = families(metrics)
    assert value(found["trader_orders"], "_total", status="intent") == 2
    assert value(found["trader_orders"], "_total", status="rejected") == 1
    assert value(found["trader_orders"], "_total", status="done_for_day") == 1
    assert value(found["trader_order_rejections"], "_total") == 1
    assert value(found["trader_reconnects"], "_total", stream="bars") == 1
    assert value(found["trader_reconnects"], "_total", stream="trades") == 0
    assert value(found["trader_broker_errors"], "_total") == 1


def test_the_last_bar_age_is_computed_when_scraped():
    now = [1000.0]
    metrics = LiveMetrics(clock=lambda: now[0])
    metrics.session_started("s", ["AAPL", "JPM"])
    metrics.bar_received("AAPL", dt.datetime(2024, 1, 2, 10, 0), 990.0)
    metrics.bar_received("JPM", dt.datetime(2024, 1, 2, 10, 0), 995.0)
    assert value(families(metrics)["trader_last_bar_age_seconds"], symbol="AAPL") == 10.0
    now[0] = 1060.0
    found = families(metrics)["trader_last_bar_age_seconds"]
    assert value(found, symbol="AAPL") == 70.0 and value(found, symbol="JPM") == 65.0


def test_serves_over_http_and_a_port_in_use_is_a_one_line_user_error():
    metrics = LiveMetrics()
    url = metrics.serve("127.0.0.1", 0)
    try:
        assert url == f"http://127.0.0.1:{metrics.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "trader_bars_total 0.0" in text
        with pytest.raises(UserError, match=r"live.metrics_port = \d+") as error:
            LiveMetrics().serve("127.0.0.1", metrics.port)
        assert "\n" not in str(error.value)
    finally:
        metrics.close()
    with socket.socket() as probe:  # closed: the port can be listened on again (as a server reuses it)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])))
