"""Helpers for the live tests: the local Alpaca server loaded with sample bars, a config pointing the
live runner at it, and waiting for the runner to reach a bar."""
from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import time
from pathlib import Path

import pandas as pd

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal, sqlite_url
from feeds.live_feed import Bar, bars_of
from feeds.loader import load_universe

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["AAPL", "JPM", "XOM"]
STRATEGY_NAME = "momentum_breakout"


def sample_bars(n: int, symbols=SYMBOLS, start: str = "2014-01-02") -> dict[str, list[Bar]]:
    """``n`` real daily bars per symbol from the sample data, from ``start``."""
    universe = load_universe([ROOT / "data" / "sample" / f"{s}_data.csv" for s in symbols], start=start)
    return {s: bars_of(frame.iloc[:n]) for s, frame in universe.items()}


def restamp(bars: dict[str, list[Bar]], first: dt.datetime, step: dt.timedelta) -> list[dict[str, Bar]]:
    """The bars as consecutive groups stamped ``first``, ``first + step`` ... (one group per row)."""
    n = min(len(v) for v in bars.values())
    return [{s: bars[s][i]._replace(datetime=first + i * step) for s in bars} for i in range(n)]


def live_config_text(server: AlpacaTestServer, state_dir: Path, *, extra: str = "", strategy_extra: str = "",
                     metrics_port: int = 0, reconciliation: bool = False) -> str:
    """The deployment's config; ``reconciliation``: the daily live-versus-replay check after each
    session (a replay in a child process, seconds per session: only the tests of it turn it on)."""
    urls = "\n".join(f'{k} = "{v}"' for k, v in server.urls.items())
    return f"""
[backtest]
strategy = "momentum_breakout"
cash = 100000.0
progress = false

[costs]
commission_bps = 1.0
slippage_bps = 5.0

[momentum_breakout]
breakout_bars = 3
momentum_bars = 2
trend_bars = 3
max_hold_bars = 4
position_weight = 0.2
{strategy_extra}

[risk]
max_position_weight = 0.3

[reconciliation]
enabled = {str(reconciliation).lower()}

[live]
symbols = {SYMBOLS!r}
timeframe = "1Min"
calendar = "24/7"
warmup_bars = 320
max_catchup_bars = 1
bar_complete_seconds = 0.5
stale_after_seconds = 1e9
poll_seconds = 0.05
prewarm_minutes = 0.0
retry_attempts = 3
retry_min_seconds = 0.05
retry_max_seconds = 0.2
request_timeout_seconds = 5.0
order_sync_seconds = 0.5
commission_bps = 1.0
order_id_prefix = "t-"
state_dir = "{state_dir}"
metrics_port = {metrics_port}
{urls}
{extra}
"""


def unreachable_broker_config(tmp_path: Path, *, metrics_port: int = 0) -> Path:
    """A ``run.py live`` config whose Alpaca URLs nobody answers (the start fails fast, after two
    quick retries), no metrics port unless given, the state under ``tmp_path``."""
    config = tmp_path / "live.toml"
    config.write_text(f"""
[live]
symbols = ["AAPL"]
trading_url = "http://127.0.0.1:9"
data_url = "http://127.0.0.1:9"
retry_attempts = 2
retry_min_seconds = 0.01
retry_max_seconds = 0.02
metrics_port = {metrics_port}
state_dir = "{tmp_path / 'state'}"
""")
    return config


def load_server(server: AlpacaTestServer, groups: list[dict[str, Bar]]) -> None:
    for group in groups:
        for symbol, bar in group.items():
            server.add_history(symbol, [bar])


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


_READERS: dict[str, object] = {}  # a server journal's URL -> the engine that polls it


def processed_bar(journal: Path | str, name: str) -> dt.datetime | None:
    """The last bar the runner saved its state after (None before its first), read without writing:
    a reader must not race the live process creating the journal's tables. ``journal``: a SQLite
    file, or a journal's URL (a server's is read through one cached engine per URL)."""
    if isinstance(journal, str) and not journal.startswith("sqlite:///"):
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import OperationalError, ProgrammingError

        engine = _READERS.get(journal) or _READERS.setdefault(journal, create_engine(journal, pool_pre_ping=True))
        try:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT bar_datetime FROM strategy_state WHERE name = :name"),
                                   {"name": name}).first()
        except ProgrammingError:  # not created yet
            return None
        except OperationalError:  # a test cut the connections: the next poll reconnects
            return None
        return pd.Timestamp(row[0]).to_pydatetime() if row else None
    journal_path = Path(journal[len("sqlite:///"):]) if isinstance(journal, str) else journal
    if not journal_path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT bar_datetime FROM strategy_state WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return pd.Timestamp(row[0]).to_pydatetime() if row else None


def now_minute() -> dt.datetime:
    return pd.Timestamp.now(tz="UTC").floor("min").tz_localize(None).to_pydatetime()


class Deployment:
    """One live deployment against the test server: config, journal, runner threads, bar driving."""

    def __init__(self, server: AlpacaTestServer, tmp: Path, *, extra: str = "", strategy_extra: str = "",
                 history: int = 40, live: int = 30, metrics_port: int = 0, journal_url: str | None = None,
                 reconciliation: bool = False):
        """``journal_url``: the journal's database (``[live] journal`` in the config, so a ``run.py live``
        process uses it too); None: the SQLite file ``journal.sqlite`` in the state folder."""
        import datetime as _dt

        self.server, self.tmp = server, tmp
        self.state = tmp / "state"
        self.config_path = tmp / "live.toml"
        if journal_url:
            extra = f'journal = "{journal_url}"\n{extra}'  # the first lines of extra are in [live]
        self.config_path.write_text(live_config_text(server, self.state, extra=extra, strategy_extra=strategy_extra,
                                                     metrics_port=metrics_port, reconciliation=reconciliation))
        bars = sample_bars(history + live)
        # history ends yesterday; live bars are stamped from tomorrow's midnight, so they are never stale
        # and a backtest can start trading exactly at the first one (``backtest.start`` is a date)
        tomorrow = _dt.datetime.combine(now_minute().date() + _dt.timedelta(days=1), _dt.time())
        self.history = restamp({s: b[:history] for s, b in bars.items()}, tomorrow - _dt.timedelta(days=1, hours=2),
                               _dt.timedelta(minutes=1))
        self.live = restamp({s: b[history:] for s, b in bars.items()}, tomorrow, _dt.timedelta(minutes=1))
        load_server(server, self.history)
        self.journal_path = self.state / "journal.sqlite"
        self.journal_url = journal_url or sqlite_url(self.journal_path)
        self.runner = self.thread = None

    @property
    def config(self):
        from config import load_config

        return load_config(self.config_path)

    def start(self, strategy_cls=None, observers=None):
        """``observers``: an ``ops.observer.Observers`` the runner calls (metrics, alerts)."""
        import threading

        from brokers.alpaca.credentials import Credentials
        from engine.live import LiveRunner
        from strategies import get_strategy

        cfg = self.config
        self.journal = Journal(self.journal_url, manual_checkpoints=True)  # as run.py live opens it
        self.runner = LiveRunner(cfg, strategy_cls=strategy_cls or get_strategy(STRATEGY_NAME), symbols=SYMBOLS,
                                 credentials=Credentials(self.server.key_id, self.server.secret_key), paper=True,
                                 journal=self.journal, state_dir=self.state, observers=observers)
        self.thread = threading.Thread(target=self.runner.run, kwargs={"max_sessions": 1}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.connected() == (1, 1), what="the runner's streams")
        return self.runner

    def push(self, groups) -> None:
        """Push bars one timestamp at a time, each once the runner has decided the previous one."""
        for group in groups:
            self.server.push(group)
            when = max(b.datetime for b in group.values())
            wait_for(lambda: (processed_bar(self.journal_url, self.runner.name) or dt.datetime.min) >= when,
                     what=f"the runner to process {when}")

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.journal.close()
        wait_for(lambda: self.server.connected() == (0, 0), what="the streams to close")

    def session_orders(self) -> pd.DataFrame:
        folder = sorted((self.state / "sessions").iterdir())[-1]
        orders = pd.read_csv(folder / "orders.csv", parse_dates=["datetime", "filled_datetime"])
        return orders

    def backtest_orders(self, **overrides) -> pd.DataFrame:
        """The backtest of the same bars, trading from the first live bar (the day the live bars start)."""
        from config import load_config
        from engine.backtest import backtest_cerebro, collect_records

        frames = {}
        for symbol in SYMBOLS:
            rows = [g[symbol] for g in self.history + self.live]
            frames[symbol] = pd.DataFrame([r[1:] for r in rows], columns=list(Bar._fields[1:]),
                                          index=pd.DatetimeIndex([r.datetime for r in rows], name="datetime"))
        start = self.live[0][SYMBOLS[0]].datetime.date()
        cfg = load_config(self.config_path, {"backtest.start": start, **overrides})
        strategy = backtest_cerebro(cfg, frames).run()[0]
        return collect_records(strategy, start).orders
