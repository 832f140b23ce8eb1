"""The live journal: every order before it is sent, then its fills; positions, equity, predictions and
the strategy's state after each bar. What a restart reconciles against the broker.

SQLAlchemy 2 Core over SQLite by default (one file, WAL mode, one commit per event, so a killed process
loses nothing it wrote); any SQLAlchemy URL selects another database (``postgresql+psycopg://...``).
Datetimes are naive exchange time like the bars; ``*_at`` wall-clock stamps are UTC.

``events``: what an operator must find later, such as a halt of new entries with its reason.
``alerts``: every alert raised, sent or not (schema version 2).
``news`` (schema version 4): every headline the live features read, with when it was published,
received and counted.
``bars``, ``controls``, ``session_status`` (schema version 3): what a reader (``run.py dashboard``) shows
and asks: every bar received, an operator's commands with how the session resolved them, and each
session's latest state.

Schema versions (:data:`SCHEMA_VERSION`, kept in ``journal_schema``): a journal is migrated to the code's
version when opened (one transaction, logged, an ``events`` row), and one newer than the code is refused,
never misread. Version 1: orders, fills, positions, equity, predictions, strategy_state, events and meta
(a journal made before versions were kept has these and no version: it is version 1). Version 2: + alerts.
Version 3: + bars, controls, session_status, ``equity.recorded_at`` and an index of orders by ``created_at``.
Version 4: + news (the headlines a live session's sentiment features read, once per article and symbol).

A dropped database connection (a PostgreSQL restart, a network cut) is retried with backoff, bounded
by ``retry_attempts``: a transaction outside a batch is run again whole; inside a batch, the statements
of its open transaction are kept until it commits and replayed on a new connection (the server rolled
the old transaction back, so the replay is exact). What still fails raises: an intent that could not be
written never reaches the broker (its order is sent only after :meth:`Journal.record_intents` returns).

Order statuses: ``intent`` (written, maybe not sent), then the venue's (``new``, ``held``,
``partially_filled``, ``filled``, ``canceled``, ``expired``, ``rejected``, ``replaced`` ...), or
``abandoned`` (an intent a restart found unsent and the strategy did not decide again).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (JSON, Boolean, Column, DateTime, Float, Index, Integer, MetaData, String, Table,
                        UniqueConstraint, bindparam,
                        create_engine, event, inspect, insert, select, text, update)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

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
    Index("ix_orders_created_at", "created_at"),  # schema version 3: a reader's newest orders first
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
    Column("recorded_at", DateTime),  # schema version 3: when the bar was journaled (UTC): a reader's data age
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

ALERTS = Table(  # schema version 2
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False, index=True),  # UTC
    Column("session", String(128), nullable=False),
    Column("rule", String(64), nullable=False, index=True),
    Column("key", String(256), nullable=False),  # what the alert is about (a symbol, an order): its de-duplication key
    Column("message", String(2000), nullable=False),
    Column("delivered", Boolean, nullable=False),
)

BARS = Table(  # schema version 3: every bar the session received, for a reader (the dashboard's charts)
    "bars", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bar_datetime", DateTime, nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float, nullable=False),
    Index("ix_bars_symbol_bar_datetime", "symbol", "bar_datetime"),
)

CONTROLS = Table(  # schema version 3: an operator's command, read and resolved by the session at its next bar
    "controls", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),  # UTC, when it was asked for
    Column("who", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # pause | resume | reset_kill_switch | flatten
    Column("symbol", String(32)),  # flatten: one symbol; none: every position
    Column("status", String(16), nullable=False, index=True),  # pending | applied | refused
    Column("resolved_at", DateTime),  # UTC
    Column("bar_datetime", DateTime),  # the bar at which the session resolved it
    Column("message", String(2000)),
)

SESSION_STATUS = Table(  # schema version 3: each session's latest state after a bar, for a reader
    "session_status", metadata,
    Column("session", String(128), primary_key=True),
    Column("updated_at", DateTime, nullable=False),  # UTC
    Column("status", JSON, nullable=False),
)

NEWS = Table(  # schema version 4: every headline the live session's features read (docs/live.md, News)
    "news", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("article_id", String(64), nullable=False),  # Alpaca's news id (one article: a row per symbol)
    Column("symbol", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False),  # UTC, the article's publication (Alpaca's created_at)
    Column("received_at", DateTime, nullable=False),  # UTC, when this process got it (stream or REST backfill)
    # UTC, from when the features count it: max(created_at, received_at) for a streamed headline,
    # created_at for one a session's start fetched (it is in the engine before any bar is evaluated)
    Column("available_at", DateTime, nullable=False, index=True),
    Column("source", String(8), nullable=False),  # stream | rest
    Column("headline", String(1000), nullable=False),
    Column("summary", String(4000), nullable=False),
    Column("score", Float, nullable=False),  # VADER compound score of the headline (features.sources)
    UniqueConstraint("article_id", "symbol", name="uq_news_article_symbol"),
)

SCHEMA = Table(  # one row (id 1): the version of the journal's tables
    "journal_schema", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

# A version table and a list of migration functions rather than Alembic: the journal is one module's
# tables, migrated by the live process itself when it opens them (no separate upgrade command to forget),
# and a migration is a few lines of SQLAlchemy Core here, tested on SQLite and PostgreSQL.
SCHEMA_VERSION = 4
V1_TABLES = ("orders", "fills", "positions", "equity", "predictions", "strategy_state", "events", "meta")


def _to_v2(conn) -> None:
    ALERTS.create(conn)


def _to_v3(conn) -> None:
    for table in (BARS, CONTROLS, SESSION_STATUS):
        table.create(conn)
    next(i for i in ORDERS.indexes if i.name == "ix_orders_created_at").create(conn)
    column = EQUITY.c.recorded_at
    conn.execute(text(f"ALTER TABLE equity ADD COLUMN recorded_at {column.type.compile(dialect=conn.dialect)}"))


def _to_v4(conn) -> None:
    NEWS.create(conn)


MIGRATIONS = {1: _to_v2, 2: _to_v3, 3: _to_v4}  # version n -> the function that makes it version n + 1


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
_INSERT_BARS = insert(BARS)
_INSERT_PREDICTION = insert(PREDICTIONS)
_STATE = select(STRATEGY_STATE).where(STRATEGY_STATE.c.name == bindparam("key"))
_STATE_SEEN = select(STRATEGY_STATE.c.name).where(STRATEGY_STATE.c.name == bindparam("key"))
_INSERT_STATE = insert(STRATEGY_STATE)
_UPDATE_STATE = update(STRATEGY_STATE).where(STRATEGY_STATE.c.name == bindparam("key"))
_PENDING_CONTROLS = select(CONTROLS).where(CONTROLS.c.status == "pending").order_by(CONTROLS.c.id)
_ANY_PENDING_CONTROL = select(CONTROLS.c.id).where(CONTROLS.c.status == "pending").limit(1)  # every bar, live


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


def _write_ahead_log(cursor, seconds: float) -> None:
    """SQLite's write-ahead log for this connection's file. Turning a new file to it needs the file to
    itself, and SQLite refuses at once, without its busy timeout, while another process's connection
    does the same (a live process and a reader opening a new journal together): tried again for up to
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _schema_lock(conn) -> None:
    """Serialize opening the journal with other processes opening it (a live process and a reader), so
    that one creates or migrates the tables and the others find them done: SQLite's write lock (its
    driver opens no transaction before DDL on its own) or a PostgreSQL transaction-level advisory lock."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(4715021)"))  # any constant: the journal's key


def _schema_version(conn) -> int | None:
    """The journal's schema version; None: no journal here yet."""
    tables = set(inspect(conn).get_table_names())
    if SCHEMA.name in tables:
        version = conn.execute(select(SCHEMA.c.version).where(SCHEMA.c.id == 1)).scalar()
        if version is not None:
            return version
    return 1 if "orders" in tables else None  # tables without a version: made before versions were kept


def _open_schema(engine, safe_url: str) -> None:
    """Create a new journal's tables, migrate an older journal, refuse a newer one (module doc). A
    journal of the code's version is only read (no lock: a reader does not hold up the live process)."""
    with engine.connect() as conn:
        version = _schema_version(conn)
    if version == SCHEMA_VERSION:
        return
    with engine.connect() as conn:
        _schema_lock(conn)
        version = _schema_version(conn)  # again, under the lock: another process may have done it
        if version is None:
            metadata.create_all(conn)
            conn.execute(insert(SCHEMA).values(id=1, version=SCHEMA_VERSION))
        elif version > SCHEMA_VERSION:
            raise UserError(f"journal {safe_url}: schema version {version} is newer than this code's "
                            f"{SCHEMA_VERSION}; run the version of the code that wrote it (or newer)")
        elif version < SCHEMA_VERSION:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            SCHEMA.create(conn, checkfirst=True)
            conn.execute(SCHEMA.delete())
            conn.execute(insert(SCHEMA).values(id=1, version=SCHEMA_VERSION))
            message = f"journal schema migrated from version {version} to {SCHEMA_VERSION}"
            conn.execute(insert(EVENTS).values(at=_utcnow(), kind="schema_migrated", message=message))
            log.warning("journal %s: %s", safe_url, message)
        conn.commit()


def sqlite_url(path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def journal_options(live) -> dict:
    """The Journal's keyword arguments from the ``[live]`` config section."""
    return dict(sqlite_synchronous=live.sqlite_synchronous, retry_attempts=live.journal_retry_attempts,
                retry_min_seconds=live.journal_retry_min_seconds, retry_max_seconds=live.journal_retry_max_seconds)


class Journal:
    """Crash-safe record of a live deployment (see module doc). Every write commits before returning.

    ``manual_checkpoints`` (SQLite): SQLite copies its write-ahead log into the database file (a
    checkpoint, 1-25 ms) inside whichever commit crosses 1000 pages, an order's intent included; with
    True it never does, and :meth:`checkpoint` does it when the caller has time (the live loop: after
    each bar, its orders sent). Committed data is in the log either way: nothing is less durable.

    ``retry_attempts``, ``retry_min_seconds``, ``retry_max_seconds``: a dropped connection is tried
    again this many times in all, waiting min, 2 min, 4 min ... max seconds in between (module doc).

    Threads: :meth:`batch` belongs to the thread that opened it; writes and reads from other threads
    (the alerts sender's :meth:`record_alert`) run in their own short transactions meanwhile.
    """

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", manual_checkpoints: bool = False,
                 retry_attempts: int = 5, retry_min_seconds: float = 0.2, retry_max_seconds: float = 5.0):
        self.url = url
        self.retry_attempts, self.retry_min_seconds, self.retry_max_seconds = \
            max(1, retry_attempts), retry_min_seconds, retry_max_seconds
        self._conn = None  # the open transaction of a batch() that has written
        self._pending: list[tuple] = []  # the statements of that transaction since its last commit
        self._batching = False
        self._batch_thread: int | None = None
        self.manual_checkpoints = False  # other databases checkpoint on their own
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            sqlite = url.startswith("sqlite")
            # pre-ping (a round trip at each checkout) finds a connection the server dropped while it
            # sat in the pool before a write fails on it; a file has no server to lose
            self.engine = create_engine(url, future=True, pool_pre_ping=not sqlite)
            if self.engine.dialect.name == "sqlite":
                self.manual_checkpoints = manual_checkpoints

                @event.listens_for(self.engine, "connect")
                def _pragmas(dbapi_connection, _record):
                    cursor = dbapi_connection.cursor()
                    cursor.execute("PRAGMA busy_timeout=5000")
                    _write_ahead_log(cursor, 5.0)
                    cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
                    if manual_checkpoints:
                        cursor.execute("PRAGMA wal_autocheckpoint=0")
                    cursor.close()
            _open_schema(self.engine, self._safe_url())
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
        if self._batching:  # nested; or another thread's batch, and this thread's writes go on their own
            yield
            return
        self._batching, self._batch_thread = True, threading.get_ident()
        try:
            yield
            if self._conn is not None:
                self._batch_step((), commit=True)
        finally:
            self._batching, self._batch_thread = False, None
            self._pending.clear()
            if self._conn is not None:
                self._drop_batch_connection()  # rolls back what an exception left uncommitted

    def _in_batch(self) -> bool:
        return self._batching and self._batch_thread == threading.get_ident()

    # ---- retries -----------------------------------------------------------------------------
    def _retryable(self, exc: DBAPIError) -> bool:
        """A lost connection (SQLAlchemy invalidated it) or, on a server database, an operational
        error (the server restarting, refusing connections, a serialization failure): worth another try."""
        if exc.connection_invalidated:
            return True
        return isinstance(exc, OperationalError) and self.engine.dialect.name != "sqlite"

    def _backoff(self, attempt: int, exc: DBAPIError, what: str) -> None:
        """Raise ``exc`` if it is not worth retrying or the attempts are spent; else log and wait."""
        if not self._retryable(exc) or attempt >= self.retry_attempts:
            raise exc
        wait = min(self.retry_max_seconds, self.retry_min_seconds * 2 ** (attempt - 1))
        cause = exc.orig if exc.orig is not None else exc
        first_line = (str(cause).splitlines() or [""])[0]
        log.warning("journal %s: %s failed (%s: %s); retry %d of %d in %.2f s", self._safe_url(), what,
                    type(cause).__name__, first_line, attempt, self.retry_attempts - 1, wait)
        time.sleep(wait)

    def _transaction(self, statements) -> None:
        """Statements in a transaction of their own, run again whole after a dropped connection."""
        attempt = 0
        commit_was_cut = False
        while True:
            attempt += 1
            committing = False
            try:
                with self.engine.connect() as conn:
                    for statement in statements:
                        conn.execute(*statement)
                    committing = True
                    conn.commit()
                return
            except IntegrityError:
                if attempt == 1 or not commit_was_cut:
                    raise
                # The connection dropped during the previous attempt's COMMIT, which may have landed; its
                # replay hit a key it wrote (an intent's client order id, a fill's execution id): it did.
                log.warning("journal %s: a commit cut off by a dropped connection had landed", self._safe_url())
                return
            except DBAPIError as exc:
                commit_was_cut = commit_was_cut or committing  # a later failure does not undo what it may have done
                self._backoff(attempt, exc, "a write")

    def _drop_batch_connection(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.close()
        except SQLAlchemyError:  # already lost with its server: nothing to roll back
            pass

    def _batch_connection(self):
        """The batch's connection; a new one after a drop, with the batch's uncommitted statements
        replayed (the server rolled them back with the old connection)."""
        if self._conn is None:
            self._conn = self.engine.connect()
            for statement in self._pending:
                self._conn.execute(*statement)
        return self._conn

    def _batch_step(self, statements, *, commit: bool) -> None:
        """Statements in the batch's transaction (``commit``: then commit it), with retries (module doc)."""
        attempt = 0
        commit_was_cut = False
        while True:
            attempt += 1
            committing = False
            try:
                conn = self._batch_connection()
                for statement in statements:
                    conn.execute(*statement)
                self._pending.extend(statements)  # all or none: a drop midway runs them all again
                statements = ()
                if commit:
                    committing = True
                    conn.commit()
                    self._pending.clear()
                return
            except IntegrityError:
                if not commit_was_cut:
                    raise
                # as in _transaction: the cut COMMIT had landed (the replay hit a key it wrote)
                log.warning("journal %s: a commit cut off by a dropped connection had landed", self._safe_url())
                self._drop_batch_connection()
                self._pending.clear()
                return
            except DBAPIError as exc:
                commit_was_cut = commit_was_cut or committing  # a later failure does not undo what it may have done
                self._drop_batch_connection()
                self._backoff(attempt, exc, "a write in a batch")

    def _write(self, *statements, durable: bool = False) -> None:
        if self._in_batch():
            self._batch_step(statements, commit=durable)
        else:
            self._transaction(statements)

    def _read(self, query):
        """``query(connection)``'s answer, inside a batch that wrote on its connection (to see its own
        writes), else on a connection of its own; retried after a dropped connection."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._in_batch() and (self._conn is not None or self._pending):
                    return query(self._batch_connection())
                with self.engine.connect() as conn:
                    return query(conn)
            except DBAPIError as exc:
                if self._in_batch() and self._conn is not None:
                    self._drop_batch_connection()
                self._backoff(attempt, exc, "a read")

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
        row = self._read(lambda conn: conn.execute(_ORDER, {"cid": client_order_id}).mappings().first())
        return self._row(row) if row else None

    def orders(self, *, open_only: bool = False) -> list[OrderRow]:
        query = select(ORDERS).order_by(ORDERS.c.created_at, ORDERS.c.client_order_id)
        if open_only:
            query = query.where(ORDERS.c.status.in_(OPEN_STATUSES))
        return [self._row(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    def legs_of(self, parent_client_order_id: str) -> list[OrderRow]:
        query = (select(ORDERS).where(ORDERS.c.parent_client_order_id == parent_client_order_id)
                 .order_by(ORDERS.c.client_order_id))
        return [self._row(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

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
        if self._read(lambda conn: conn.execute(_FILL_SEEN, {"eid": execution_id}).first()):
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
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    # ---- per bar -----------------------------------------------------------------------------
    def record_bar(self, bar_datetime: dt.datetime, *, equity_value: float, cash: float,
                   holdings: list[tuple[str, float, float, float]],
                   bars: list[tuple[str, dt.datetime, float, float, float, float, float]] = ()) -> None:
        """Equity, cash and open positions (symbol, qty, avg price, market price) after a bar, and the
        bars received with it (symbol, bar datetime, open, high, low, close, volume)."""
        statements = [(_INSERT_EQUITY, {"bar_datetime": bar_datetime, "equity": equity_value, "cash": cash,
                                        "recorded_at": _utcnow()})]
        if holdings:
            statements.append((_INSERT_POSITIONS, [
                {"bar_datetime": bar_datetime, "symbol": s, "qty": q, "avg_price": p, "market_price": m}
                for s, q, p, m in holdings]))
        if bars:
            statements.append((_INSERT_BARS, [
                {"symbol": s, "bar_datetime": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for s, t, o, h, lo, c, v in bars]))
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

    def record_news(self, rows: list[dict]) -> list[dict]:
        """Headlines (dicts of the ``news`` columns but ``id``), each (article_id, symbol) once: the
        rows not journaled before are inserted, in one transaction, and returned (a headline the
        stream and a backfill both bring, or a backfill run twice, is kept as first recorded)."""
        if not rows:
            return []
        keys = {(str(r["article_id"]), r["symbol"]) for r in rows}
        ids = sorted({k[0] for k in keys})

        def known(conn):
            query = select(NEWS.c.article_id, NEWS.c.symbol).where(
                NEWS.c.article_id.in_(bindparam("ids", expanding=True)))
            return {(a, s) for a, s in conn.execute(query, {"ids": ids}).all()}

        seen = self._read(known)
        fresh, taken = [], set()
        for row in rows:
            key = (str(row["article_id"]), row["symbol"])
            if key in seen or key in taken:
                continue
            taken.add(key)
            fresh.append({**row, "article_id": key[0], "headline": str(row["headline"])[:1000],
                          "summary": str(row.get("summary") or "")[:4000]})
        if fresh:
            self._write((insert(NEWS), fresh))
        return fresh

    def news(self, symbols: Iterable[str] | None = None, *, since: dt.datetime | None = None) -> list[dict]:
        """Journaled headlines (of ``symbols``; available at or after ``since``, UTC), by availability."""
        query = select(NEWS).order_by(NEWS.c.available_at, NEWS.c.id)
        if symbols is not None:
            query = query.where(NEWS.c.symbol.in_(list(symbols)))
        if since is not None:
            query = query.where(NEWS.c.available_at >= since)
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    def last_news_created(self, symbols: Iterable[str]) -> dt.datetime | None:
        """The latest ``created_at`` (UTC) journaled for any of ``symbols`` (None: none)."""
        from sqlalchemy import func

        query = select(func.max(NEWS.c.created_at)).where(NEWS.c.symbol.in_(list(symbols)))
        return self._read(lambda conn: conn.execute(query).scalar())

    def table(self, name: str) -> list[dict]:
        query = select(metadata.tables[name])
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    # ---- events --------------------------------------------------------------------------------
    def record_event(self, kind: str, message: str) -> None:
        """Something an operator must be able to find later (a halt of new entries and why, its end, a
        correction of the book), committed with the write it comes with."""
        self._write((insert(EVENTS), {"at": _utcnow(), "kind": kind, "message": message[:2000]}),)

    def events(self, kind: str | None = None) -> list[dict]:
        query = select(EVENTS).order_by(EVENTS.c.id)
        if kind is not None:
            query = query.where(EVENTS.c.kind == kind)
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    # ---- strategy state and settings ---------------------------------------------------------
    def save_state(self, name: str, bar_datetime: dt.datetime, state: dict) -> None:
        values = {"bar_datetime": bar_datetime, "state": to_jsonable(state), "updated_at": _utcnow()}
        exists = self._read(lambda conn: conn.execute(_STATE_SEEN, {"key": name}).first())
        if exists:
            self._write((_UPDATE_STATE, {"key": name, **values}),)
        else:
            self._write((_INSERT_STATE, {"name": name, **values}),)

    def load_state(self, name: str) -> tuple[dt.datetime, dict] | None:
        row = self._read(lambda conn: conn.execute(_STATE, {"key": name}).mappings().first())
        return (row["bar_datetime"], row["state"]) if row else None

    def set_meta(self, key: str, value) -> None:
        exists = self._read(lambda conn: conn.execute(select(META.c.key).where(META.c.key == key)).first())
        statement = update(META).where(META.c.key == key) if exists else insert(META).values(key=key)
        self._write((statement.values(value=to_jsonable(value)),))

    def get_meta(self, key: str, default=None):
        row = self._read(lambda conn: conn.execute(select(META.c.value).where(META.c.key == key)).first())
        return row[0] if row else default

    # ---- alerts (schema version 2) -------------------------------------------------------------
    def record_alert(self, session: str, rule: str, key: str, message: str, delivered: bool) -> None:
        """An alert raised (``delivered``: whether it was sent). Called from the alerts sender's thread
        while the trading loop may be inside :meth:`batch`: always a short transaction of its own, never
        the batch's connection (the engine's pool hands each thread its own)."""
        self._transaction([(insert(ALERTS), {"at": _utcnow(), "session": session[:128], "rule": rule[:64],
                                             "key": key[:256], "message": message[:2000],
                                             "delivered": bool(delivered)})])

    def alerts(self, rule: str | None = None) -> list[dict]:
        query = select(ALERTS).order_by(ALERTS.c.id)
        if rule is not None:
            query = query.where(ALERTS.c.rule == rule)
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    # ---- what a reader shows and asks (schema version 3) ------------------------------------------
    def request_control(self, action: str, *, who: str, symbol: str | None = None) -> int:
        """An operator's command for the session (``pending`` until it resolves it at its next bar);
        its id. Thread-safe: a transaction of its own."""
        with self.engine.begin() as conn:
            return conn.execute(insert(CONTROLS).values(at=_utcnow(), who=who[:128], action=action, symbol=symbol,
                                                        status="pending")).inserted_primary_key[0]

    def has_pending_controls(self) -> bool:
        """Whether a command waits (the session asks at every traded bar: one indexed SELECT of one id,
        compiled once, tens of microseconds on SQLite)."""
        return self._read(lambda conn: conn.execute(_ANY_PENDING_CONTROL).first()) is not None

    def pending_controls(self) -> list[dict]:
        """The commands not resolved yet, oldest first."""
        return [dict(r) for r in self._read(lambda conn: conn.execute(_PENDING_CONTROLS).mappings().all())]

    def resolve_control(self, control_id: int, status: str, message: str, bar_datetime: dt.datetime | None) -> None:
        """``status``: applied or refused, with what the session did or why not."""
        self._write((update(CONTROLS).where(CONTROLS.c.id == control_id).values(
            status=status, message=message[:2000], bar_datetime=bar_datetime, resolved_at=_utcnow()),), durable=True)

    def controls(self, limit: int | None = None) -> list[dict]:
        """The commands asked for, newest first."""
        query = select(CONTROLS).order_by(CONTROLS.c.id.desc()).limit(limit)
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]

    def publish_status(self, session: str, status: dict) -> None:
        """A session's latest state (a JSON-ready dict), replacing the one before. Called from a
        background thread: a transaction of its own, never a batch's connection."""
        self._transaction([(SESSION_STATUS.delete().where(SESSION_STATUS.c.session == session),),
                           (insert(SESSION_STATUS), {"session": session[:128], "updated_at": _utcnow(),
                                                     "status": to_jsonable(status)})])

    def session_status(self) -> list[dict]:
        query = select(SESSION_STATUS).order_by(SESSION_STATUS.c.updated_at.desc())
        return [dict(r) for r in self._read(lambda conn: conn.execute(query).mappings().all())]
