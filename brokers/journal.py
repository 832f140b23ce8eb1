"""The live journal: every order before it is sent, then its fills; positions, equity, predictions and
the strategy's state after each bar. What a restart reconciles against the broker.

SQLAlchemy 2 Core over SQLite by default (one file, WAL mode, one commit per event, so a killed process
loses nothing it wrote); any SQLAlchemy URL selects another database (``postgresql+psycopg://...``).
Datetimes are naive exchange time like the bars; ``*_at`` wall-clock stamps are UTC.

``events``: what an operator must find later, such as a halt of new entries with its reason.

Order statuses: ``intent`` (written, maybe not sent), then the venue's (``new``, ``held``,
``partially_filled``, ``filled``, ``canceled``, ``expired``, ``rejected``, ``replaced`` ...), or
``abandoned`` (an intent a restart found unsent and the strategy did not decide again).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (JSON, Column, DateTime, Float, Integer, MetaData, String, Table, bindparam, create_engine,
                        event, insert, select, update)
from sqlalchemy.exc import SQLAlchemyError

from common.errors import UserError
from common.jsonable import to_jsonable

log = logging.getLogger("live.journal")

OPEN_STATUSES = ("intent", "pending_new", "new", "accepted", "held", "partially_filled", "pending_cancel",
                 "pending_replace", "done_for_day", "accepted_for_bidding", "calculated", "stopped", "suspended")

metadata = MetaData()

ORDERS = Table(
    "orders", metadata,
    Column("client_order_id", String(128), primary_key=True),
    Column("venue_order_id", String(64), index=True),
    Column("parent_client_order_id", String(128), index=True),
    Column("leg", String(16)),  # stop_loss | take_profit for a bracket's exits
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", Float, nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("time_in_force", String(8), nullable=False),
    Column("limit_price", Float),
    Column("stop_price", Float),
    Column("trail_percent", Float),
    Column("trail_price", Float),
    Column("bar_datetime", DateTime),
    Column("reason", String(64)),
    Column("info", JSON),
    Column("status", String(24), nullable=False, index=True),
    Column("filled_qty", Float, nullable=False, default=0.0),
    Column("filled_avg_price", Float),
    Column("status_reason", String(500)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

FILLS = Table(
    "fills", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", String(80), unique=True, nullable=False),
    Column("client_order_id", String(128), nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("commission", Float, nullable=False),
    Column("filled_datetime", DateTime, nullable=False),
    Column("position_qty", Float),
    Column("recorded_at", DateTime, nullable=False),
)

POSITIONS = Table(
    "positions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bar_datetime", DateTime, nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("qty", Float, nullable=False),
    Column("avg_price", Float, nullable=False),
    Column("market_price", Float),
)

EQUITY = Table(
    "equity", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bar_datetime", DateTime, nullable=False, index=True),
    Column("equity", Float, nullable=False),
    Column("cash", Float, nullable=False),
)

PREDICTIONS = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bar_datetime", DateTime, nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("model_id", String(128), nullable=False),
    Column("values", JSON, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
)

STRATEGY_STATE = Table(
    "strategy_state", metadata,
    Column("name", String(128), primary_key=True),
    Column("bar_datetime", DateTime, nullable=False),
    Column("state", JSON, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

EVENTS = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),  # UTC
    Column("kind", String(32), nullable=False, index=True),  # halt | resume | book_corrected | positions_adopted
    Column("message", String(2000), nullable=False),
)

META = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON),
)


# The statements of every order, fill and bar, built once with bound parameters: SQLAlchemy then
# compiles each once, where building and hashing a new statement per call costs 0.1-0.2 ms, a few
# hundred times a bar live. (An update's SET clause is the columns its parameters name.)
_INSERT_ORDER = insert(ORDERS)
_UPDATE_ORDER = update(ORDERS).where(ORDERS.c.client_order_id == bindparam("cid"))
_ORDER = select(ORDERS).where(ORDERS.c.client_order_id == bindparam("cid"))
_INSERT_FILL = insert(FILLS)
_FILL_SEEN = select(FILLS.c.id).where(FILLS.c.execution_id == bindparam("eid"))
_INSERT_EQUITY = insert(EQUITY)
_INSERT_POSITIONS = insert(POSITIONS)
_INSERT_PREDICTION = insert(PREDICTIONS)
_STATE = select(STRATEGY_STATE).where(STRATEGY_STATE.c.name == bindparam("key"))
_STATE_SEEN = select(STRATEGY_STATE.c.name).where(STRATEGY_STATE.c.name == bindparam("key"))
_INSERT_STATE = insert(STRATEGY_STATE)
_UPDATE_STATE = update(STRATEGY_STATE).where(STRATEGY_STATE.c.name == bindparam("key"))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class OrderRow:
    client_order_id: str
    venue_order_id: str | None
    parent_client_order_id: str | None
    leg: str | None
    symbol: str
    side: str
    qty: float
    order_type: str
    time_in_force: str
    limit_price: float | None
    stop_price: float | None
    trail_percent: float | None
    trail_price: float | None
    bar_datetime: dt.datetime | None
    reason: str | None
    info: dict
    status: str
    filled_qty: float
    filled_avg_price: float | None
    status_reason: str | None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


def _create_tables(engine) -> None:
    """The journal's tables, where missing. Two processes opening a new journal at once (a live
    process and a reader) can both see a table missing; the second to create it is told it exists,
    and a second look finds it there."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        metadata.create_all(engine)
    except (OperationalError, ProgrammingError) as exc:
        if "already exists" not in str(exc):
            raise
        metadata.create_all(engine)


def sqlite_url(path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


class Journal:
    """Crash-safe record of a live deployment (see module doc). Every write commits before returning.

    ``manual_checkpoints`` (SQLite): SQLite copies its write-ahead log into the database file (a
    checkpoint, 1-25 ms) inside whichever commit crosses 1000 pages, an order's intent included; with
    True it never does, and :meth:`checkpoint` does it when the caller has time (the live loop: after
    each bar, its orders sent). Committed data is in the log either way: nothing is less durable.
    """

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", manual_checkpoints: bool = False):
        self.url = url
        self._conn = None  # the open transaction of a batch() that has written
        self._batching = False
        self.manual_checkpoints = False  # other databases checkpoint on their own
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, future=True)
            if self.engine.dialect.name == "sqlite":
                self.manual_checkpoints = manual_checkpoints

                @event.listens_for(self.engine, "connect")
                def _pragmas(dbapi_connection, _record):
                    cursor = dbapi_connection.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
                    cursor.execute("PRAGMA busy_timeout=5000")
                    if manual_checkpoints:
                        cursor.execute("PRAGMA wal_autocheckpoint=0")
                    cursor.close()
            _create_tables(self.engine)
        except (SQLAlchemyError, OSError, ModuleNotFoundError) as exc:
            raise UserError(f"journal {self._safe_url()}: cannot open ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0]})") from None

    def _safe_url(self) -> str:
        """The URL without a password."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # an unparseable URL is shown as given: it holds no parsed password
            return self.url

    def close(self) -> None:
        self.engine.dispose()

    def checkpoint(self) -> None:
        """With ``manual_checkpoints``: copy the write-ahead log into the database file, as far as
        readers allow (SQLite's PASSIVE checkpoint, which waits for nobody). Otherwise nothing."""
        if self.manual_checkpoints and not self._batching:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    @contextlib.contextmanager
    def batch(self):
        """Writes inside share one transaction, committed at the end (or at a durable write, see
        :meth:`record_intents`): one commit per broker loop instead of one per update. Whatever a crash
        loses here, the broker finds again at the venue on restart. No write, no connection."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
            if self._conn is not None:
                self._conn.commit()
        finally:
            self._batching = False
            if self._conn is not None:
                self._conn.close()  # rolls back what an exception left uncommitted
                self._conn = None

    def _batch_connection(self):
        if self._batching and self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _write(self, *statements, durable: bool = False) -> None:
        conn = self._batch_connection()
        if conn is None:
            with self.engine.begin() as conn:
                for statement in statements:
                    conn.execute(*statement)
            return
        for statement in statements:
            conn.execute(*statement)
        if durable:
            conn.commit()

    @contextlib.contextmanager
    def _reading(self):
        if self._conn is not None:  # inside a batch that wrote: see its own writes
            yield self._conn
        else:
            with self.engine.connect() as conn:
                yield conn

    # ---- orders ------------------------------------------------------------------------------
    def record_intents(self, rows: list[dict]) -> None:
        """Orders about to be sent (an entry and its legs), status ``intent``; committed before this
        returns, inside a batch too (the order must be on disk before it can reach the broker)."""
        now = _utcnow()
        self._write((_INSERT_ORDER, [{"status": "intent", "filled_qty": 0.0, "created_at": now, "updated_at": now,
                                      **row, "info": to_jsonable(row.get("info") or {})} for row in rows]),
                    durable=True)

    def adopt(self, row: dict) -> None:
        """An order found at the venue that the journal did not know (placed elsewhere, or lost)."""
        now = _utcnow()
        self._write((_INSERT_ORDER, {"created_at": now, "updated_at": now, **row,
                                     "info": to_jsonable(row.get("info") or {})}),)

    def update_order(self, client_order_id: str, **values) -> None:
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self._write((_UPDATE_ORDER, {"cid": client_order_id, "updated_at": _utcnow(), **values}),)

    def order(self, client_order_id: str) -> OrderRow | None:
        with self._reading() as conn:
            row = conn.execute(_ORDER, {"cid": client_order_id}).mappings().first()
        return self._row(row) if row else None

    def orders(self, *, open_only: bool = False) -> list[OrderRow]:
        query = select(ORDERS).order_by(ORDERS.c.created_at, ORDERS.c.client_order_id)
        if open_only:
            query = query.where(ORDERS.c.status.in_(OPEN_STATUSES))
        with self._reading() as conn:
            return [self._row(r) for r in conn.execute(query).mappings()]

    def legs_of(self, parent_client_order_id: str) -> list[OrderRow]:
        with self._reading() as conn:
            rows = conn.execute(select(ORDERS).where(ORDERS.c.parent_client_order_id == parent_client_order_id)
                                .order_by(ORDERS.c.client_order_id)).mappings()
            return [self._row(r) for r in rows]

    @staticmethod
    def _row(row) -> OrderRow:
        fields = {name: row[name] for name in OrderRow.__dataclass_fields__}
        fields["info"] = fields["info"] or {}
        return OrderRow(**fields)

    # ---- fills -------------------------------------------------------------------------------
    def record_fill(self, *, execution_id: str, client_order_id: str, symbol: str, side: str, qty: float,
                    price: float, commission: float, filled_datetime: dt.datetime,
                    position_qty: float | None) -> bool:
        """A fill, once: False if this execution id was recorded before (a repeated update)."""
        with self._reading() as conn:
            if conn.execute(_FILL_SEEN, {"eid": execution_id}).first():
                return False
        self._write((_INSERT_FILL, dict(
            execution_id=execution_id, client_order_id=client_order_id, symbol=symbol, side=side, qty=qty,
            price=price, commission=commission, filled_datetime=filled_datetime, position_qty=position_qty,
            recorded_at=_utcnow())),)
        return True

    def fills(self, client_order_id: str | None = None) -> list[dict]:
        query = select(FILLS).order_by(FILLS.c.id)
        if client_order_id is not None:
            query = query.where(FILLS.c.client_order_id == client_order_id)
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- per bar -----------------------------------------------------------------------------
    def record_bar(self, bar_datetime: dt.datetime, *, equity_value: float, cash: float,
                   holdings: list[tuple[str, float, float, float]]) -> None:
        """Equity, cash and open positions (symbol, qty, avg price, market price) after a bar."""
        statements = [(_INSERT_EQUITY, {"bar_datetime": bar_datetime, "equity": equity_value, "cash": cash})]
        if holdings:
            statements.append((_INSERT_POSITIONS, [
                {"bar_datetime": bar_datetime, "symbol": s, "qty": q, "avg_price": p, "market_price": m}
                for s, q, p, m in holdings]))
        self._write(*statements)

    def record_predictions(self, bar_datetime: dt.datetime, model_id: str, rows: Iterable[tuple[str, dict]]) -> None:
        """A model's predictions at a bar, one (symbol, values) row per symbol (the ML strategy calls
        this live, once a bar): one executemany, in the batch's transaction inside a batch, else
        committed on its own."""
        now = _utcnow()
        params = [{"bar_datetime": bar_datetime, "symbol": symbol, "model_id": model_id, "values": to_jsonable(values),
                   "recorded_at": now} for symbol, values in rows]
        if params:
            self._write((_INSERT_PREDICTION, params),)

    def table(self, name: str) -> list[dict]:
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(select(metadata.tables[name])).mappings()]

    # ---- events --------------------------------------------------------------------------------
    def record_event(self, kind: str, message: str) -> None:
        """Something an operator must be able to find later (a halt of new entries and why, its end, a
        correction of the book), committed with the write it comes with."""
        self._write((insert(EVENTS), {"at": _utcnow(), "kind": kind, "message": message[:2000]}),)

    def events(self, kind: str | None = None) -> list[dict]:
        query = select(EVENTS).order_by(EVENTS.c.id)
        if kind is not None:
            query = query.where(EVENTS.c.kind == kind)
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- strategy state and settings ---------------------------------------------------------
    def save_state(self, name: str, bar_datetime: dt.datetime, state: dict) -> None:
        values = {"bar_datetime": bar_datetime, "state": to_jsonable(state), "updated_at": _utcnow()}
        with self._reading() as conn:
            exists = conn.execute(_STATE_SEEN, {"key": name}).first()
        if exists:
            self._write((_UPDATE_STATE, {"key": name, **values}),)
        else:
            self._write((_INSERT_STATE, {"name": name, **values}),)

    def load_state(self, name: str) -> tuple[dt.datetime, dict] | None:
        with self._reading() as conn:
            row = conn.execute(_STATE, {"key": name}).mappings().first()
        return (row["bar_datetime"], row["state"]) if row else None

    def set_meta(self, key: str, value) -> None:
        with self._reading() as conn:
            exists = conn.execute(select(META.c.key).where(META.c.key == key)).first()
        statement = update(META).where(META.c.key == key) if exists else insert(META).values(key=key)
        self._write((statement.values(value=to_jsonable(value)),))

    def get_meta(self, key: str, default=None):
        with self._reading() as conn:
            row = conn.execute(select(META.c.value).where(META.c.key == key)).first()
        return row[0] if row else default
