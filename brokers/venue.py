"""What the live broker needs from a trading venue, in venue-neutral terms.

Two venues implement :class:`Venue`: ``brokers.alpaca.execution.AlpacaVenue`` (Alpaca over alpaca-py) and
``brokers.sim_venue.SimulatedVenue`` (the local matching engine that fills exactly like Backtrader's
BackBroker, for replay). ``brokers.live.broker.LiveBroker`` talks to either through this interface only,
and follows a venue's own rules as the venue declares them (:class:`VenueCapabilities`).

Names follow Alpaca's REST API (order types, statuses, time in force, trade update events), since that
is the one real venue; datetimes are naive, in the exchange's time zone, like every bar in the project.
"""
from __future__ import annotations

import datetime as dt
import queue
from dataclasses import dataclass
from typing import Protocol

from common.errors import UserError

ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIME_IN_FORCE = ("day", "gtc", "cls", "opg")
# statuses after which an order never changes again
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})


class VenueError(Exception):
    """A venue refused or could not complete a request; ``reason`` is the venue's own words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DuplicateClientOrderId(VenueError):
    """The venue already holds an order with this client order id: it was sent before."""


class OrderRejected(VenueError):
    """The venue refused the order (buying power, price rules, unknown symbol...)."""


class NotCancelable(VenueError):
    """The order can no longer be canceled or replaced (filled, canceled, or not yet accepted)."""


class VenueUnavailable(VenueError, UserError):
    """The venue did not answer after the configured retries (a user sees one line, exit status 2)."""


@dataclass(frozen=True)
class VenueCapabilities:
    """A venue's own rules, declared by the venue, that the live broker follows without knowing the venue.

    ``oco_stop_types``: the stop order types an OCO's stop-loss may be (``stop``, ``stop_limit``: what a
    :class:`Leg` expresses); a pair whose stop is another type (a trailing stop) sends the stop alone and
    drops the take-profit. ``exits_hold_shares``: an open order holds its shares, so an exit waits until
    the cancel of the open orders of its side is answered. ``margin_words``: a rejection whose reason
    holds all of these (any case) is for want of buying power (Backtrader's Margin, not Rejected).
    ``name`` names the venue in the broker's messages.
    """

    name: str
    oco_stop_types: frozenset[str]
    exits_hold_shares: bool
    margin_words: tuple[str, ...]

    def __post_init__(self):
        if not self.oco_stop_types <= {"stop", "stop_limit"}:
            raise ValueError(f"an OCO's stop-loss leg is a stop or stop_limit, not {sorted(self.oco_stop_types)}")

    def is_margin(self, reason: str | None) -> bool:
        """Whether a rejection's reason means insufficient buying power."""
        return bool(reason) and all(word in reason.lower() for word in self.margin_words)

    def oco_refusal(self, stop_type: str) -> str | None:
        """Why a take-profit cannot be in an OCO with a stop of ``stop_type`` (None: it can)."""
        if stop_type in self.oco_stop_types:
            return None
        words = {"trailing_stop": "trailing stop", "stop_limit": "stop-limit stop"}.get(stop_type, stop_type)
        alone = "trails" if stop_type == "trailing_stop" else "goes alone"
        return f"{self.name}'s OCO orders take no {words}: the take-profit is dropped while the stop {alone}"


@dataclass(frozen=True)
class Leg:
    """A bracket's or an oco's exit: ``take_profit`` (limit) or ``stop_loss`` (stop, or stop-limit with
    ``limit_price``)."""

    kind: str  # "stop_loss" | "take_profit"
    client_order_id: str
    limit_price: float | None = None
    stop_price: float | None = None

    def __post_init__(self):
        if self.kind not in ("stop_loss", "take_profit"):
            raise ValueError(f"leg kind must be stop_loss or take_profit, not {self.kind!r}")

    @property
    def type(self) -> str:
        if self.kind == "take_profit":
            return "limit"
        return "stop_limit" if self.limit_price is not None else "stop"


@dataclass(frozen=True)
class OrderRequest:
    """One order as sent to a venue; a bracket is the entry with its exit ``legs`` (in the order the
    strategy placed them), which become active once the entry fills and cancel each other.

    ``order_class="oco"`` is Alpaca's one-cancels-other exit of a position held: no entry, the two
    ``legs`` (a stop-loss and a take-profit, in the order the strategy placed them) are of the request's
    own side and work at once; when one fills the venue cancels the other. As in Alpaca's request, the
    order itself is a ``limit`` (its price is the take-profit leg's) and ``client_order_id`` is the
    take-profit leg's: Alpaca makes the take-profit the parent order and the stop-loss its leg.

    ``bar_datetime`` (the symbol's bar when the order was decided) and ``reference_price`` (Backtrader's
    creation price: the close for a market order, else the order's own price) are what Backtrader
    records as the order's creation; the simulated venue needs them for BackBroker's rules (a market
    order fills on a later bar; the cash check at submission).
    """

    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: float
    type: str = "market"
    time_in_force: str = "day"
    limit_price: float | None = None
    stop_price: float | None = None
    trail_percent: float | None = None  # percent, as Alpaca takes it (2.0 = 2%)
    trail_price: float | None = None
    legs: tuple[Leg, ...] = ()
    expires_at: dt.datetime | None = None  # the simulated venue's Backtrader ``valid``
    bar_datetime: dt.datetime | None = None
    reference_price: float | None = None
    order_class: str = ""  # "oco"; else taken from the legs: simple, oto (one leg) or bracket (two)

    def __post_init__(self):
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, not {self.side!r}")
        if self.type not in ORDER_TYPES:
            raise ValueError(f"order type must be one of {ORDER_TYPES}, not {self.type!r}")
        if self.time_in_force not in TIME_IN_FORCE:
            raise ValueError(f"time in force must be one of {TIME_IN_FORCE}, not {self.time_in_force!r}")
        if not self.qty > 0:
            raise ValueError(f"qty must be positive, not {self.qty!r}")
        kinds = [leg.kind for leg in self.legs]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"at most one leg of each kind, got {kinds}")
        if self.order_class == "oco":
            self._check_oco()
            return
        by_legs = {0: "simple", 1: "oto", 2: "bracket"}[len(self.legs)]
        if self.order_class not in ("", by_legs):
            raise ValueError(f"order class must be oco or the legs' ({by_legs}), not {self.order_class!r}")
        object.__setattr__(self, "order_class", by_legs)

    def _check_oco(self) -> None:
        stop, take_profit = self.leg("stop_loss"), self.leg("take_profit")
        if len(self.legs) != 2:
            raise ValueError("an oco order has two legs: a stop-loss and a take-profit")
        if self.type != "limit" or self.stop_price is not None or self.trail_percent or self.trail_price:
            raise ValueError("an oco order is a limit order (its price is the take-profit's)")
        if self.limit_price != take_profit.limit_price or self.client_order_id != take_profit.client_order_id:
            raise ValueError("an oco order's limit price and client order id are its take-profit's")
        if stop.stop_price is None or take_profit.limit_price is None:
            raise ValueError("an oco order needs the stop's stop price and the take-profit's limit price")
        above = take_profit.limit_price > stop.stop_price
        if above != (self.side == "sell"):
            raise ValueError(f"an oco {self.side}'s take-profit ({take_profit.limit_price:g}) must be "
                             f"{'above' if self.side == 'sell' else 'below'} its stop ({stop.stop_price:g})")

    def leg(self, kind: str) -> Leg | None:
        return next((leg for leg in self.legs if leg.kind == kind), None)

    @property
    def exit_side(self) -> str:
        """The legs' side: an oco's own (it exits a position), else the entry's opposite."""
        if self.order_class == "oco":
            return self.side
        return "sell" if self.side == "buy" else "buy"

    @property
    def client_order_ids(self) -> list[str]:
        """The order's and its legs' ids, each once (an oco's own id is its take-profit's)."""
        return list(dict.fromkeys([self.client_order_id, *(leg.client_order_id for leg in self.legs)]))


@dataclass(frozen=True)
class VenueOrder:
    """The venue's view of an order (Alpaca's order object, reduced to what the broker uses)."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    type: str
    status: str
    time_in_force: str = "day"
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    order_class: str = "simple"
    legs: tuple["VenueOrder", ...] = ()
    submitted_at: dt.datetime | None = None
    filled_at: dt.datetime | None = None  # the last fill's time

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class TradeUpdate:
    """One event of the venue's trade update stream (Alpaca's ``trade_updates``).

    event: new | accepted | partial_fill | fill | canceled | expired | rejected | replaced | ...;
    for fills ``qty`` and ``price`` are this execution's, ``position_qty`` the position after it.
    """

    event: str
    order: VenueOrder
    timestamp: dt.datetime
    qty: float | None = None
    price: float | None = None
    position_qty: float | None = None
    execution_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float
    buying_power: float


@dataclass(frozen=True)
class VenuePosition:
    symbol: str
    qty: float
    avg_entry_price: float


@dataclass(frozen=True)
class MarketClock:
    timestamp: dt.datetime
    is_open: bool
    next_open: dt.datetime
    next_close: dt.datetime


class Venue(Protocol):
    """Everything the live broker asks of a venue. Calls block; updates arrive on ``updates``."""

    updates: "queue.Queue[TradeUpdate]"
    commission_bps: float
    capabilities: VenueCapabilities

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, request: OrderRequest) -> VenueOrder:
        """Send an order; raises DuplicateClientOrderId if the id was sent before, OrderRejected if refused."""

    def cancel(self, order_id: str) -> None:
        """Ask to cancel; the outcome arrives as a trade update. Raises NotCancelable."""

    def replace(self, order_id: str, *, qty: float | None = None, limit_price: float | None = None,
                stop_price: float | None = None, trail: float | None = None) -> VenueOrder: ...

    def order_by_client_id(self, client_order_id: str) -> VenueOrder | None: ...

    def get_order(self, order_id: str) -> VenueOrder | None: ...

    def open_orders(self) -> list[VenueOrder]: ...

    def closed_orders(self, after: dt.datetime) -> list[VenueOrder]:
        """Alpaca's ``GET /v2/orders?status=closed&nested=true&direction=asc``: orders whose own status
        is final (a filled bracket entry comes with its legs, open or not), submitted strictly after
        ``after``, oldest submission first, one page (Alpaca's largest: 500)."""

    def positions(self) -> dict[str, VenuePosition]: ...

    def account(self) -> Account: ...

    def clock(self) -> MarketClock: ...


def select_orders(orders: list[VenueOrder], *, status: str = "open", after: dt.datetime | None = None,
                  until: dt.datetime | None = None, direction: str = "desc",
                  limit: int | None = None) -> list[VenueOrder]:
    """Alpaca's ``GET /v2/orders`` selection (for the simulated venue and the test server): ``status``
    open (not final), closed (final) or all, by each order's own status; submitted strictly after
    ``after`` and strictly before ``until`` (an order without a submission time is left out when
    either is given); sorted by submission time, ``direction`` asc or desc (ties keep the given
    order); the first ``limit``."""
    if status not in ("open", "closed", "all"):
        raise ValueError(f"status must be open, closed or all, not {status!r}")
    if direction not in ("asc", "desc"):
        raise ValueError(f"direction must be asc or desc, not {direction!r}")
    chosen = []
    for order in orders:
        final = order.status in FINAL_STATUSES
        if (status == "open" and final) or (status == "closed" and not final):
            continue
        when = order.submitted_at
        if (after is not None or until is not None) and when is None:
            continue
        if (after is not None and when <= after) or (until is not None and when >= until):
            continue
        chosen.append(order)
    chosen.sort(key=lambda o: o.submitted_at or dt.datetime.min, reverse=direction == "desc")
    return chosen if limit is None else chosen[:limit]


def drain(updates: "queue.Queue[TradeUpdate]") -> list[TradeUpdate]:
    """Everything queued now, without waiting (the broker empties the queue once per loop)."""
    items = []
    while True:
        try:
            items.append(updates.get_nowait())
        except queue.Empty:
            return items
