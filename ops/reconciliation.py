"""Live against replay: what a live session did, compared with a replay of its bars.

Pure comparison (no Backtrader, no broker): ``engine.daily_reconciliation`` replays the session and
hands both sides here as tables, the records every run writes (``orders.csv``'s columns), the
positions at the end and the equity at the first traded bar and at the end. :func:`reconcile` names
every difference and raises an alarm for those beyond the ``[reconciliation]`` thresholds.

Orders are paired by client order id: the strategy derives it from the symbol, the bar and the
purpose (``strategies.base``), so the same decision has the same id live and in the replay. Tables
without ids on every order are paired by (bar time, symbol, side, type) in order of appearance.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

ORDER_KEY = ["datetime", "symbol", "side", "type"]
# the records' final statuses in the words of the report
_STATUS_WORDS = {"completed": "filled", "margin": "rejected for margin"}
# fill prices closer than this (relative) are equal: the same arithmetic on both sides, float noise apart
_PRICE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Thresholds:
    """Beyond these the reconciliation alarms (``[reconciliation]`` in the config)."""

    max_order_differences: int = 0
    max_position_differences: int = 0
    max_slippage_bps: float = 25.0
    max_pnl_difference_fraction: float = 0.001

    @classmethod
    def of(cls, section) -> "Thresholds":
        """From the config's ``[reconciliation]`` section (any object with these attributes)."""
        return cls(**{name: getattr(section, name) for name in cls.__dataclass_fields__})


@dataclass
class SessionTables:
    """One side of the comparison: a session's orders (the records' order columns: datetime, symbol,
    side, size, type, status, price, client_order_id, filled_datetime ...), its positions at the end
    ({symbol: shares}) and its equity at the first traded bar and at the end."""

    orders: pd.DataFrame
    positions: dict[str, float]
    start_equity: float
    end_equity: float

    @property
    def pnl(self) -> float:
        return self.end_equity - self.start_equity


@dataclass
class Reconciliation:
    """The differences between a live session and its replay, and the alarms they raise."""

    session: str
    date: str
    compared: bool = True
    note: str = ""
    orders_live: int = 0
    orders_replay: int = 0
    order_differences: list[dict] = field(default_factory=list)
    fill_differences: list[dict] = field(default_factory=list)
    position_differences: list[dict] = field(default_factory=list)
    pnl: dict = field(default_factory=dict)
    alarms: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return len(self.order_differences) + len(self.fill_differences) + len(self.position_differences)

    @property
    def clean(self) -> bool:
        """Compared, and no order, fill or position differs and no alarm."""
        return self.compared and not self.differences and not self.alarms

    def to_dict(self) -> dict:
        return {**asdict(self), "differences": self.differences, "clean": self.clean}

    def summary(self) -> str:
        """One line: what an alert says."""
        if not self.compared:
            return f"reconciliation of {self.session} on {self.date}: {self.note}"
        head = f"reconciliation of {self.session} on {self.date}: "
        if self.clean:
            return head + "live equals the replay"
        return head + "; ".join(self.alarms or [f"{self.differences} difference(s) within the thresholds"])

    def to_markdown(self) -> str:
        lines = [f"# Reconciliation {self.date}: {self.session}", ""]
        if not self.compared:
            return "\n".join(lines + [f"**{self.note}**", ""])
        lines += [f"Live against the replay of the session's bars: {self.orders_live} orders live, "
                  f"{self.orders_replay} in the replay; {self.differences} difference(s).", ""]
        if self.note:
            lines += [self.note, ""]
        if self.alarms:
            lines += ["## Alarms", ""] + [f"- {alarm}" for alarm in self.alarms] + [""]
        for title, rows in (("Orders", self.order_differences), ("Fills", self.fill_differences),
                            ("Positions at the end", self.position_differences)):
            lines += [f"## {title}", ""]
            lines += [f"- {row['message']}" for row in rows] if rows else ["No differences."]
            lines.append("")
        if self.pnl:
            p = self.pnl
            lines += ["## P&L", "", f"Live {p['live']:,.2f}, replay {p['replay']:,.2f}: difference "
                      f"{p['difference']:,.2f} ({p['fraction']:.4%} of the start equity).", ""]
        return "\n".join(lines)


def not_compared(session: str, date: str, reason: str) -> Reconciliation:
    """A report that says plainly why the session was not compared."""
    return Reconciliation(session=session, date=date, compared=False, note=f"not compared: {reason}")


def reconcile(live: SessionTables, replay: SessionTables, thresholds: Thresholds, *, session: str,
              date: str) -> Reconciliation:
    """Every difference between ``live`` and ``replay``: orders on one side only or differing in size
    or status, fills at different prices (slippage in basis points, positive against the trader) or
    times, end positions, and P&L; alarms for those beyond ``thresholds``."""
    result = Reconciliation(session=session, date=date, orders_live=len(live.orders), orders_replay=len(replay.orders))
    pairs = pair_orders(_normalised(live.orders), _normalised(replay.orders))
    for live_order, replay_order in pairs:
        difference = order_difference(live_order, replay_order)
        if difference is not None:
            result.order_differences.append(difference)
        elif live_order is not None and live_order["status"] == "completed":
            fill = fill_difference(live_order, replay_order)
            if fill is not None:
                result.fill_differences.append(fill)
    result.position_differences = position_differences(live.positions, replay.positions)
    difference = live.pnl - replay.pnl
    fraction = abs(difference) / live.start_equity if live.start_equity else (0.0 if difference == 0 else math.inf)
    result.pnl = {"live": live.pnl, "replay": replay.pnl, "difference": difference, "fraction": fraction,
                  "start_equity_live": live.start_equity, "start_equity_replay": replay.start_equity}
    result.alarms = alarms(result, thresholds)
    return result


def alarms(result: Reconciliation, thresholds: Thresholds) -> list[str]:
    found = []
    if len(result.order_differences) > thresholds.max_order_differences:
        first = result.order_differences[0]["message"]
        found.append(f"{len(result.order_differences)} order difference(s) (at most "
                     f"{thresholds.max_order_differences} tolerated), first: {first}")
    if len(result.position_differences) > thresholds.max_position_differences:
        found.append(f"{len(result.position_differences)} position difference(s) at the end (at most "
                     f"{thresholds.max_position_differences} tolerated): "
                     + ", ".join(row["message"] for row in result.position_differences))
    worst = max(result.fill_differences, key=lambda row: abs(row["slippage_bps"]), default=None)
    if worst is not None and abs(worst["slippage_bps"]) > thresholds.max_slippage_bps:
        found.append(f"slippage {worst['slippage_bps']:+.1f} bps beyond {thresholds.max_slippage_bps:g}: "
                     f"{worst['message']}")
    if result.pnl and result.pnl["fraction"] > thresholds.max_pnl_difference_fraction:
        found.append(f"P&L differs by {result.pnl['difference']:,.2f} ({result.pnl['fraction']:.4%} of the start "
                     f"equity, beyond {thresholds.max_pnl_difference_fraction:.4%})")
    return found


def _normalised(orders: pd.DataFrame) -> pd.DataFrame:
    frame = orders.copy()
    for column in ("datetime", "filled_datetime"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    if "client_order_id" not in frame:
        frame["client_order_id"] = None
    return frame.reset_index(drop=True)


def pair_orders(live: pd.DataFrame, replay: pd.DataFrame) -> list[tuple[dict | None, dict | None]]:
    """(live order, replay order) pairs, None where one side has no such order, in time order."""
    by_id = all(_has_id(frame) for frame in (live, replay)) and len(live) + len(replay) > 0

    def keyed(frame: pd.DataFrame) -> dict:
        rows, seen = {}, {}
        for row in frame.to_dict("records"):
            if by_id:
                key = row["client_order_id"]
            else:
                base = tuple(row[c] for c in ORDER_KEY)
                seen[base] = seen.get(base, 0) + 1
                key = (*base, seen[base])
            rows[key] = row
        return rows

    live_rows, replay_rows = keyed(live), keyed(replay)
    keys = list(live_rows) + [k for k in replay_rows if k not in live_rows]
    pairs = [(live_rows.get(k), replay_rows.get(k)) for k in keys]
    return sorted(pairs, key=lambda pair: (pd.Timestamp((pair[0] or pair[1])["datetime"]),
                                           str((pair[0] or pair[1])["symbol"])))


def _has_id(frame: pd.DataFrame) -> bool:
    ids = frame["client_order_id"]
    return bool(ids.notna().all()) and bool((ids.astype(str) != "").all())


def _status(order: dict) -> str:
    return _STATUS_WORDS.get(order["status"], order["status"])


def _describe(order: dict) -> str:
    return f"{order['symbol']} {order['side']} {order['size']:g} ({order['type']}) at the bar of {order['datetime']}"


def order_difference(live: dict | None, replay: dict | None) -> dict | None:
    """The difference between a pair of orders (None: the same order, same size and status)."""
    if live is not None and replay is not None and math.isclose(abs(live["size"]), abs(replay["size"]),
                                                                rel_tol=1e-9) and live["status"] == replay["status"]:
        return None
    order = live if live is not None else replay
    row = {"datetime": str(order["datetime"]), "symbol": order["symbol"], "side": order["side"],
           "type": order["type"], "client_order_id": order.get("client_order_id"),
           "size_live": None if live is None else abs(float(live["size"])),
           "size_replay": None if replay is None else abs(float(replay["size"])),
           "status_live": None if live is None else _status(live),
           "status_replay": None if replay is None else _status(replay)}
    if replay is None:
        row.update(kind="only_live", message=f"{_describe(live)}: {_status(live)} live, not placed in the replay")
    elif live is None:
        row.update(kind="only_replay", message=f"{_describe(replay)}: {_status(replay)} in the replay, not placed live")
    elif live["status"] != replay["status"]:
        row.update(kind="status", message=f"{_describe(live)}: {_status(live)} live, {_status(replay)} in the replay")
    else:
        row.update(kind="size", message=f"{_describe(live)}: size {abs(live['size']):g} live, "
                                        f"{abs(replay['size']):g} in the replay")
    return row


def slippage_bps(side: str, live_price: float, replay_price: float) -> float:
    """The live fill against the replay's, in basis points of the replay's price, positive when live
    paid more for a buy or got less for a sell."""
    sign = 1.0 if side == "buy" else -1.0
    return sign * (live_price - replay_price) / replay_price * 1e4


def fill_difference(live: dict, replay: dict) -> dict | None:
    """Both filled: a difference in price or fill time (None: the same fill)."""
    same_price = math.isclose(live["price"], replay["price"], rel_tol=_PRICE_TOLERANCE)
    same_time = pd.Timestamp(live["filled_datetime"]) == pd.Timestamp(replay["filled_datetime"])
    if same_price and same_time:
        return None
    bps = slippage_bps(live["side"], float(live["price"]), float(replay["price"]))
    what = [] if same_price else [f"price {live['price']:.4f} live, {replay['price']:.4f} in the replay "
                                  f"({bps:+.1f} bps)"]
    if not same_time:
        what.append(f"filled at {live['filled_datetime']} live, {replay['filled_datetime']} in the replay")
    return {"datetime": str(live["datetime"]), "symbol": live["symbol"], "side": live["side"],
            "size": abs(float(live["size"])), "client_order_id": live.get("client_order_id"),
            "live_price": float(live["price"]), "replay_price": float(replay["price"]), "slippage_bps": bps,
            "filled_live": str(live["filled_datetime"]), "filled_replay": str(replay["filled_datetime"]),
            "message": f"{_describe(live)}: " + "; ".join(what)}


def position_differences(live: dict[str, float], replay: dict[str, float]) -> list[dict]:
    rows = []
    for symbol in sorted(set(live) | set(replay)):
        held_live, held_replay = float(live.get(symbol, 0.0)), float(replay.get(symbol, 0.0))
        if not math.isclose(held_live, held_replay, abs_tol=1e-9):
            rows.append({"symbol": symbol, "live": held_live, "replay": held_replay,
                         "message": f"{symbol}: {held_live:g} shares live, {held_replay:g} in the replay"})
    return rows
