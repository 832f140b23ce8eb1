"""What every strategy of ours shares: the clock over many symbols, order helpers that record why
each order exists, and the stop/target state the observers and records read.

A strategy subclasses :class:`PortfolioStrategy` and writes ``decide(now, fresh)``: called once per
bar with the bar's datetime and the symbols that have a bar at that datetime. The same code runs
in a backtest and live: nothing here knows which broker or feed it talks to.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

from engine.compat import bt

log = logging.getLogger("strategy")

# exit reasons a trade can end with (trades.csv `exit_reason`); `rank`: ml_rank sold a holding that
# fell out of its keep_k
EXIT_REASONS = ("stop", "trailing_stop", "target", "signal", "time", "rank", "kill_switch", "delisted", "end")


@dataclass
class OpenPosition:
    """The plan behind one open (or pending) long position."""

    symbol: str
    size: int
    signal_price: float
    entry_order: object
    stop_price: float | None = None
    target_price: float | None = None
    confidence: float | None = None
    expected_return: float | None = None
    entry_datetime: dt.datetime | None = None
    entry_price: float | None = None
    bars_held: int = 0
    children: list = field(default_factory=list)  # live stop / target orders
    exiting: bool = False
    extra: dict = field(default_factory=dict)


class PortfolioStrategy(bt.Strategy):
    """Multi-symbol long-only strategy base.

    - ``self.now``: the current bar's datetime (the latest timestamp among the symbols, so a symbol
      that starts late or misses a day neither delays nor shifts the clock).
    - ``fresh``: the data feeds with a bar at ``self.now``; decisions use only those.
    - Entries go through :meth:`enter_long` (market or next-close order with a real stop order and,
      optionally, a take-profit limit order attached); exits through :meth:`exit_position`.
    """

    # data_ends: {symbol: (bar, last bar)} for symbols whose data ends before the run's (a delisting,
    # known in advance as one is announced): from ``bar`` on no entry, and a position held then is
    # closed at the last bar's close (exit reason ``delisted``). Backtest and replay pass it; live, none.
    params = (("cfg", None), ("data_ends", None))
    long_only = True  # the live broker refuses a sell beyond the long position held

    @classmethod
    def required_bars(cls, cfg) -> int:
        """Bars of history a symbol needs before the strategy may trade it (its warm-up)."""
        return 1

    def __init__(self):
        if self.p.cfg is None:
            raise ValueError("strategy needs cfg=Config")
        self.cfg = self.p.cfg
        self.warmup_bars = self.required_bars(self.cfg)
        self.positions_plan: dict[str, OpenPosition] = {}
        self.stop_levels: dict[str, float] = {}
        self.target_levels: dict[str, float] = {}
        self.now: dt.datetime | None = None
        self._now_num = 0.0
        self._ids_bar, self._ids_seen = None, {}
        self.order_id_prefix = ""  # live trading sets a per-deployment prefix
        self._entry_exectype = bt.Order.Market if self.cfg.costs.fill == "next_open" else bt.Order.Close
        self._closing_num = {symbol: bt.date2num(bar) for symbol, (bar, _) in (self.p.data_ends or {}).items()}
        start = self.cfg.backtest.start
        # bars before the configured start only warm indicators up
        self.trade_start = dt.datetime.combine(start, dt.time()) if start else None

    # ---- clock -------------------------------------------------------------------------------
    def prenext(self):
        # Symbols that start late keep some indicators unready; the others must still trade.
        self.next()

    def next(self):
        nums = [d.datetime[0] for d in self.datas if len(d)]
        if not nums:
            return
        self._now_num = max(nums)
        self.now = bt.num2date(self._now_num)
        fresh = [d for d in self.datas if len(d) and d.datetime[0] == self._now_num]
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is not None and plan.entry_datetime is not None:
                plan.bars_held += 1
        if self.trade_start is None or self.now >= self.trade_start:
            if self._closing_num:
                self._close_delisted(fresh)
            self.decide(self.now, fresh)

    def _leaving(self, d) -> bool:
        """Whether ``d``'s data ends at the next bar, before the run's (see ``data_ends``)."""
        closing = self._closing_num.get(d._name)
        return closing is not None and d.datetime[0] >= closing

    def _close_delisted(self, fresh: list) -> None:
        """Close each position whose symbol's data ends at the next bar, at that bar's close."""
        for d in fresh:
            if self._leaving(d):
                self.exit_position(d, "delisted", exectype=bt.Order.Close)

    def decide(self, now: dt.datetime, fresh: list) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def tradable(self, d) -> bool:
        """Enough history for the strategy's warm-up (the symbol's own bars)."""
        return len(d) >= self.warmup_bars

    # ---- orders ------------------------------------------------------------------------------
    def _order_id(self, symbol: str, purpose: str) -> str:
        """Deterministic and idempotent: the id depends only on the symbol, the bar and the purpose
        (and a count within that bar), so a restarted live process that re-decides a bar produces the
        same ids, and the broker's refusal of a duplicate id stops a second submission."""
        key = (symbol, self._now_num, purpose)
        if self._ids_bar != self._now_num:
            self._ids_bar, self._ids_seen = self._now_num, {}
        n = self._ids_seen.get(key, 0) + 1
        self._ids_seen[key] = n
        suffix = f"-{n}" if n > 1 else ""
        return f"{self.order_id_prefix}{symbol}-{self.now:%Y%m%d%H%M%S}-{purpose}{suffix}"

    def _tag(self, order, symbol: str, reason: str, **info):
        order.addinfo(reason=reason, symbol=symbol, client_order_id=self._order_id(symbol, reason), **info)
        return order

    def open_and_pending(self) -> int:
        return len(self.positions_plan)

    def enter_long(self, d, size: int, *, stop_price: float | None, target_price: float | None = None,
                   reason: str = "entry", confidence: float | None = None,
                   expected_return: float | None = None, limit_price: float | None = None, **extra):
        """Buy ``size`` shares at the next bar (open or close per config), with a stop order and an
        optional take-profit order that become active once the entry fills (one cancels the other)."""
        symbol = d._name
        if size <= 0 or symbol in self.positions_plan or self._leaving(d):
            return None
        has_children = stop_price is not None or target_price is not None
        info = dict(initial_stop=stop_price, target=target_price, confidence=confidence,
                    expected_return=expected_return)
        exectype = bt.Order.Limit if limit_price is not None else self._entry_exectype
        main = self.buy(data=d, size=size, exectype=exectype, price=limit_price, transmit=not has_children)
        self._tag(main, symbol, reason, **info)
        plan = OpenPosition(symbol=symbol, size=size, signal_price=float(d.close[0]), entry_order=main,
                            stop_price=stop_price, target_price=target_price, confidence=confidence,
                            expected_return=expected_return, extra=extra)
        if stop_price is not None:
            stop = self.sell(data=d, size=size, exectype=bt.Order.Stop, price=stop_price, parent=main,
                             transmit=target_price is None)
            plan.children.append(self._tag(stop, symbol, "stop"))
        if target_price is not None:
            target = self.sell(data=d, size=size, exectype=bt.Order.Limit, price=target_price, parent=main,
                               transmit=True)
            plan.children.append(self._tag(target, symbol, "target"))
        self.positions_plan[symbol] = plan
        log.debug("%s entry %s size=%d signal=%.4f stop=%s target=%s confidence=%s", self.now, symbol, size,
                  plan.signal_price, stop_price, target_price, confidence)
        return main

    def replace_exits(self, d, plan: OpenPosition, *, size: int, stop_price: float | None,
                      target_price: float | None, trailing: bool = False) -> None:
        """Cancel the position's stop and target orders and place new ones for ``size`` shares: a
        stop (a stop-trail order from ``stop_price`` up, trailing by ``risk.trail_pct``, when ``trailing``) and a take-profit
        limit, one cancelling the other. Backtrader cancels a bracket's children together, so the
        pair is always replaced whole. A trailing stop goes without a take-profit: Alpaca's
        one-cancels-other orders take no trailing stop (``brokers.live_broker``), and a backtest
        that kept one would trade what live cannot."""
        if trailing:
            target_price = None
        for child in plan.children:
            if child.alive():
                self.cancel(child)
        plan.children = []
        symbol = d._name
        stop = None
        if trailing:
            # the order starts at stop_price (Backtrader starts a stop-trail at price x (1 - trail)) and
            # trails up from there: re-placing it never loosens the level it had reached
            trail = self.cfg.risk.trail_pct
            stop = self.sell(data=d, size=size, exectype=bt.Order.StopTrail, price=stop_price / (1 - trail),
                             trailpercent=trail)
            plan.children.append(self._tag(stop, symbol, "trailing_stop"))
        elif stop_price is not None:
            stop = self.sell(data=d, size=size, exectype=bt.Order.Stop, price=stop_price)
            plan.children.append(self._tag(stop, symbol, "stop"))
        if target_price is not None:
            target = self.sell(data=d, size=size, exectype=bt.Order.Limit, price=target_price, oco=stop)
            plan.children.append(self._tag(target, symbol, "target"))
        plan.stop_price, plan.target_price = stop_price, target_price
        for levels, level in ((self.stop_levels, stop_price), (self.target_levels, target_price)):
            if level is None:
                levels.pop(symbol, None)
            else:
                levels[symbol] = level

    def exit_position(self, d, reason: str, exectype=None):
        """Close the whole (long) position at the next bar (same fill rule as entries, or ``exectype``);
        cancel its stop/target. Nothing when none is held: a book that is flat or short has nothing to sell."""
        plan = self.positions_plan.get(d._name)
        size = self.getposition(d).size
        if plan is None or plan.exiting or size <= 0:
            return None
        plan.exiting = True
        for child in plan.children:
            if child.alive():
                self.cancel(child)
        order = self.sell(data=d, size=size, exectype=exectype or self._entry_exectype)
        return self._tag(order, d._name, reason, exit=True)

    # ---- notifications -----------------------------------------------------------------------
    def notify_order(self, order):
        symbol = order.info.get("symbol")
        plan = self.positions_plan.get(symbol)
        if plan is None:
            return
        if order.ref == plan.entry_order.ref:  # brokers notify with copies of the order
            if order.status == order.Completed:
                plan.entry_datetime = bt.num2date(order.executed.dt)
                plan.entry_price = float(order.executed.price)
                plan.size = int(order.executed.size)
                if plan.stop_price is not None:
                    self.stop_levels[symbol] = plan.stop_price
                if plan.target_price is not None:
                    self.target_levels[symbol] = plan.target_price
            elif order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired):
                self._forget(symbol)
            return
        if order.status == order.Completed and order.isbuy() is False:
            position = self.getposition(order.data).size
            if position == 0:
                self._forget(symbol)
        elif order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired) and plan.exiting \
                and order.info.get("exit"):
            plan.exiting = False  # the exit did not happen (refused by the broker): decided again next bar

    def _forget(self, symbol: str) -> None:
        self.positions_plan.pop(symbol, None)
        self.stop_levels.pop(symbol, None)
        self.target_levels.pop(symbol, None)

    # ---- sizing helpers ----------------------------------------------------------------------
    def committed_cash(self) -> float:
        """Cash promised to entries that have not filled yet (so we never over-commit)."""
        total = 0.0
        for plan in self.positions_plan.values():
            if plan.entry_datetime is None and plan.entry_order.alive():
                total += plan.size * plan.signal_price
        return total

    def shares_for_value(self, value: float, price: float) -> int:
        if price <= 0 or not math.isfinite(price) or value <= 0:
            return 0
        # leave room for costs on the fill so a market order is not rejected for a few cents
        costs = (self.cfg.costs.commission_bps + self.cfg.costs.slippage_bps) / 1e4
        return int(value / (price * (1 + 2 * costs)))
