"""What every strategy of ours shares: the clock over many symbols, order helpers that record why
each order exists, and the stop/target state the observers and records read.

A strategy subclasses :class:`PortfolioStrategy` and writes ``decide(now, fresh)``: called once per
bar with the bar's datetime and the symbols that have a bar at that datetime. The same code runs
in a backtest and live: nothing here knows which broker or feed it talks to.

What the run (``engine.backtest``, ``engine.live``) asks of a strategy is declared here, with
defaults a subclass overrides: its warm-up (``required_bars``), whether it trains models
(``trains_models``, ``bars_before_first_training``, ``retrain_now``, ``walk_forward``), the kill
switch's verdict (``halted``), the bar's predictions for the live journal (``bar_predictions``), and
the state a live restart carries on from (``save_state`` / ``restore_state``, with the subclass's own
``export_state`` / ``import_state``), and an operator's controls (``flatten``, ``reset_kill_switch``:
``ops.controls``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from engine.compat import bt
from ops.controls import ControlRefused
from risk.position_rules import PositionState

log = logging.getLogger("strategy")

# exit reasons a trade can end with (trades.csv `exit_reason`); `rank`: ml_rank sold a holding that
# fell out of its keep_k; `manual`: an operator's flatten (``ops.controls``)
EXIT_REASONS = ("stop", "trailing_stop", "target", "signal", "time", "rank", "kill_switch", "delisted", "manual",
                "end")


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
    state: PositionState = field(default_factory=PositionState)  # what the plan's rules carry from bar to bar


def plan_state(plan: OpenPosition) -> dict:
    """One plan as the saved state's JSON: its orders by client id, its entry time in ISO format,
    its rules' state as a dict, the rest as it is."""
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    fields["entry_order"] = plan.entry_order.info.get("client_order_id")
    fields["children"] = [c.info.get("client_order_id") for c in plan.children]
    fields["entry_datetime"] = plan.entry_datetime.isoformat() if plan.entry_datetime else None
    fields["state"] = plan.state.to_dict()
    return fields


def plan_from_state(fields: dict, entry, children: list) -> OpenPosition:
    """The plan :func:`plan_state` saved, with its orders as the broker handed them back. A plan
    saved before its rules' state was typed has that state as ``extra``."""
    restored = {name: value for name, value in fields.items() if name not in ("state", "extra")}
    restored.update(entry_order=entry, children=children,
                    state=PositionState.from_dict(fields.get("state", fields.get("extra", {}))))
    if fields["entry_datetime"]:
        restored["entry_datetime"] = dt.datetime.fromisoformat(fields["entry_datetime"])
    return OpenPosition(**restored)


class TradeGate:
    """From which bar a strategy trades; the bars before it only warm it up. A live start passes one
    that stays shut through the history warm-up; the session opens it (:meth:`open_at`) at the first
    bar its policy trades (``engine.live.TradePolicy``)."""

    def __init__(self, start: dt.datetime | None = dt.datetime.max):
        self.start = start  # None: every bar; datetime.max: shut

    def open_at(self, bar: dt.datetime) -> None:
        # Backtrader's float clock can read a hair before the bar's time
        self.start = bar - dt.timedelta(milliseconds=1)

    def allows(self, now: dt.datetime) -> bool:
        return self.start is None or now >= self.start


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
    # order_id_prefix: prepended to every client order id (live: one deployment per prefix).
    # trade_gate: a TradeGate (live); none: trade from ``backtest.start`` (every bar without one).
    params = (("cfg", None), ("data_ends", None), ("order_id_prefix", ""), ("trade_gate", None))
    long_only = True  # the live broker refuses a sell beyond the long position held
    # trains_models: it fits its own models (walk-forward; the ``models`` methods below) or trades a
    # registry model given as its ``model`` parameter; live, only such a strategy takes ``--model`` and
    # is retrained on the schedule
    trains_models = False
    halted: dict | None = None  # the kill switch's verdict once it tripped (when, why): metrics.json reports it
    controls = None  # live: the session's ops.controls.ControlDesk, applied at the top of each traded bar

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
        self._entry_exectype = bt.Order.Market if self.cfg.costs.fill == "next_open" else bt.Order.Close
        self._closing_num = {symbol: bt.date2num(bar) for symbol, (bar, _) in (self.p.data_ends or {}).items()}
        start = self.cfg.backtest.start
        # bars before the configured start only warm indicators up
        self.trade_gate = self.p.trade_gate or TradeGate(dt.datetime.combine(start, dt.time()) if start else None)

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
        if self.trade_gate.allows(self.now):
            if self.controls is not None:
                # here, not in the session's bar release: the feeds hold the new bar and ``now`` is set, so a
                # flatten's exits carry this bar's order ids and prices, and a reset or a pause holds for
                # the decision that follows; on the trading thread, as every order is placed
                self.controls.apply(self, self.now)
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
        return f"{self.p.order_id_prefix}{symbol}-{self.now:%Y%m%d%H%M%S}-{purpose}{suffix}"

    def _tag(self, order, symbol: str, reason: str, **info):
        order.addinfo(reason=reason, symbol=symbol, client_order_id=self._order_id(symbol, reason), **info)
        return order

    def open_and_pending(self) -> int:
        return len(self.positions_plan)

    def enter_long(self, d, size: int, *, stop_price: float | None, target_price: float | None = None,
                   reason: str = "entry", confidence: float | None = None,
                   expected_return: float | None = None, limit_price: float | None = None):
        """Buy ``size`` shares at the next bar (open or close per config), with a stop order and an
        optional take-profit order that become active once the entry fills (one cancels the other)."""
        symbol = d._name
        if size <= 0 or symbol in self.positions_plan or self._leaving(d):
            return None
        paused = getattr(self.broker, "entries_paused", None)  # an operator's pause (live): the broker would refuse it
        if paused:
            log.debug("%s entry %s not placed: %s", self.now, symbol, paused)
            return None
        has_children = stop_price is not None or target_price is not None
        info = dict(initial_stop=stop_price, target=target_price, confidence=confidence,
                    expected_return=expected_return)
        exectype = bt.Order.Limit if limit_price is not None else self._entry_exectype
        main = self.buy(data=d, size=size, exectype=exectype, price=limit_price, transmit=not has_children)
        self._tag(main, symbol, reason, **info)
        plan = OpenPosition(symbol=symbol, size=size, signal_price=float(d.close[0]), entry_order=main,
                            stop_price=stop_price, target_price=target_price, confidence=confidence,
                            expected_return=expected_return)
        if stop_price is not None:
            stop = self.sell(data=d, size=size, exectype=bt.Order.Stop, price=stop_price, parent=main,
                             transmit=target_price is None)
            plan.children.append(self._tag(stop, symbol, "stop"))
        if target_price is not None:
            target = self.sell(data=d, size=size, exectype=bt.Order.Limit, price=target_price, parent=main,
                               transmit=True)
            plan.children.append(self._tag(target, symbol, "target"))
        self.positions_plan[symbol] = plan
        self._orders_complete()
        log.debug("%s entry %s size=%d signal=%.4f stop=%s target=%s confidence=%s", self.now, symbol, size,
                  plan.signal_price, stop_price, target_price, confidence)
        return main

    def replace_exits(self, d, plan: OpenPosition, *, size: int, stop_price: float | None,
                      target_price: float | None, trailing: bool = False) -> None:
        """Cancel the position's stop and target orders and place new ones for ``size`` shares: a
        stop (a stop-trail order from ``stop_price`` up, trailing by ``risk.trail_pct``, when ``trailing``) and a take-profit
        limit, one cancelling the other. Backtrader cancels a bracket's children together, so the
        pair is always replaced whole. A trailing stop goes without a take-profit: Alpaca's
        one-cancels-other orders take no trailing stop (``brokers.alpaca.capabilities``), and a backtest
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
        self._orders_complete()

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
        order = self._tag(self.sell(data=d, size=size, exectype=exectype or self._entry_exectype), d._name, reason,
                          exit=True)
        self._orders_complete()
        return order

    def _orders_complete(self) -> None:
        """The orders just placed are whole (an entry with its legs, an exit, a stop with its take-profit):
        a live broker sends them now (``brokers.live.outbox.Outbox.send_ready``), so the bar's first order
        does not wait for the rest of the decision. Backtrader's own broker fills at the next bar and
        has nothing to send (hence the check on the broker, not a method of every broker)."""
        send = getattr(self.broker, "send_ready", None)
        if send is not None:
            send()

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

    # ---- sizing helper -----------------------------------------------------------------------
    def committed_cash(self) -> float:
        """Cash promised to entries that have not filled yet (so we never over-commit)."""
        total = 0.0
        for plan in self.positions_plan.values():
            if plan.entry_datetime is None and plan.entry_order.alive():
                total += plan.size * plan.signal_price
        return total

    # ---- models (a strategy with ``trains_models`` overrides these) --------------------------
    @classmethod
    def bars_before_first_training(cls, cfg, registry) -> int | None:
        """Bars before the strategy, training its own model, first predicts on a live start (its
        warm-up when no registry model is given); None: it trains none."""
        return None

    def retrain_now(self) -> None:
        """The live runner's scheduled retrain (``live.retrain_every_days``), after the close: nothing
        to retrain here."""

    def walk_forward(self):
        """(``WalkForwardResult``, ``PanelData``) of the run's walk-forward training, for metrics.json's
        ``walk_forward`` section; None: no model was fitted."""
        return None

    def after_orders(self) -> None:
        """The bar's work no order waits for, once its orders are sent (live: the session calls it right
        after the bar's send); nothing here."""

    def monitoring(self) -> dict:
        """The strategy's figures after a bar, for the live metrics and alerts: any of the fields of
        ``ops.observer.BarSnapshot`` it has (kill_switch_tripped, daily_loss_limit_reached,
        risk_score, confidences, calibration_error, feature_drift_psi, model_id, model_trained_at).
        Called live after each bar once its orders are sent; none here."""
        return {}

    def risk_figures(self) -> dict:
        """The account gates' figures after a bar, for the live status (``ops.status``): ``kill_switch``
        (peak_equity, drawdown, limit, tripped, ...) and ``daily_loss`` (day, day_start_equity, day_loss,
        limit, blocked, ...), those the strategy has; none here."""
        return {}

    # ---- an operator's controls (ops.controls), applied before the bar's decision ---------------
    def reset_kill_switch(self, equity: float) -> str:
        """Clear a tripped kill switch at ``equity``; what was done. ControlRefused: none to reset."""
        raise ControlRefused(f"the strategy {type(self).__name__} has no kill switch to reset")

    def flatten(self, symbol: str | None = None) -> str:
        """Sell ``symbol``'s long position (None: every one) with this bar's orders (exit reason
        ``manual``), cancelling its pending entry; what was done. ControlRefused: nothing to flatten.
        It does not pause: the strategy may enter again at a later bar."""
        by_name = {d._name: d for d in self.datas}
        names = [symbol] if symbol is not None else sorted(
            set(self.positions_plan) | {name for name, d in by_name.items() if self.getposition(d).size > 0})
        done = []
        for name in names:
            d, plan = by_name[name], self.positions_plan.get(name)
            held = self.getposition(d).size
            if plan is not None and plan.entry_datetime is None and plan.entry_order.alive():
                self.cancel(plan.entry_order)
                done.append(f"pending entry of {name} canceled")
            if held <= 0:
                continue
            if plan is not None and plan.exiting:
                done.append(f"{name} already exiting")
            elif plan is not None:
                self.exit_position(d, "manual")
                done.append(f"sell {held:g} {name}")
            else:  # a position without a plan (adopted): sold all the same
                self._tag(self.sell(data=d, size=held, exectype=self._entry_exectype), name, "manual", exit=True)
                done.append(f"sell {held:g} {name}")
        if not done:
            raise ControlRefused(f"no position in {symbol}" if symbol is not None else "no position to flatten")
        return (f"{'; '.join(done)} (exit manual, with this bar's orders); flattening does not pause: the strategy "
                "may enter again (pause first to stay out)")

    def bar_predictions(self) -> tuple[str, list[tuple[str, dict]]] | None:
        """This bar's predictions for the live journal: (model id, [(symbol, values)]); None: none."""
        return None

    # ---- the state a live restart carries on from ---------------------------------------------
    def export_state(self) -> dict | None:
        """The subclass's own state beside the plans (a kill switch, a daily loss limit); None: none."""
        return None

    def import_state(self, state: dict) -> None:
        """Put back what :meth:`export_state` returned: nothing here."""

    def save_state(self, in_flight: Iterable[str]) -> dict:
        """What a restarted process needs to carry on: each open-position plan with its orders' client
        ids, the stop/target levels, the client ids of the other orders in flight (an exit, a partial
        sale: ``in_flight`` is every order the broker has in flight) and :meth:`export_state`."""
        state: dict = {"plans": [plan_state(plan) for plan in self.positions_plan.values()],
                       "stop_levels": dict(self.stop_levels), "target_levels": dict(self.target_levels)}
        # exits and partial sales: restored, they tell the strategy of their fills like any order
        planned = {cid for plan in state["plans"] for cid in (plan["entry_order"], *plan["children"])}
        state["orders"] = [cid for cid in in_flight if cid not in planned]
        own = self.export_state()
        if own is not None:
            state["strategy"] = own
        return state

    def restore_state(self, state: dict, claim: Callable[[str], object | None]) -> None:
        """Put a :meth:`save_state` back into this freshly built strategy; ``claim(client id)`` hands
        back an order by its client id (the live broker's, with what happened to it since as ordinary
        notifications), or None when the broker has no such order."""
        for fields in state.get("plans", []):
            entry = claim(fields["entry_order"])
            if entry is None:
                log.warning("plan for %s not restored: the broker has no order %s", fields["symbol"],
                            fields["entry_order"])
                continue
            children = [order for order in map(claim, fields["children"]) if order is not None]
            self.positions_plan[fields["symbol"]] = plan_from_state(fields, entry, children)
        others = [order for order in map(claim, state.get("orders", [])) if order is not None]
        for symbol, plan in self.positions_plan.items():
            if plan.exiting and not any(o.data._name == symbol and o.issell() for o in others):
                # its exit never reached the broker (it waited for a cancel when the process died): decided again
                log.warning("the exit of %s was not sent before the restart: the strategy decides it again", symbol)
                plan.exiting = False
        if "stop_levels" in state:
            self.stop_levels.update(state["stop_levels"])
            self.target_levels.update(state["target_levels"])
        if "strategy" in state:
            self.import_state(state["strategy"])
        log.info("strategy state restored: %d open position plan(s)", len(state.get("plans", [])))
