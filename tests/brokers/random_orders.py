"""A seeded strategy that places every order kind the live path supports, for fill-for-fill comparisons
of the simulated venue (through the live broker) with Backtrader's BackBroker."""
from __future__ import annotations

import random

from engine.compat import bt
from strategies.base import PortfolioStrategy


class RandomOrders(PortfolioStrategy):
    """Each bar, per symbol, by a seeded draw: enter (market or close, limit or stop entry, with a stop
    and sometimes a take-profit, sometimes valid for one day only), exit, add a trailing or stop-limit
    exit, or cancel a pending order. ``replace_rate``: the chance a held position's stop and target are
    replaced by a new pair (``replace_exits``: a stop and a take-profit with ``oco=``); ``loose_orders``:
    whether orders outside the position plans are placed too (stop entries with their own stop, trailing
    and stop-limit exits), whose shares an OCO could not exit (at Alpaca and in the simulated venue an
    OCO exits only shares no other open order holds; BackBroker has no such rule)."""

    params = (("seed", 0), ("rate", 0.2), ("replace_rate", 0.0), ("loose_orders", True))

    def __init__(self):
        super().__init__()
        self.rng = random.Random(self.p.seed)
        self.loose: list = []  # standalone exits placed here

    def decide(self, now, fresh):
        rng = self.rng
        for d in fresh:
            draw = rng.random()
            price = d.close[0]
            held = self.getposition(d).size
            plan = self.positions_plan.get(d._name)
            if plan is None and held == 0 and draw < self.p.rate:
                self._enter(d, price, rng)
            elif self.p.replace_rate and held > 0 and plan is not None and plan.entry_datetime is not None \
                    and not plan.exiting and rng.random() < self.p.replace_rate:
                self._replace(d, plan, held, price, rng)
            elif plan is not None and plan.entry_datetime is not None and not plan.exiting and draw < 0.1:
                self.exit_position(d, "signal")
            elif self.p.loose_orders and held > 0 and plan is not None and not plan.exiting and draw < 0.14:
                kind = rng.choice(["trail", "stoplimit"])
                if kind == "trail":
                    order = self.sell(data=d, size=held, exectype=bt.Order.StopTrail, trailpercent=0.03)
                else:
                    order = self.sell(data=d, size=held, exectype=bt.Order.StopLimit, price=price * 0.97,
                                      plimit=price * 0.96)
                self.loose.append(self._tag(order, d._name, kind))
            elif draw < 0.17:
                alive = [o for o in self.loose if o.alive() and o.data is d]
                if alive:
                    self.cancel(alive[0])

    def _replace(self, d, plan, held, price, rng):
        """New exits: a stop and a take-profit (one cancelling the other), or a lone trailing stop; a stop
        that trails already is re-placed from where it has trailed to (as the ML plan does)."""
        trailing = rng.random() < 0.3
        trail = next((c for c in plan.children if c.alive() and c.exectype == bt.Order.StopTrail), None)
        stop = trail.created.price if trail is not None else price * (1 - rng.uniform(0.005, 0.04))
        self.replace_exits(d, plan, size=held, stop_price=stop, trailing=trailing,
                           target_price=None if trailing else price * (1 + rng.uniform(0.005, 0.04)))

    def _enter(self, d, price, rng):
        size = rng.randint(1, 40)
        stop = price * (1 - rng.uniform(0.01, 0.05))
        target = price * (1 + rng.uniform(0.01, 0.06)) if rng.random() < 0.5 else None
        style = rng.random()
        if style < 0.6 or (style >= 0.8 and not self.p.loose_orders):
            self.enter_long(d, size, stop_price=stop, target_price=target, reason="market")
        elif style < 0.8:
            limit = price * (1 - rng.uniform(0.0, 0.02))
            self.enter_long(d, size, stop_price=min(stop, limit * 0.99), target_price=target, limit_price=limit,
                            reason="limit")
        else:
            trigger = price * (1 + rng.uniform(0.0, 0.02))
            valid = bt.Order.DAY if rng.random() < 0.5 else None  # good for the day, or until canceled
            main = self.buy(data=d, size=size, exectype=bt.Order.Stop, price=trigger, valid=valid, transmit=False)
            self._tag(main, d._name, "stop_entry")
            child = self.sell(data=d, size=size, exectype=bt.Order.Stop, price=trigger * 0.97, parent=main,
                              transmit=True)
            self._tag(child, d._name, "stop")
            self.loose.append(main)
