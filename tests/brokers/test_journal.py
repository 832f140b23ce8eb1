"""The journal: an intent is on disk before the order can be sent, fills are recorded once, state and
settings round-trip, and a batch commits together (except intents, which commit at once)."""
import datetime as dt
import shutil
import sqlite3

import pytest

from brokers.journal import Journal, sqlite_url
from common.errors import UserError

T = dt.datetime(2024, 1, 2, 9, 31)


def intent(cid, **extra):
    return {**dict(client_order_id=cid, symbol="AAPL", side="buy", qty=10, order_type="market", time_in_force="day",
                   bar_datetime=T, reason="breakout", info={"initial_stop": 95.0, "confidence": float("nan")},
                   parent_client_order_id=None, leg=None), **extra}


@pytest.fixture
def journal(tmp_path):
    j = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    yield j
    j.close()


def test_intent_is_durable_inside_a_batch_and_the_rest_commits_at_its_end(journal, tmp_path):
    other = Journal(sqlite_url(tmp_path / "journal.sqlite"))
    with journal.batch():
        journal.record_intents([intent("A"), intent("A-stop", parent_client_order_id="A", leg="stop_loss",
                                                    side="sell")])
        journal.update_order("A", status="new", venue_order_id="v1")
        assert other.order("A").status == "intent"  # the send-after-write guarantee
        assert journal.order("A").status == "new"  # the batch sees its own writes
    assert other.order("A").status == "new" and other.order("A").venue_order_id == "v1"
    assert [leg.client_order_id for leg in other.legs_of("A")] == ["A-stop"]
    assert other.order("A").info == {"initial_stop": 95.0, "confidence": None}


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
