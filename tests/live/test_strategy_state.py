"""The state a restarted process carries on from: every order the strategy has in flight, exits
included, and a plan whose exit never reached the broker decided again."""
from types import SimpleNamespace

from strategies.base import OpenPosition, PortfolioStrategy


class Order:
    def __init__(self, cid, symbol, sell=False):
        self.info = {"client_order_id": cid}
        self.data = SimpleNamespace(_name=symbol)
        self._sell = sell

    def issell(self):
        return self._sell


class Broker:
    """What saving and restoring a strategy's state ask of the live broker."""

    def __init__(self, orders, working):
        self.orders, self.working = {o.info["client_order_id"]: o for o in orders}, working

    def in_flight(self):
        return list(self.working)

    def claim(self, cid, owner):
        return self.orders.get(cid)


class Strategy(SimpleNamespace):
    """A strategy's state with the base's methods that save and restore it, without a Cerebro."""

    save_state, restore_state = PortfolioStrategy.save_state, PortfolioStrategy.restore_state
    export_state, import_state = PortfolioStrategy.export_state, PortfolioStrategy.import_state


def strategy_with(plans, broker):
    return Strategy(positions_plan={p.symbol: p for p in plans}, stop_levels={}, target_levels={}, broker=broker)


def claim(broker, strategy):
    return lambda cid: broker.claim(cid, strategy)


def plan(symbol, entry, *, exiting=False, children=()):
    return OpenPosition(symbol=symbol, size=10, signal_price=100.0, entry_order=entry, children=list(children),
                        exiting=exiting)


def test_the_state_names_the_orders_in_flight_outside_the_plans():
    entry, stop = Order("e-JPM", "JPM"), Order("s-JPM", "JPM", sell=True)
    exit_ = Order("x-JPM", "JPM", sell=True)
    broker = Broker([entry, stop, exit_], working=["e-JPM", "s-JPM", "x-JPM"])
    state = strategy_with([plan("JPM", entry, exiting=True, children=[stop])], broker).save_state(broker.in_flight())
    assert state["orders"] == ["x-JPM"]

    fresh = strategy_with([], broker)
    fresh.restore_state(state, claim(broker, fresh))
    assert fresh.positions_plan["JPM"].exiting  # its exit is back: its fill reaches the strategy


def test_a_plan_whose_exit_never_reached_the_broker_is_decided_again():
    entry = Order("e-XOM", "XOM")
    broker = Broker([entry], working=["e-XOM"])
    state = strategy_with([plan("XOM", entry, exiting=True)], broker).save_state(broker.in_flight())
    assert state["orders"] == []
    fresh = strategy_with([], broker)
    fresh.restore_state(state, claim(broker, fresh))
    assert not fresh.positions_plan["XOM"].exiting
