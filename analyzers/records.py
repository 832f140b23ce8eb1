"""Backtrader analyzers that record a run: orders, round-trip trades, positions and equity.

They only record; every figure computed from the records lives in ``analyzers/stats.py``.
Column names are part of the project's interface (other tools read the CSVs): keep them.
"""
from __future__ import annotations

import math

from engine.compat import bt

ORDER_COLUMNS = ["datetime", "symbol", "side", "size", "type", "status", "price", "stop_price",
                 "client_order_id", "reason", "filled_datetime", "commission"]
TRADE_COLUMNS = ["symbol", "entry_datetime", "exit_datetime", "side", "size", "entry_price", "exit_price",
                 "pnl", "pnl_pct", "initial_stop", "target", "confidence", "expected_return",
                 "equity_at_entry", "exit_reason", "bars_held", "commission"]
POSITION_COLUMNS = ["datetime", "symbol", "size", "price", "value", "weight", "stop"]
EQUITY_COLUMNS = ["datetime", "equity", "cash", "drawdown"]

_FINAL = {"Completed", "Canceled", "Expired", "Margin", "Rejected"}


def _clock(strategy):
    """The bar's datetime as the strategy sees it (the latest timestamp among the symbols)."""
    return strategy.now if strategy.now is not None else strategy.datetime.datetime(0)


def _num(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


class OrderLog(bt.Analyzer):
    """One row per order, written when it reaches a final status (or at the end if still open)."""

    def start(self):
        self.rows: list[dict] = []
        self._created: dict[int, object] = {}
        self._open: dict[int, object] = {}

    def notify_order(self, order):
        if order.ref not in self._created:
            self._created[order.ref] = _clock(self.strategy)
        status = order.getstatusname()
        if status in _FINAL:
            self._open.pop(order.ref, None)
            self.rows.append(self._row(order, status))
        else:
            self._open[order.ref] = order

    def stop(self):
        for order in self._open.values():
            self.rows.append(self._row(order, order.getstatusname()))
        self._open.clear()

    def _row(self, order, status):
        executed = order.executed
        filled = executed.size != 0
        return {
            "datetime": self._created.get(order.ref),
            "symbol": order.data._name,
            "side": "buy" if order.isbuy() else "sell",
            "size": abs(order.created.size),
            "type": order.getordername().lower(),
            "status": status.lower(),
            "price": executed.price if filled else _num(order.created.price),
            "stop_price": order.created.price if order.exectype in (bt.Order.Stop, bt.Order.StopLimit) else None,
            "client_order_id": order.info.get("client_order_id"),
            "reason": order.info.get("reason"),
            "filled_datetime": bt.num2date(executed.dt) if filled else None,
            "commission": executed.comm if filled else 0.0,
        }

    def get_analysis(self):
        return self.rows


class TradeLog(bt.Analyzer):
    """Round trips per symbol, from the first fill that opens a position to the fill that flattens it.

    The entry's plan (initial stop, target, confidence, expected return) comes from the opening
    order's info; the exit reason from the order that flattened it. Positions still open at the end
    are reported with ``exit_reason="end"``, marked at the last close (unrealised, no exit costs).
    """

    def start(self):
        self.rows: list[dict] = []
        self._open: dict[str, dict] = {}
        self._seen: dict[int, tuple[float, float, float]] = {}  # order ref -> size, notional, comm recorded

    def notify_order(self, order):
        if order.status not in (order.Partial, order.Completed):
            return
        size_done, notional_done, comm_done = self._seen.get(order.ref, (0.0, 0.0, 0.0))
        executed = order.executed
        delta_size = executed.size - size_done
        if delta_size == 0:
            return
        delta_notional = executed.size * executed.price - notional_done
        delta_comm = executed.comm - comm_done
        self._seen[order.ref] = (executed.size, executed.size * executed.price, executed.comm)
        self._fill(order, delta_size, delta_notional / delta_size, delta_comm, bt.num2date(executed.dt))

    def _fill(self, order, size, price, comm, when):
        symbol = order.data._name
        trade = self._open.get(symbol)
        if trade is None:
            info = order.info
            trade = self._open[symbol] = {
                "symbol": symbol, "entry_datetime": when, "side": "long" if size > 0 else "short",
                "size": 0.0, "position": 0.0, "entry_value": 0.0, "exit_value": 0.0, "exit_size": 0.0,
                "initial_stop": _num(info.get("initial_stop")), "target": _num(info.get("target")),
                "confidence": _num(info.get("confidence")),
                "expected_return": _num(info.get("expected_return")),
                "equity_at_entry": self.strategy.broker.getvalue(), "commission": 0.0, "bars": 0,
            }
        trade["commission"] += comm
        opening = (trade["position"] >= 0 and size > 0) or (trade["position"] <= 0 and size < 0)
        if opening:
            trade["entry_value"] += abs(size) * price
            trade["size"] += abs(size)
        else:
            trade["exit_value"] += abs(size) * price
            trade["exit_size"] += abs(size)
        trade["position"] += size
        if abs(trade["position"]) < 1e-9:
            self._close(trade, when, order.info.get("reason") or "signal")

    def next(self):
        for trade in self._open.values():
            trade["bars"] += 1

    def _close(self, trade, when, reason, exit_price=None):
        entry_price = trade["entry_value"] / trade["size"]
        if exit_price is None:
            exit_price = trade["exit_value"] / trade["exit_size"]
        sign = 1.0 if trade["side"] == "long" else -1.0
        gross = sign * (exit_price - entry_price) * trade["size"]
        pnl = gross - trade["commission"]
        self.rows.append({
            "symbol": trade["symbol"], "entry_datetime": trade["entry_datetime"], "exit_datetime": when,
            "side": trade["side"], "size": trade["size"], "entry_price": entry_price, "exit_price": exit_price,
            "pnl": pnl, "pnl_pct": pnl / trade["entry_value"], "initial_stop": trade["initial_stop"],
            "target": trade["target"], "confidence": trade["confidence"],
            "expected_return": trade["expected_return"], "equity_at_entry": trade["equity_at_entry"],
            "exit_reason": reason, "bars_held": trade["bars"], "commission": trade["commission"],
        })
        self._open.pop(trade["symbol"], None)

    def stop(self):
        by_name = {d._name: d for d in self.strategy.datas}
        for trade in list(self._open.values()):
            d = by_name[trade["symbol"]]
            # mark the unclosed remainder at the last close; the closed part keeps its real exit prices
            remaining = abs(trade["position"])
            value = trade["exit_value"] + remaining * d.close[0]
            self._close(trade, bt.num2date(d.datetime[0]), "end", exit_price=value / trade["size"])

    def get_analysis(self):
        return self.rows


class PositionLog(bt.Analyzer):
    """One row per open position per bar, with the stop level the strategy holds for it."""

    def start(self):
        self.rows: list[tuple] = []

    def next(self):
        now = _clock(self.strategy)
        equity = self.strategy.broker.getvalue()
        stops = self.strategy.stop_levels
        for d in self.strategy.datas:
            size = self.strategy.getposition(d).size
            if size:
                price = d.close[0]
                value = size * price
                self.rows.append((now, d._name, size, price, value, value / equity if equity else 0.0,
                                  stops.get(d._name)))

    def get_analysis(self):
        return self.rows


class EquityLog(bt.Analyzer):
    """Equity and cash at every bar of the run's clock."""

    def start(self):
        self.rows: list[tuple] = []

    def next(self):
        self.rows.append((_clock(self.strategy), self.strategy.broker.getvalue(), self.strategy.broker.getcash()))

    def get_analysis(self):
        return self.rows


class Progress(bt.Analyzer):
    """A progress bar over the run's bars (shown only when asked; tqdm writes to stderr)."""

    params = (("total", None), ("desc", "backtest"))

    def start(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.p.total, desc=self.p.desc, unit="bar", mininterval=0.5, leave=False)

    def next(self):
        self.bar.update(1)

    def stop(self):
        self.bar.close()
