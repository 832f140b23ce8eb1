#!/usr/bin/env python
"""The dashboard's answer times on a big live journal: every page and API answer, against the goal of
100 ms (the issue) on a 50-symbol journal of a year of minute bars.

The journal (SQLite, built through :class:`brokers.journal.Journal` as a live session writes it, one
``batch()`` per trading day): ``--days`` regular sessions (252: a year) of 390 minute bars each; per
bar an equity row, the bars of all ``--symbols`` symbols (random walks), the ~``--held`` positions held
(they change every day) and a prediction (``confidence``, ``expected_return``) of every symbol every
``--predict-every`` bars (1: every bar); 4-13 bracket entries a day (an entry and its ``stop_loss`` and
``take_profit`` legs, as ``brokers.live.outbox`` journals them: 12-39 orders a day) with their fills,
the exits of as many positions (a leg filled, the other canceled), a few rejected entries with their
``status_reason``, events, alerts, controls and the session's status (``publish_status``: the gates,
the model's health, the PSI of 240 features). It is built once in a process of its own and kept under
``--work DIR`` (default: a folder in the system temp dir), named by its parameters (``--rebuild``: build
it again).

Then, in this process: ``dashboard.sources.LiveJournal`` and ``dashboard.app.create_app`` with the
default config, called in-process (``fastapi.testclient``). The first answers read the whole journal
once (equity, bars, fills): their times are printed apart. Then every page and API answer ``--repeats``
times each (round robin), while with ``--writer`` a thread of this process appends a minute bar per
second as a live session would (equity, bars, positions, predictions, status; removed again at the end
so the kept journal stays as built). Printed: median, p95 and max per answer, whether it met the goal,
and the process's peak RSS.

Usage: ``python benchmarks/dashboard_speed.py [--days 252] [--symbols 50] [--writer] [--work DIR]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from brokers.journal import BARS, EQUITY, POSITIONS, PREDICTIONS, Journal, sqlite_url  # noqa: E402

GOAL_MS = 100.0
BARS_PER_DAY = 390
FIRST_DAY = dt.date(2025, 1, 2)
SESSION = "bench-ml"
MODEL = "ensemble-20250101"
N_FEATURES = 240
PAGES = ["/", "/positions", "/orders", "/risk", "/models", "/chart", "/logs"]
VERSION = 2  # of the journal's contents: a change here builds a new one


def trading_days(n: int) -> list[dt.date]:
    days, day = [], FIRST_DAY
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def minutes(day: dt.date) -> list[dt.datetime]:
    start = dt.datetime.combine(day, dt.time(9, 30))
    return [start + dt.timedelta(minutes=i) for i in range(BARS_PER_DAY)]


def utc(bar_datetime: dt.datetime, seconds: float = 0.5) -> dt.datetime:
    """The wall time (UTC) a bar is journaled at: exchange time + 5 h (EST), a moment after its close."""
    return bar_datetime + dt.timedelta(hours=5, minutes=1, seconds=seconds)


def symbols_of(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


def status_dict(rng, symbols, bar_datetime, equity, cash, day_start, held_value) -> dict:
    """A session status as ``ops.status.JournalStatus`` publishes it (a BarSnapshot's fields and more)."""
    return {"session": SESSION, "symbols": symbols, "started_at": time.time() - 3600, "trading": True,
            "reconnects": {"market_data": 1}, "bar_datetime": bar_datetime.isoformat(), "wall_time": time.time(),
            "equity": equity, "cash": cash, "daily_pnl": equity - day_start, "exposure": held_value / equity,
            "open_positions": 20, "open_orders": 40, "bar_to_order_seconds": 0.012, "feature_seconds": 0.004,
            "entries_halted": None, "kill_switch_tripped": False, "daily_loss_limit_reached": False,
            "risk_score": float(rng.uniform(0.2, 0.6)), "confidences": [float(c) for c in rng.uniform(0.4, 0.9, 50)],
            "calibration_error": float(rng.uniform(0.02, 0.08)),
            "feature_drift_psi": {f"feature_{i:03d}": float(rng.gamma(1.0, 0.05)) for i in range(N_FEATURES)},
            "model_id": MODEL, "model_trained_at": "2025-01-01T22:00:00", "entries_halted_by": None,
            "entries_paused": None, "paused": False, "state": "trading", "updated": time.time(),
            # the ML strategy's risk_figures()
            "kill_switch": {"tripped": False, "limit": 0.2, "peak_equity": equity * 1.03, "drawdown": 0.03,
                            "tripped_at": None, "reason": None},
            "daily_loss": {"blocked": False, "limit": 0.03, "day": bar_datetime.date().isoformat(),
                           "day_start_equity": day_start, "day_loss": max(0.0, 1 - equity / day_start), "reason": None},
            "risk_components": {"volatility": 0.3, "liquidity": 0.1, "correlation": 0.4, "drawdown": 0.2}}


# ---- the journal ----------------------------------------------------------------------------------
class Book:
    """The simulated session: prices, cash, positions and their bracket orders."""

    def __init__(self, n_symbols: int, held: int, seed: int = 7):
        self.rng = np.random.default_rng(seed)
        self.symbols = symbols_of(n_symbols)
        self.close = self.rng.uniform(20, 400, n_symbols)
        self.cash = 1_000_000.0
        self.held_target = held
        self.positions: dict[int, dict] = {}  # symbol index -> qty, avg, legs (stop cid, target cid), entered
        self.n_orders = self.n_fills = 0

    def day_paths(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A day's open/high/low/close/volume, (BARS_PER_DAY, n_symbols) each: a random walk."""
        n = len(self.symbols)
        steps = self.rng.normal(0.0, 0.0008, (BARS_PER_DAY, n))
        close = self.close * np.exp(np.cumsum(steps, axis=0))
        opened = np.vstack([self.close, close[:-1]])
        wick = np.abs(self.rng.normal(0.0, 0.0004, (2, BARS_PER_DAY, n)))
        high = np.maximum(opened, close) * (1 + wick[0])
        low = np.minimum(opened, close) * (1 - wick[1])
        volume = self.rng.integers(100, 20_000, (BARS_PER_DAY, n)).astype(float)
        self.close = close[-1]
        return opened, high, low, close, volume

    def cid(self, when: dt.datetime, symbol: str) -> str:
        self.n_orders += 1
        return f"bench-{when:%Y%m%d%H%M%S}-{symbol}-{self.n_orders}"

    def fill(self, journal: Journal, cid: str, symbol: str, side: str, qty: float, price: float,
             when: dt.datetime) -> None:
        self.n_fills += 1
        held = self.positions.get(self.symbols.index(symbol), {}).get("qty", 0.0)
        journal.record_fill(execution_id=f"x{self.n_fills}", client_order_id=cid, symbol=symbol, side=side, qty=qty,
                            price=price, commission=qty * price * 1e-4, filled_datetime=when,
                            position_qty=held + qty if side == "buy" else held - qty)
        journal.update_order(cid, status="filled", filled_qty=qty, filled_avg_price=price, updated_at=utc(when, 2))

    def plan(self) -> dict[int, list]:
        """The day's trades: bar index -> [("exit", symbol index) | ("entry", symbol index, rejected)]."""
        rng = self.rng
        held = list(self.positions)
        n_entries = int(rng.integers(4, 14))
        n_exits = min(len(held), max(0, n_entries + len(held) - self.held_target))
        exits = rng.choice(held, n_exits, replace=False) if n_exits else []
        free = [i for i in range(len(self.symbols)) if i not in self.positions]
        entries = rng.choice(free, min(n_entries, len(free)), replace=False)
        plan: dict[int, list] = {}
        for i in exits:
            plan.setdefault(int(rng.integers(1, BARS_PER_DAY // 2)), []).append(("exit", int(i)))
        for i in entries:
            plan.setdefault(int(rng.integers(BARS_PER_DAY // 2, BARS_PER_DAY - 1)), []).append(
                ("entry", int(i), rng.random() < 0.08))
        return plan

    def trade(self, journal: Journal, action: tuple, when: dt.datetime, close: np.ndarray) -> list[tuple]:
        """Journal one planned trade at bar ``when``; returns the events and alerts it raises."""
        raised = []
        i = action[1]
        symbol, price = self.symbols[i], float(close[i])
        if action[0] == "exit":
            p = self.positions.pop(i)
            stop_cid, target_cid = p["legs"]
            won = price > p["avg"]
            filled, canceled = (target_cid, stop_cid) if won else (stop_cid, target_cid)
            journal.update_order(filled, status="new", venue_order_id=f"v-{filled}", updated_at=utc(when, 1))
            self.fill(journal, filled, symbol, "sell", p["qty"], price, when)
            journal.update_order(canceled, status="canceled", updated_at=utc(when, 2))
            self.cash += p["qty"] * price
            return raised
        rejected = action[2]
        qty = float(max(1, int(20_000 / price)))
        stop, target = round(price * 0.97, 2), round(price * 1.05, 2)
        entry = self.cid(when, symbol)
        info = {"reason": "ml_entry", "confidence": float(self.rng.uniform(0.55, 0.9)),
                "expected_return": float(self.rng.uniform(0.002, 0.02)), "initial_stop": stop, "target": target}
        base = dict(symbol=symbol, qty=qty, time_in_force="gtc", bar_datetime=when, reason="ml_entry", info=info,
                    created_at=utc(when), updated_at=utc(when))
        legs = (f"{entry}-sl", f"{entry}-tp")
        journal.record_intents([
            {**base, "client_order_id": entry, "parent_client_order_id": None, "leg": None, "side": "buy",
             "order_type": "market", "limit_price": None, "stop_price": None},
            {**base, "client_order_id": legs[0], "parent_client_order_id": entry, "leg": "stop_loss", "side": "sell",
             "order_type": "stop", "limit_price": None, "stop_price": stop},
            {**base, "client_order_id": legs[1], "parent_client_order_id": entry, "leg": "take_profit",
             "side": "sell", "order_type": "limit", "limit_price": target, "stop_price": None}])
        if rejected:
            reason = "insufficient buying power: 12345.67 needed, 9876.54 available"
            for cid in (entry, *legs):
                journal.update_order(cid, status="rejected", status_reason=reason, updated_at=utc(when, 1))
            raised.append(("alert", "order_rejected", f"{symbol} entry rejected: {reason}"))
            return raised
        journal.update_order(entry, status="new", venue_order_id=f"v-{entry}", updated_at=utc(when, 0.7))
        fill_price = price * (1 + 5e-4)
        self.fill(journal, entry, symbol, "buy", qty, fill_price, when)
        for cid in legs:
            journal.update_order(cid, status="held", venue_order_id=f"v-{cid}", updated_at=utc(when, 2))
        self.cash -= qty * fill_price
        self.positions[i] = {"qty": qty, "avg": fill_price, "legs": legs}
        return raised

    def day(self, journal: Journal, day: dt.date, predict_every: int, n_bar: int) -> tuple[list, int]:
        """One trading day in one batch; returns (alerts to write after it, bars written)."""
        opened, high, low, close, volume = self.day_paths()
        plan = self.plan()
        raised = []
        equity = self.cash
        for k, when in enumerate(minutes(day)):
            for action in plan.get(k, ()):
                raised += self.trade(journal, action, when, close[k])
            holdings = [(self.symbols[i], p["qty"], p["avg"], float(close[k, i])) for i, p in self.positions.items()]
            equity = self.cash + sum(q * m for _, q, _, m in holdings)
            journal.record_bar(when, equity_value=equity, cash=self.cash, holdings=holdings, bars=[
                (s, when, float(opened[k, j]), float(high[k, j]), float(low[k, j]), float(close[k, j]),
                 float(volume[k, j])) for j, s in enumerate(self.symbols)])
            if (n_bar + k) % predict_every == 0:
                conf = self.rng.uniform(0.35, 0.9, len(self.symbols))
                expected = self.rng.normal(0.0, 0.006, len(self.symbols))
                journal.record_predictions(when, MODEL, [
                    (s, {"confidence": float(conf[j]), "expected_return": float(expected[j])})
                    for j, s in enumerate(self.symbols)])
        return raised, BARS_PER_DAY


def journal_path(args) -> Path:
    return Path(args.work) / (f"dashboard-journal-v{VERSION}-{args.symbols}sym-{args.days}d-held{args.held}-"
                              f"pred{args.predict_every}.sqlite")


def build(args) -> None:
    """Build the journal at a temporary name, renamed when done (an interrupted build is never reused)."""
    from tqdm import tqdm

    final = journal_path(args)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    journal = Journal(sqlite_url(partial))
    book = Book(args.symbols, args.held)
    journal.set_meta("model", MODEL)
    journal.set_meta("last_retrain", "2025-01-01")
    days = trading_days(args.days)
    started = time.perf_counter()
    n_bar = 0
    for number, day in enumerate(tqdm(days, desc="building the journal", unit="day")):
        with journal.batch():
            raised, n = book.day(journal, day, args.predict_every, n_bar)
            n_bar += n
            last = dt.datetime.combine(day, dt.time(15, 59))
            journal.record_event("session_day", f"{day}: {len(book.positions)} positions, cash {book.cash:,.0f}")
            if number % 20 == 5:
                journal.record_event("halt", f"{day}: entries halted: stale feed (no bar for 75 s)")
                journal.record_event("resume", f"{day}: entries resumed: the feed is back")
        for _kind, rule, message in raised:  # alerts: a transaction of their own, as the sender's thread writes
            journal.record_alert(SESSION, rule, message[:20], message, delivered=True)
        if number % 15 == 3:
            journal.record_alert(SESSION, "drawdown_warning", "account", f"{day}: drawdown 4.1% (warn at 4%)", True)
        if number % 40 == 7:
            control = journal.request_control("pause", who="dashboard 127.0.0.1")
            journal.resolve_control(control, "applied", "entries paused", last)
            control = journal.request_control("resume", who="dashboard 127.0.0.1")
            journal.resolve_control(control, "applied", "entries resumed", last)
    holdings_value = sum(p["qty"] * book.close[i] for i, p in book.positions.items())
    equity = book.cash + holdings_value
    journal.publish_status(SESSION, status_dict(book.rng, book.symbols, last, equity, book.cash, equity * 0.998,
                                                holdings_value))
    with journal.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    seconds = time.perf_counter() - started
    partial.rename(final)
    Path(f"{partial}-wal").unlink(missing_ok=True)
    Path(f"{partial}-shm").unlink(missing_ok=True)
    counts = {}
    journal = Journal(sqlite_url(final))
    with journal.engine.connect() as conn:
        for table in ("equity", "bars", "positions", "predictions", "orders", "fills", "events", "alerts"):
            counts[table] = conn.exec_driver_sql(f"SELECT max(rowid) FROM {table}").scalar() or 0
    journal.close()
    print(f"built {final} in {seconds:.0f} s ({seconds / len(days):.2f} s a day): "
          f"{final.stat().st_size / 2**30:.2f} GiB; rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()),
          flush=True)


# ---- the live writer --------------------------------------------------------------------------------
class Writer(threading.Thread):
    """Appends one minute bar a second after the journal's last, as a live session does; its rows are
    deleted by :meth:`stop` (the kept journal stays as built)."""

    def __init__(self, path: Path, n_symbols: int, held: int):
        super().__init__(name="live-writer", daemon=True)
        self.journal = Journal(sqlite_url(path), manual_checkpoints=True)
        with self.journal.engine.connect() as conn:
            self.first = conn.execute(EQUITY.select().with_only_columns(EQUITY.c.bar_datetime)
                                      .order_by(EQUITY.c.id.desc()).limit(1)).scalar()
        self.rng = np.random.default_rng(11)
        self.symbols = symbols_of(n_symbols)
        self.close = self.rng.uniform(20, 400, n_symbols)
        self.held = list(range(held))
        self.halt = threading.Event()
        self.written = 0
        self.seconds: list[float] = []

    def run(self) -> None:
        when = self.first
        while not self.halt.wait(1.0):
            when += dt.timedelta(minutes=1)
            started = time.perf_counter()
            self.close *= np.exp(self.rng.normal(0, 0.0008, len(self.close)))
            with self.journal.batch():
                holdings = [(self.symbols[i], 10.0, float(self.close[i]), float(self.close[i])) for i in self.held]
                self.journal.record_bar(when, equity_value=1e6, cash=5e5, holdings=holdings, bars=[
                    (s, when, float(c), float(c) * 1.001, float(c) * 0.999, float(c), 1000.0)
                    for s, c in zip(self.symbols, self.close)])
                self.journal.record_predictions(when, MODEL, [
                    (s, {"confidence": float(self.rng.uniform(0.35, 0.9)), "expected_return": 0.001})
                    for s in self.symbols])
            self.journal.checkpoint()
            self.journal.publish_status(SESSION, status_dict(self.rng, self.symbols, when, 1e6, 5e5, 999_000.0, 5e5))
            self.seconds.append(time.perf_counter() - started)
            self.written += 1

    def stop(self) -> None:
        self.halt.set()
        self.join()
        with self.journal.engine.begin() as conn:
            for table in (EQUITY, BARS, POSITIONS, PREDICTIONS):
                conn.execute(table.delete().where(table.c.bar_datetime > self.first))
        self.journal.close()


# ---- the answers ------------------------------------------------------------------------------------
def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(args, path: Path) -> None:
    from fastapi.testclient import TestClient

    from config import load_config
    from dashboard.app import create_app
    from dashboard.sources import LiveJournal

    symbol = symbols_of(args.symbols)[args.symbols // 2]
    apis = ["/api/overview", "/api/positions", "/api/orders", f"/api/orders?symbol={symbol}", "/api/risk",
            "/api/models", f"/api/chart?symbol={symbol}", "/api/logs?which=events", "/api/controls"]
    endpoints = PAGES + apis
    print(f"peak RSS before the dashboard: {rss_mib():.0f} MiB", flush=True)
    cfg = load_config(None)
    started = time.perf_counter()
    source = LiveJournal(sqlite_url(path), cfg)
    client = TestClient(create_app(source, cfg))  # an error raises here: get() keeps its message
    print(f"opened the journal and built the app: {(time.perf_counter() - started) * 1e3:.0f} ms", flush=True)

    failed: dict[str, str] = {}

    def get(url: str) -> float:
        started = time.perf_counter()
        try:
            response = client.get(url)
            status, text = response.status_code, response.text
        except Exception as exc:  # an answer that raised: the app's error, timed all the same
            status, text = 500, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        if status != 200 and url not in failed:
            failed[url] = f"{status} {text.splitlines()[0][:200] if text else ''}"
            print(f"  {url}: failed: {failed[url]}", flush=True)
        return seconds * 1e3

    print("first answers (the first reads the whole journal once):")
    for url in endpoints:
        print(f"  {url:<28} {get(url):9.1f} ms", flush=True)
    print(f"peak RSS after the first answers: {rss_mib():.0f} MiB", flush=True)
    writer = Writer(path, args.symbols, args.held) if args.writer else None
    if writer is not None:
        writer.start()
        time.sleep(1.5)  # answers with a bar written since the last
    times: dict[str, list[float]] = {url: [] for url in endpoints}
    try:
        for _ in range(args.repeats):
            for url in endpoints:
                times[url].append(get(url))
    finally:
        if writer is not None:
            writer.stop()
        source.close()
    during = (f", while a thread wrote a bar a second ({writer.written} bars, median "
              f"{statistics.median(writer.seconds) * 1e3:.1f} ms each)" if writer is not None and writer.seconds
              else ", no writer")
    print(f"\n{args.repeats} answers each, round robin{during}; goal: {GOAL_MS:.0f} ms")
    print(f"  {'answer':<28} {'median':>8} {'p95':>8} {'max':>8}  goal")
    missed = []
    for url, values in times.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        met = p95 <= GOAL_MS
        if not met:
            missed.append(url)
        print(f"  {url:<28} {statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f}  "
              f"{'met' if met else 'MISSED'} (p95){'; FAILED: ' + failed[url] if url in failed else ''}")
    print(f"peak RSS: {rss_mib():.0f} MiB")
    print("all answers met the goal" if not missed else f"{len(missed)} answers missed the goal: {', '.join(missed)}")
    if failed:
        print(f"{len(failed)} answers failed (an error, not an answer): {', '.join(failed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=252, help="trading days of 390 minute bars (252: a year)")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--held", type=int, default=20, help="positions held at a time (about)")
    parser.add_argument("--predict-every", type=int, default=1, help="a prediction of every symbol every N bars")
    parser.add_argument("--repeats", type=int, default=20, help="answers of each page and API")
    parser.add_argument("--writer", action="store_true", help="a thread appends a minute bar a second meanwhile")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dashboard-speed"),
                        help="where the built journal is kept (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="build the journal again")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the builder's process
    args = parser.parse_args()
    path = journal_path(args)
    if args.build_only:
        build(args)
        return
    if args.rebuild or not path.is_file():
        # in a process of its own: its memory is not this process's peak RSS
        command = [sys.executable, __file__, "--build-only", *sys.argv[1:]]
        subprocess.run([c for c in command if c != "--rebuild"], check=True)
    else:
        print(f"reusing {path} ({path.stat().st_size / 2**30:.2f} GiB; --rebuild to build it again)")
    measure(args, path)


if __name__ == "__main__":
    main()
