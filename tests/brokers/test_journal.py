"""The journal, on SQLite and on PostgreSQL (``journal_url``): an intent is on disk before the order can
be sent, fills are recorded once, state and settings round-trip, and a batch commits together (except
intents, which commit at once); schema versions (an old journal migrated, a newer one refused); alerts
written from another thread during a batch; a dropped connection retried, between and inside batches."""
import datetime as dt
import shutil
import sqlite3
import threading

import pytest
from sqlalchemy import MetaData, create_engine, insert, update

from brokers.journal import SCHEMA, SCHEMA_VERSION, V1_TABLES, Journal, _write_ahead_log, metadata, sqlite_url
from common.errors import UserError
from tests.conftest import terminate_connections

T = dt.datetime(2024, 1, 2, 9, 31)


def intent(cid, **extra):
    return {**dict(client_order_id=cid, symbol="AAPL", side="buy", qty=10, order_type="market", time_in_force="day",
                   bar_datetime=T, reason="breakout", info={"initial_stop": 95.0, "confidence": float("nan")},
                   parent_client_order_id=None, leg=None), **extra}


@pytest.fixture
def journal(journal_url):
    j = Journal(journal_url, retry_min_seconds=0.01, retry_max_seconds=0.05)
    yield j
    j.close()


def test_intent_is_durable_inside_a_batch_and_the_rest_commits_at_its_end(journal, journal_url):
    other = Journal(journal_url)
    with journal.batch():
        journal.record_intents([intent("A"), intent("A-stop", parent_client_order_id="A", leg="stop_loss",
                                                    side="sell")])
        journal.update_order("A", status="new", venue_order_id="v1")
        assert other.order("A").status == "intent"  # the send-after-write guarantee
        assert journal.order("A").status == "new"  # the batch sees its own writes
    assert other.order("A").status == "new" and other.order("A").venue_order_id == "v1"
    assert [leg.client_order_id for leg in other.legs_of("A")] == ["A-stop"]
    assert other.order("A").info == {"initial_stop": 95.0, "confidence": None}
    other.close()


def test_a_fill_is_recorded_once(journal):
    journal.record_intents([intent("A")])
    fill = dict(execution_id="e1", client_order_id="A", symbol="AAPL", side="buy", qty=10, price=101.0,
                commission=0.1, filled_datetime=T, position_qty=10)
    assert journal.record_fill(**fill) is True
    assert journal.record_fill(**fill) is False
    assert [f["qty"] for f in journal.fills("A")] == [10.0]


def test_open_orders_state_and_settings(journal):
    journal.record_intents([intent("A"), intent("B")])
    journal.update_order("B", status="filled", filled_qty=10)
    assert [o.client_order_id for o in journal.orders(open_only=True)] == ["A"]
    journal.save_state("deploy", T, {"plans": [], "strategy": {"halted": True}})
    journal.save_state("deploy", T + dt.timedelta(minutes=1), {"plans": [], "strategy": {"halted": False}})
    assert journal.load_state("deploy") == (T + dt.timedelta(minutes=1), {"plans": [], "strategy": {"halted": False}})
    assert journal.load_state("other") is None
    journal.set_meta("last_retrain", "2024-01-02")
    assert journal.get_meta("last_retrain") == "2024-01-02" and journal.get_meta("nope", 7) == 7


def test_predictions_and_bars(journal):
    journal.record_predictions(T, "ensemble-2024-01", [("AAPL", {"expected_return": 0.012, "confidence": 0.71})])
    journal.record_bar(T, equity_value=100_500.0, cash=90_000.0, holdings=[("AAPL", 10, 100.0, 101.0)])
    assert journal.table("predictions")[0]["values"]["confidence"] == 0.71
    assert journal.table("positions")[0]["qty"] == 10.0


def test_an_unreachable_database_is_one_line_without_the_password():
    with pytest.raises(UserError) as error:
        Journal("postgresql+psycopg://trader:hunter2@127.0.0.1:9/journal")
    assert "hunter2" not in str(error.value) and "cannot open" in str(error.value)


def test_manual_checkpoints_move_the_log_into_the_database_only_when_asked(tmp_path):
    """With manual checkpoints a commit (an intent's included) only appends to the write-ahead log;
    checkpoint() copies it into the database file. Readers see every commit either way."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(sqlite_url(path), manual_checkpoints=True)
    journal.checkpoint()  # the tables

    def orders_in_the_database_file():
        copy = tmp_path / "copy.sqlite"  # the file alone, without its log
        shutil.copyfile(path, copy)
        with sqlite3.connect(copy) as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]

    with journal.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0  # never inside a commit
    journal.record_intents([intent("A")] + [intent(f"B{n}") for n in range(300)])
    assert orders_in_the_database_file() == 0
    assert journal.order("A").status == "intent"
    journal.checkpoint()
    assert orders_in_the_database_file() == 301
    journal.close()


# ---- schema versions ---------------------------------------------------------------------------------
def v1_journal(url: str) -> None:
    """A journal as the code before schema versions made it: the version-1 tables, no version, rows."""
    v1 = MetaData()
    for name in V1_TABLES:
        metadata.tables[name].to_metadata(v1)
    v1.tables["equity"]._columns.remove(v1.tables["equity"].c.recorded_at)  # version 3's column and index
    v1.tables["orders"].indexes.discard(next(i for i in v1.tables["orders"].indexes if i.name == "ix_orders_created_at"))
    engine = create_engine(url)
    v1.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(v1.tables["orders"]), {**intent("OLD"), "status": "filled", "filled_qty": 10.0,
                                                  "created_at": T, "updated_at": T, "info": {}})
        conn.execute(insert(v1.tables["events"]), {"at": T, "kind": "halt", "message": "daily loss limit"})
    engine.dispose()


def test_a_journal_from_before_schema_versions_is_migrated_and_keeps_its_rows(journal_url, caplog):
    v1_journal(journal_url)
    with caplog.at_level("WARNING", logger="live.journal"):
        journal = Journal(journal_url)
    assert f"migrated from version 1 to {SCHEMA_VERSION}" in caplog.text
    assert journal.order("OLD").status == "filled" and journal.order("OLD").bar_datetime == T
    migrated = f"journal schema migrated from version 1 to {SCHEMA_VERSION}"
    assert [(e["kind"], e["message"]) for e in journal.events()] == [
        ("halt", "daily loss limit"), ("schema_migrated", migrated)]
    journal.record_alert("s1", "kill_switch", "AAPL", "kill switch tripped", True)  # the version-2 table
    assert [a["rule"] for a in journal.alerts()] == ["kill_switch"]
    journal.close()
    again = Journal(journal_url)  # migrated once: nothing more to do
    assert len(again.events("schema_migrated")) == 1 and again.table("journal_schema")[0]["version"] == SCHEMA_VERSION
    again.close()


def test_a_journal_newer_than_the_code_is_refused_naming_both_versions(journal_url):
    Journal(journal_url).close()
    engine = create_engine(journal_url)
    with engine.begin() as conn:
        conn.execute(update(SCHEMA).values(version=SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(UserError) as error:
        Journal(journal_url)
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this code's {SCHEMA_VERSION}" in str(error.value)


class RefusingCursor:
    """A connection's cursor whose first ``refusals`` statements SQLite refuses with ``error``."""

    def __init__(self, refusals: int, error: str = "database is locked"):
        self.refusals, self.error, self.executed = refusals, error, []

    def execute(self, statement):
        self.executed.append(statement)
        if len(self.executed) <= self.refusals:
            raise sqlite3.OperationalError(self.error)


def test_the_write_ahead_log_is_asked_for_again_while_another_connection_holds_the_new_file():
    cursor = RefusingCursor(3)  # SQLite refuses at once, busy timeout or not, while another converts it
    _write_ahead_log(cursor, 5.0)
    assert cursor.executed == ["PRAGMA journal_mode=WAL"] * 4
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _write_ahead_log(RefusingCursor(10_000), 0.05)  # not for ever
    other = RefusingCursor(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # only a lock is waited out
        _write_ahead_log(other, 5.0)
    assert len(other.executed) == 1


def test_processes_opening_a_new_journal_at_once_take_turns(journal_url):
    """A live process and readers opening a new journal together: one creates it, the others find it."""
    opened, errors = [], []

    def open_it():
        try:
            opened.append(Journal(journal_url))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(opened) == 4
    assert opened[0].table("journal_schema") == [{"id": 1, "version": SCHEMA_VERSION}]
    assert opened[0].events() == []  # created, not migrated
    for journal in opened:
        journal.close()


# ---- alerts ----------------------------------------------------------------------------------------------
def test_an_alert_from_another_thread_commits_on_its_own_during_a_batch(journal):
    """The alerts sender records from its thread while the loop is inside a batch: the alert is not
    part of the batch's transaction (a batch rolled back keeps it) and does not disturb it."""
    sender = threading.Thread(target=journal.record_alert,
                              args=("t-session", "order_rejected", "t-1", "XOM rejected: not tradable", False))
    with pytest.raises(RuntimeError):
        with journal.batch():
            journal.record_bar(T, equity_value=1.0, cash=1.0, holdings=[])
            sender.start()
            if journal.engine.dialect.name != "sqlite":  # SQLite: the sender waits for the batch's write lock
                sender.join(10)
                assert [a["rule"] for a in journal.alerts()] == ["order_rejected"]  # this thread's batch sees it
            raise RuntimeError("the bar failed")
    sender.join(10)
    assert journal.table("equity") == []  # the batch rolled back ...
    [alert] = journal.alerts()  # ... the alert stayed
    assert (alert["session"], alert["rule"], alert["key"], alert["delivered"]) == (
        "t-session", "order_rejected", "t-1", False)
    assert alert["at"] <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    journal.record_alert("t-session", "stale_feed", "AAPL", "no bar for 180 s", True)
    assert [a["rule"] for a in journal.alerts(rule="stale_feed")] == ["stale_feed"]


# ---- a dropped connection ----------------------------------------------------------------------------
def fill(eid, cid, qty=10):
    return dict(execution_id=eid, client_order_id=cid, symbol="AAPL", side="buy", qty=qty, price=101.0,
                commission=0.1, filled_datetime=T, position_qty=qty)


def test_a_dropped_connection_between_and_inside_batches_loses_nothing(postgres_url, postgres_admin, caplog):
    """The server cuts the journal's connections (pg_terminate_backend) between transactions, inside a
    batch after a durable write, before a read in the batch, and just before the batch's commit: every
    write lands once."""
    journal = Journal(postgres_url, retry_min_seconds=0.01, retry_max_seconds=0.05)
    database = journal.engine.url.database

    def cut():
        assert terminate_connections(postgres_admin, database) >= 1

    journal.record_intents([intent("A")])
    cut()  # a pooled connection the server dropped: pre-ping replaces it
    journal.update_order("A", status="new", venue_order_id="vA")
    with caplog.at_level("WARNING", logger="live.journal"):
        with journal.batch():
            journal.record_intents([intent("B")])
            journal.update_order("B", status="new", venue_order_id="vB")
            journal.record_bar(T, equity_value=100_000.0, cash=99_000.0, holdings=[("AAPL", 10, 100.0, 101.0)])
            cut()  # the batch's open transaction (B's update, the bar) is rolled back by the server ...
            assert journal.record_fill(**fill("e1", "A")) is True  # ... and replayed before this read
            journal.update_order("A", status="filled", filled_qty=10.0, filled_avg_price=101.0)
            cut()  # ... and again at the batch's commit
    assert "retry 1 of 4" in caplog.text
    assert [(o.client_order_id, o.status, o.venue_order_id) for o in journal.orders()] == [
        ("A", "filled", "vA"), ("B", "new", "vB")]
    assert [f["execution_id"] for f in journal.fills()] == ["e1"]
    assert len(journal.table("equity")) == 1 and len(journal.table("positions")) == 1
    journal.close()


def test_a_commit_cut_off_after_it_landed_is_not_written_twice(postgres_url, monkeypatch):
    """The connection drops during COMMIT after the server committed: the retry's replay hits the
    intent's key, which says the first attempt landed; outside a batch and inside one."""
    journal = Journal(postgres_url, retry_min_seconds=0.01, retry_max_seconds=0.05)
    dialect = journal.engine.dialect
    committed, cuts = type(dialect).do_commit, []

    def commit_then_drop(self, dbapi_connection):
        committed(self, dbapi_connection)
        if cuts:
            cuts.pop()
            import psycopg

            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(type(dialect), "do_commit", commit_then_drop)
    cuts.append(True)
    journal.record_intents([intent("A")])
    with journal.batch():
        journal.update_order("A", status="new")
        cuts.append(True)
        journal.record_intents([intent("B")])
        journal.update_order("B", status="new")
    assert [(o.client_order_id, o.status) for o in journal.orders()] == [("A", "new"), ("B", "new")]
    assert not cuts
    journal.close()


def failing_order_inserts(journal: Journal) -> list:
    """Every INSERT INTO orders from now on fails as on a connection the server dropped; the attempts."""
    from sqlalchemy import event

    attempts = []
    if journal.engine.dialect.name == "sqlite":
        error = sqlite3.ProgrammingError("Cannot operate on a closed database.")
    else:
        import psycopg

        error = psycopg.OperationalError("server closed the connection unexpectedly")

    @event.listens_for(journal.engine, "before_cursor_execute")
    def _drop(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO orders"):
            attempts.append(statement)
            raise error

    return attempts


def test_a_write_still_failing_after_its_retries_raises(journal):
    journal.retry_attempts = 3
    attempts = failing_order_inserts(journal)
    with pytest.raises(Exception, match="closed"):
        journal.record_intents([intent("A")])
    with pytest.raises(Exception, match="closed"):
        with journal.batch():
            journal.record_intents([intent("B")])
    assert len(attempts) == 6 and journal.orders() == []


def test_an_order_whose_intent_cannot_be_written_never_reaches_the_venue(journal_url, monkeypatch):
    """The live path on recorded bars (``run_replay``, the simulated venue) with a journal whose order
    inserts fail as on a dropped connection, every retry too: the session stops on the error and the
    venue received no order."""
    import engine.live
    from brokers.sim_venue import SimulatedVenue
    from config import load_config
    from feeds.loader import load_universe
    from strategies.momentum_breakout import MomentumBreakout

    hooked, submitted = [], []

    class FailingJournal(Journal):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            hooked.append(failing_order_inserts(self))

    monkeypatch.setattr(engine.live, "Journal", FailingJournal)
    monkeypatch.setattr(SimulatedVenue, "submit", lambda self, request: submitted.append(request))
    cfg = load_config(overrides={"backtest.progress": False, "live.journal_retry_attempts": 3,
                                 "live.journal_retry_min_seconds": 0.01, "live.journal_retry_max_seconds": 0.02})
    bars = load_universe(["data/sample/AAPL_data.csv"], end="2014-06-01")  # its first order: early 2014
    with pytest.raises(Exception, match="closed"):
        engine.live.run_replay(cfg, bars, strategy_cls=MomentumBreakout, journal_url=journal_url)
    [inserts] = hooked
    assert len(inserts) == 3 and submitted == []  # three attempts at the intent, no order sent


def test_version_3_keeps_bars_controls_and_session_status(journal_url):
    v1_journal(journal_url)
    journal = Journal(journal_url)  # migrated from version 1: equity gains recorded_at
    journal.record_bar(T, equity_value=100.0, cash=50.0, holdings=[("AAPL", 1.0, 50.0, 50.0)],
                       bars=[("AAPL", T, 49.0, 51.0, 48.5, 50.0, 1000.0)])
    assert journal.table("equity")[0]["recorded_at"] is not None
    assert journal.table("bars")[0]["close"] == 50.0
    first = journal.request_control("pause", who="dashboard")
    second = journal.request_control("flatten", who="dashboard", symbol="AAPL")
    assert [c["id"] for c in journal.pending_controls()] == [first, second]
    journal.resolve_control(first, "applied", "new entries paused", T)
    assert [c["id"] for c in journal.pending_controls()] == [second]
    assert journal.controls(limit=1)[0]["id"] == second and journal.controls()[1]["status"] == "applied"
    journal.publish_status("s1", {"equity": 100.0})
    journal.publish_status("s1", {"equity": 101.0})
    assert [(s["session"], s["status"]) for s in journal.session_status()] == [("s1", {"equity": 101.0})]
    journal.close()


def news_row(article_id, symbol, *, minute=0, source="stream", headline="Apple beats estimates"):
    created = T + dt.timedelta(minutes=minute)
    return {"article_id": article_id, "symbol": symbol, "created_at": created,
            "received_at": created + dt.timedelta(seconds=2), "available_at": created + dt.timedelta(seconds=2),
            "source": source, "headline": headline, "summary": "", "score": 0.4}


def test_version_4_keeps_news_once_per_article_and_symbol(journal_url):
    v1_journal(journal_url)
    journal = Journal(journal_url)  # migrated from version 1 through 2, 3 and 4
    assert journal.table("journal_schema")[0]["version"] == SCHEMA_VERSION == 4
    first = journal.record_news([news_row(1, "AAPL"), news_row(1, "MSFT"), news_row(2, "AAPL", minute=5)])
    assert [(r["article_id"], r["symbol"]) for r in first] == [("1", "AAPL"), ("1", "MSFT"), ("2", "AAPL")]
    # a backfill bringing the same articles again, one new, and a duplicate inside one call
    again = journal.record_news([news_row(1, "AAPL", source="rest"), news_row(2, "AAPL", source="rest"),
                                 news_row(3, "AAPL", minute=9, source="rest"),
                                 news_row(3, "AAPL", minute=9, source="rest")])
    assert [(r["article_id"], r["source"]) for r in again] == [("3", "rest")]
    rows = journal.news(["AAPL"])
    assert [(r["article_id"], r["source"]) for r in rows] == [("1", "stream"), ("2", "stream"), ("3", "rest")]
    assert rows[0]["created_at"] == T and rows[0]["received_at"] == T + dt.timedelta(seconds=2)
    assert [r["article_id"] for r in journal.news(["AAPL"], since=T + dt.timedelta(minutes=5))] == ["2", "3"]
    assert journal.last_news_created(["AAPL", "MSFT"]) == T + dt.timedelta(minutes=9)
    assert journal.last_news_created(["XOM"]) is None
    journal.close()


def test_a_version_3_journal_gains_the_news_table(journal_url):
    """A journal the previous code made (version 3, every table but news) is migrated to 4 in place."""
    v3 = MetaData()
    for table in metadata.sorted_tables:
        if table.name != "news":
            table.to_metadata(v3)
    engine = create_engine(journal_url)
    v3.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(v3.tables["journal_schema"]), {"id": 1, "version": 3})
    engine.dispose()
    journal = Journal(journal_url)
    assert journal.table("journal_schema")[0]["version"] == 4
    assert [e["message"] for e in journal.events("schema_migrated")] == [
        "journal schema migrated from version 3 to 4"]
    assert len(journal.record_news([news_row(7, "JPM")])) == 1 and journal.news()[0]["symbol"] == "JPM"
    journal.close()
