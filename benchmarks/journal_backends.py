#!/usr/bin/env python
"""The journal's write cost on SQLite and on PostgreSQL: what the live loop pays per order and per bar.

Operations timed (each ``--repeats`` times, on a new journal per backend):
- ``intent``: ``record_intents`` of an entry and its two bracket legs, committed at once (the order
  waits for it before it can be sent: the part of bar-to-order latency the journal owns);
- ``intent in a batch``: the same inside the broker's batch (a commit of the batch's transaction);
- ``bar``: one broker loop's batch: 10 order updates, a fill, the bar's equity and 10 positions, one
  commit at the end;
- ``read``: ``order(client_order_id)`` outside a batch (a pooled connection; PostgreSQL pre-pings it).

SQLite: a file in a temporary folder, WAL, ``synchronous=NORMAL``, manual checkpoints (as ``run.py live``
opens it). PostgreSQL: a fresh database on the server of ``--postgres URL`` (an admin URL; default
``$TRADER_TEST_POSTGRES_URL``, e.g. ``.ci/postgres.sh start /tmp/pg 54329``), dropped at the end.
Usage: ``python benchmarks/journal_backends.py [--repeats 300] [--postgres URL]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from brokers.journal import Journal, sqlite_url  # noqa: E402

T = dt.datetime(2024, 1, 2, 9, 31)


def rows(n: int) -> list[dict]:
    cid = f"o{n}"
    base = dict(symbol="AAPL", side="buy", qty=10, order_type="market", time_in_force="day", bar_datetime=T,
                reason="breakout", info={"initial_stop": 95.0}, parent_client_order_id=None, leg=None)
    return [{**base, "client_order_id": cid},
            {**base, "client_order_id": f"{cid}-sl", "side": "sell", "order_type": "stop", "stop_price": 95.0,
             "parent_client_order_id": cid, "leg": "stop_loss"},
            {**base, "client_order_id": f"{cid}-tp", "side": "sell", "order_type": "limit", "limit_price": 110.0,
             "parent_client_order_id": cid, "leg": "take_profit"}]


def measure(journal: Journal, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"intent": [], "intent in a batch": [], "bar": [], "read": []}
    for n in range(repeats):
        started = time.perf_counter()
        journal.record_intents(rows(n))
        times["intent"].append(time.perf_counter() - started)
        with journal.batch():
            started = time.perf_counter()
            journal.record_intents(rows(repeats + n))
            times["intent in a batch"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with journal.batch():
            for k in range(10):
                journal.update_order(f"o{max(0, n - k)}", status="new", venue_order_id=f"v{n}-{k}")
            journal.record_fill(execution_id=f"e{n}", client_order_id=f"o{n}", symbol="AAPL", side="buy", qty=10,
                                price=100.0, commission=0.1, filled_datetime=T, position_qty=10)
            journal.record_bar(T + dt.timedelta(minutes=n), equity_value=100_000.0, cash=90_000.0,
                               holdings=[(f"S{k}", 10.0, 100.0, 101.0) for k in range(10)])
        times["bar"].append(time.perf_counter() - started)
        started = time.perf_counter()
        journal.order(f"o{n}")
        times["read"].append(time.perf_counter() - started)
        journal.checkpoint()
    return times


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"median {statistics.median(ms):6.3f} ms   p99 {p99:6.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("TRADER_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(sqlite_url(Path(folder) / "journal.sqlite"), manual_checkpoints=True)
        results["sqlite"] = measure(journal, args.repeats)
        journal.close()
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            journal = Journal(admin.url.set(database=name).render_as_string(hide_password=False))
            results["postgresql"] = measure(journal, args.repeats)
            journal.close()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        print("no PostgreSQL server (--postgres or TRADER_TEST_POSTGRES_URL): SQLite only")
    for backend, times in results.items():
        print(f"{backend} ({args.repeats} repeats)")
        for operation, values in times.items():
            print(f"  {operation:<18} {summary(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
