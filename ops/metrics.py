"""Prometheus metrics of a live session: :class:`LiveMetrics` is a session observer
(``ops.observer``) that keeps its metrics in its own registry and serves them over HTTP.

Each hook only sets a gauge, adds to a counter or observes a histogram (a lock and a float: a few
microseconds on the trading loop); the text a scrape reads is written on the HTTP server's thread.
The names are those of docs/live.md ("Metrics") and of the Grafana dashboard in deploy/.
"""
from __future__ import annotations

import math
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from common.errors import UserError
from ops.observer import BarSnapshot, SessionObserver

# every status an order of the live broker goes through (brokers.live.tracker), exposed from the start
ORDER_STATUSES = ("intent", "new", "accepted", "pending_new", "held", "partially_filled", "filled", "canceled",
                  "expired", "rejected", "replaced", "abandoned")
STREAMS = ("trades", "bars")
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
FEATURE_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _value(x) -> float:
    """A snapshot's value as a gauge's: None (the strategy has no such thing) is NaN."""
    return float("nan") if x is None else float(x)


class _LastBarAge:
    """``trader_last_bar_age_seconds{symbol}``: seconds since each symbol's latest bar arrived,
    computed when scraped (a gauge set per bar would be stale between bars, which is what it shows)."""

    def __init__(self, arrivals: dict[str, float], clock):
        self.arrivals, self.clock = arrivals, clock

    def collect(self):
        family = GaugeMetricFamily("trader_last_bar_age_seconds", "Seconds since the latest bar of each symbol "
                                   "reached the process", labels=["symbol"])
        now = self.clock()
        for symbol, arrived in sorted(self.arrivals.items()):
            family.add_metric([symbol], now - arrived if arrived is not None else math.nan)
        yield family

    def describe(self):
        yield GaugeMetricFamily("trader_last_bar_age_seconds", "", labels=["symbol"])


class LiveMetrics(SessionObserver):
    """The session's metrics in ``self.registry``; :meth:`serve` exposes them at ``/metrics``.
    ``drift_psi_threshold``: a feature whose PSI is above it counts in ``trader_features_drifting``.
    ``clock``: wall-clock seconds (time.time), replaced by tests."""

    def __init__(self, *, drift_psi_threshold: float = 0.25, clock=time.time):
        self.registry = registry = CollectorRegistry()
        self.drift_psi_threshold = drift_psi_threshold
        self.clock = clock
        self._server = self._thread = None
        self._lock = threading.Lock()

        def gauge(name, doc):
            return Gauge(name, doc, registry=registry)

        self.equity = gauge("trader_equity_dollars", "Account equity (cash plus positions at the last close)")
        self.cash = gauge("trader_cash_dollars", "Cash")
        self.daily_pnl = gauge("trader_daily_pnl_dollars", "Equity now minus equity at the day's first bar")
        self.exposure = gauge("trader_exposure_ratio", "Gross market value of the positions over equity")
        self.open_positions = gauge("trader_open_positions", "Symbols with a position")
        self.open_orders = gauge("trader_open_orders", "Orders working at the broker")
        self.last_decided = gauge("trader_last_bar_decided_timestamp_seconds",
                                  "Unix time when the latest bar was decided (its orders sent and journaled)")
        self.calibration_error = gauge("trader_calibration_error",
                                       "Expected calibration error of the model's resolved predictions so far")
        self.drift_psi_max = gauge("trader_feature_drift_psi_max",
                                   "Largest population stability index of a feature, live against training")
        self.features_drifting = gauge("trader_features_drifting",
                                       "Features whose PSI is above the drift threshold")
        self.risk_score = gauge("trader_risk_score", "Mean risk score of the bar's entry candidates")
        self.kill_switch = gauge("trader_kill_switch_tripped", "1 while the kill switch holds new entries back")
        self.daily_limit = gauge("trader_daily_loss_limit_reached", "1 once the day's loss limit is reached")
        self.entries_halted = gauge("trader_entries_halted",
                                    "1 while the broker holds new entries back (stale feed, mismatch ...)")
        self.trading = gauge("trader_trading", "1 once the session trades, 0 while it warms up")
        for nan_until_known in (self.calibration_error, self.drift_psi_max, self.features_drifting,
                                self.risk_score, self.equity, self.cash, self.daily_pnl, self.exposure):
            nan_until_known.set(math.nan)

        self.bars = Counter("trader_bars", "Bars decided", registry=registry)
        self.orders = Counter("trader_orders", "Order status changes, by the status reached", ["status"],
                              registry=registry)
        self.rejections = Counter("trader_order_rejections", "Orders rejected (by the broker or held back)",
                                  registry=registry)
        self.reconnects = Counter("trader_reconnects", "Websocket reconnections after a drop", ["stream"],
                                  registry=registry)
        self.broker_errors = Counter("trader_broker_errors", "Broker requests that failed after their retries",
                                     registry=registry)
        # each status's child, looked up once: labels() takes a lock and builds a key every call
        self._orders_by_status = {status: self.orders.labels(status) for status in ORDER_STATUSES}
        for stream in STREAMS:
            self.reconnects.labels(stream)

        self.bar_to_order = Histogram("trader_bar_to_order_seconds",
                                      "From a bar's release to its orders sent, bars with orders",
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.feature_update = Histogram("trader_feature_update_seconds", "A bar's feature update",
                                        buckets=FEATURE_BUCKETS, registry=registry)
        self.confidence = Histogram("trader_model_confidence", "The model's confidence of each prediction",
                                    buckets=CONFIDENCE_BUCKETS, registry=registry)

        self._arrivals: dict[str, float] = {}
        registry.register(_LastBarAge(self._arrivals, clock))

    # ---- the hooks ------------------------------------------------------------------------------
    def session_started(self, session: str, symbols: list[str]) -> None:
        for symbol in symbols:
            self._arrivals.setdefault(symbol, None)
        self.trading.set(0)

    def bar_received(self, symbol, bar_datetime, wall_time) -> None:
        self._arrivals[symbol] = wall_time

    def bar_decided(self, snapshot: BarSnapshot) -> None:
        s = snapshot
        self.bars.inc()
        self.last_decided.set(s.wall_time)
        self.equity.set(s.equity)
        self.cash.set(s.cash)
        self.daily_pnl.set(s.daily_pnl)
        self.exposure.set(s.exposure)
        self.open_positions.set(s.open_positions)
        self.open_orders.set(s.open_orders)
        self.trading.set(1 if s.trading else 0)
        self.entries_halted.set(1 if s.entries_halted else 0)
        self.kill_switch.set(1 if s.kill_switch_tripped else 0)
        self.daily_limit.set(1 if s.daily_loss_limit_reached else 0)
        self.risk_score.set(_value(s.risk_score))
        self.calibration_error.set(_value(s.calibration_error))
        if s.feature_drift_psi:
            values = [v for v in s.feature_drift_psi.values() if v == v]  # NaN: a feature without live values
            self.drift_psi_max.set(max(values) if values else math.nan)
            self.features_drifting.set(sum(v > self.drift_psi_threshold for v in values))
        if s.bar_to_order_seconds is not None:
            self.bar_to_order.observe(s.bar_to_order_seconds)
        if s.feature_seconds is not None:
            self.feature_update.observe(s.feature_seconds)
        for confidence in s.confidences:
            self.confidence.observe(confidence)

    def order_status(self, client_order_id, symbol, status, reason=None) -> None:
        child = self._orders_by_status.get(status)
        if child is None:
            child = self._orders_by_status[status] = self.orders.labels(status)
        child.inc()
        if status == "rejected":
            self.rejections.inc()

    def broker_unreachable(self, what) -> None:
        self.broker_errors.inc()

    def reconnected(self, stream) -> None:
        self.reconnects.labels(stream).inc()

    # ---- HTTP ---------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> str:
        """Serve ``/metrics`` on a daemon thread; returns the URL. A port in use is a UserError."""
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UserError(f"live.metrics_port = {port}: cannot serve metrics on {host}:{port} "
                            f"({exc.strerror or exc}); choose a free port, or 0 for no metrics") from None
        return self.url(host)

    def url(self, host: str) -> str:
        port = self._server.server_address[1] if self._server is not None else 0
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/metrics"

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server is not None else None

    def close(self) -> None:
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
