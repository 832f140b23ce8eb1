"""A bar's predictions go into the journal in one executemany, in one transaction: on a SQLite file
(the default journal) and through another SQLAlchemy URL (an in-memory database)."""
import datetime as dt

import pytest
from sqlalchemy import event

from brokers.journal import Journal, sqlite_url

T = dt.datetime(2024, 1, 2, 16, 0)
SYMBOLS = [f"S{n:02d}" for n in range(50)]


def values(n: int) -> dict:
    return {"confidence": 0.5 + n / 1000, "expected_return": n / 10_000, "regime": n % 3, "upper": float("nan")}


@pytest.fixture(params=["file", "memory"])
def journal(request, tmp_path):
    url = sqlite_url(tmp_path / "journal.sqlite") if request.param == "file" else "sqlite://"
    j = Journal(url)
    yield j
    j.close()


def inserts(journal: Journal) -> list[tuple[bool, int]]:
    """(executemany, rows) of each INSERT INTO predictions the journal's engine runs from now on."""
    seen = []

    @event.listens_for(journal.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO predictions"):
            seen.append((executemany, len(parameters) if executemany else 1))

    return seen


def test_a_bars_predictions_round_trip_in_one_executemany(journal):
    seen = inserts(journal)
    journal.record_predictions(T, "ensemble@abc", [(s, values(n)) for n, s in enumerate(SYMBOLS)])
    journal.record_predictions(T + dt.timedelta(days=1), "ensemble@abc", [])  # nothing predicted: no write
    assert seen == [(True, 50)]
    rows = journal.table("predictions")
    assert [r["symbol"] for r in rows] == SYMBOLS
    assert {(r["bar_datetime"], r["model_id"]) for r in rows} == {(T, "ensemble@abc")}
    assert len({r["recorded_at"] for r in rows}) == 1
    assert rows[7]["values"] == {**values(7), "upper": None}  # NaN is stored as null


def test_a_bars_predictions_commit_together_with_the_batch(tmp_path):
    path = sqlite_url(tmp_path / "journal.sqlite")
    journal, reader = Journal(path), Journal(path)
    with journal.batch():
        journal.record_bar(T, equity_value=100_000.0, cash=100_000.0, holdings=[])
        journal.record_predictions(T, "ensemble@abc", [(s, values(n)) for n, s in enumerate(SYMBOLS)])
        assert reader.table("predictions") == []  # nothing of the bar before its batch commits
    assert len(reader.table("predictions")) == 50 and len(reader.table("equity")) == 1
    journal.close()
    reader.close()
