"""Kill the real live process with SIGKILL at random moments, restart it, and check what a trader
relies on after every run (``docs/live.md``, "Restarts").

A trial is a real ``python run.py live`` process (``momentum_breakout`` on AAPL/JPM/XOM with the live
tests' fast settings, ``tests.live.harness``) against the local Alpaca server. Bars are pushed one at a
time; at random moments of every kind in :data:`KILL_KINDS` the process is killed from outside (or by
the test server at a chosen request), bars may arrive while it is down or while its successor
reconciles, and it is restarted, until the bars run out. Then :func:`check_invariants`:

- no client order id POSTed twice: the broker never takes one twice, and here, where no request
  times out, a resend it refuses as a duplicate would mean the journal lost track of a sent order;
- the journal equals the broker: every broker order (bracket legs included) is in the journal with its
  status and filled quantity, every journaled order that was sent is at the broker, and nothing is left
  in ``intent``; each order's journaled fills add up to its filled quantity;
- the broker was never short (the strategy is long-only), and its positions equal the net of the
  journal's fills and the book the last bar recorded;
- the orders equal the backtest's on the same bars whenever every restart had at most
  ``live.max_catchup_bars`` bars left to decide (bars that arrived while it was down, or the bar it
  died deciding); with more, the live plan rightly differs (it trades late bars late).

``tests/live/test_crash_recovery.py`` runs a few seeded trials in CI; ``benchmarks/crash_soak.py`` runs
hundreds and prints the totals.
"""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from brokers.alpaca.local_server import AlpacaTestServer
from brokers.journal import Journal
from tests.live.harness import ROOT, STRATEGY_NAME, Deployment, processed_bar, wait_for

NAME = f"t-{STRATEGY_NAME}"  # the harness config's order_id_prefix + strategy: the journal's state key
MAX_CATCHUP_BARS = 1  # the harness config's live.max_catchup_bars

# mid_bar: at a random moment after a bar is pushed (its fills arriving, the bar being decided, its
# orders going out); between_bars: once the bar is decided and saved; post_before / post_after: at an
# order's POST, before the broker takes it / after it did, before the answer; after_cancel: once the
# broker took a cancel (an exit's stop); crash_hook: the broker's checkpoint set to kill by
# tests.live.crash_child (journal written, order not sent; sent, the journal not updated; or reading the
# broker at start); during_restart: at a random
# moment of the start-up;
# during_reconcile: while the restarted process reads the broker's orders.
KILL_KINDS = ("mid_bar", "between_bars", "post_before", "post_after", "after_cancel", "crash_hook",
              "during_restart", "during_reconcile")


class LiveProcess:
    """One ``python run.py live`` process, its output in ``log_path``; ``crash`` (``point:n``): started
    through ``tests.live.crash_child``, which sets the broker's checkpoint to kill it there."""

    def __init__(self, deployment: Deployment, log_path: Path, env: dict, crash: str | None = None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        entry = ["-m", "tests.live.crash_child", crash] if crash else ["run.py"]
        self.popen = subprocess.Popen([sys.executable, *entry, "live", "--config", str(deployment.config_path)],
                                      cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> bool:
        """SIGKILL (from any thread); True when it was still running."""
        if not self.alive:
            return False
        try:
            os.kill(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float = 60.0) -> int:
        code = self.popen.wait(timeout)
        self._log.close()
        return code

    def output(self, last: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-last:]


def live_env(server: AlpacaTestServer) -> dict:
    return {**os.environ, "APCA_API_KEY_ID": server.key_id, "APCA_API_SECRET_KEY": server.secret_key,
            "PYTHONPATH": str(ROOT)}


def wait_ready(server: AlpacaTestServer, process: LiveProcess, timeout: float = 90.0) -> bool:
    """Until the process listens to trade updates and has subscribed to bars (it does so once it has
    reconciled with the broker); False if it died first."""
    wait_for(lambda: server.connected() == (1, 1) or not process.alive, timeout=timeout,
             what="the live process to be ready")
    return process.alive


def wait_gone(server: AlpacaTestServer, process: LiveProcess) -> int:
    code = process.wait()
    wait_for(lambda: server.connected() == (0, 0), what="the dead process's sockets to close")
    return code


def last_decided(deployment: Deployment):
    """The last bar the live process saved its state after (``pd.Timestamp.min`` before the first)."""
    return processed_bar(deployment.journal_url, NAME) or pd.Timestamp.min


def wait_decided(deployment: Deployment, process: LiveProcess, when, timeout: float = 30.0) -> bool:
    """Until the process saved its state after the bar of ``when``; False if it died first."""
    wait_for(lambda: not process.alive or last_decided(deployment) >= when, timeout=timeout,
             what=f"the live process to decide the bar of {when}")
    return process.alive and last_decided(deployment) >= when


def bar_time(group) -> pd.Timestamp:
    return max(bar.datetime for bar in group.values())


class ScriptedRun:
    """One deployment driven step by step (the deterministic restart tests): start the live process,
    push bars, kill it, push bars while it is down, restart it, finish and check."""

    def __init__(self, server: AlpacaTestServer, tmp: Path, **deployment):
        self.server, self.tmp = server, Path(tmp)
        self.deployment = Deployment(server, self.tmp, **deployment)
        self.bars = list(self.deployment.live)
        self.next = 0  # the next bar to push
        self.process: LiveProcess | None = None
        self.starts = 0

    def __enter__(self) -> "ScriptedRun":
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:  # a failed step leaves no live process behind
            self.process.kill()

    def start(self, crash: str | None = None) -> None:
        """A new live process (``crash``: the broker's test hook, ``point:n``), ready."""
        self.starts += 1
        self.process = LiveProcess(self.deployment, self.tmp / f"process-{self.starts}.log",
                                   live_env(self.server), crash)
        assert wait_ready(self.server, self.process), self.process.output()

    def push(self, until: int | None = None, *, may_die: bool = False) -> None:
        """Push bars up to the one numbered ``until`` (0: the first live bar; None: all), each once it is
        decided; with ``may_die`` stop quietly where the process died (a crash hook)."""
        last = len(self.bars) - 1 if until is None else until
        while self.next <= last:
            group = self.bars[self.next]
            self.next += 1
            self.server.push(group)
            if not wait_decided(self.deployment, self.process, bar_time(group)):
                assert may_die, self.process.output()
                return

    def kill(self) -> None:
        self.process.kill()
        self.gone()

    def gone(self) -> None:
        """The process is dead (killed): wait until its sockets are closed."""
        assert wait_gone(self.server, self.process) == -signal.SIGKILL, self.process.output()

    def push_while_down(self) -> None:
        self.server.push(self.bars[self.next], settle_seconds=0.0)
        self.next += 1

    def catch_up(self) -> None:
        """Until the restarted process decided every bar pushed so far."""
        assert wait_decided(self.deployment, self.process, bar_time(self.bars[self.next - 1]), timeout=60), \
            self.process.output()

    def finish(self) -> list[str]:
        """Push the remaining bars, let a sync pass, stop the process (SIGTERM); the failed checks."""
        self.push()
        time.sleep(1.2)  # a sync: the last trade updates are in the journal
        self.process.popen.send_signal(signal.SIGTERM)
        assert self.process.wait() == 0, self.process.output()
        return check_invariants(self.server, self.deployment, compare_with_backtest=True)

    def saved_state(self) -> dict:
        journal = Journal(self.deployment.journal_url)
        try:
            return journal.load_state(NAME)[1]
        finally:
            journal.close()


# ---- the checks ------------------------------------------------------------------------------------
def check_invariants(server: AlpacaTestServer, deployment: Deployment, *, compare_with_backtest: bool) -> list[str]:
    """What must hold after any sequence of kills and restarts (module doc); the failures, in words."""
    failures = []
    taken = sorted(cid for cid, n in collections.Counter(server.accepted).items() if n > 1)
    if taken:
        failures.append(f"the broker took these ids more than once: {taken}")
    # a resend refused as a duplicate creates no order, but without a timed-out request (never here)
    # it means the journal did not know the order was sent
    resent = sorted(cid for cid, n in collections.Counter(server.submissions).items() if n > 1)
    if resent:
        failures.append(f"POSTed again after the broker took them (refused as duplicates): {resent}")
    if server.shorts:
        failures.append(f"the broker went short: {server.shorts}")
    journal = Journal(deployment.journal_url)
    try:
        rows = journal.orders()
        fills = journal.fills()
        book = _last_book(journal)
    finally:
        journal.close()
    at_broker = server.engine.orders
    by_venue_id = {row.venue_order_id: row for row in rows if row.venue_order_id}
    for order in at_broker.values():
        row = by_venue_id.get(order.id)
        if row is None:
            failures.append(f"broker order {order.client_order_id} ({order.status}) is not in the journal")
        elif row.status != order.status or abs(row.filled_qty - order.filled_qty) > 1e-9:
            failures.append(f"{row.client_order_id}: journal {row.status} {row.filled_qty:g} filled, broker "
                            f"{order.status} {order.filled_qty:g}")
    filled_by_order = collections.defaultdict(float)
    net = collections.defaultdict(float)
    for fill in fills:
        filled_by_order[fill["client_order_id"]] += fill["qty"]
        net[fill["symbol"]] += fill["qty"] if fill["side"] == "buy" else -fill["qty"]
    for row in rows:
        if row.status == "intent":
            failures.append(f"{row.client_order_id} left in intent")
        if row.venue_order_id is None:
            if row.client_order_id in server.engine.by_client_id:
                failures.append(f"{row.client_order_id} is at the broker, the journal has no broker id for it")
        elif row.venue_order_id not in at_broker:
            failures.append(f"{row.client_order_id} ({row.status}) is in the journal, not at the broker")
        if abs(filled_by_order[row.client_order_id] - row.filled_qty) > 1e-9:
            failures.append(f"{row.client_order_id}: fills add up to {filled_by_order[row.client_order_id]:g}, "
                            f"the order says {row.filled_qty:g} filled")
    held = server.positions()
    fills_net = {s: q for s, q in net.items() if abs(q) > 1e-9}
    if held != fills_net:
        failures.append(f"broker positions {held}, the journal's fills add up to {fills_net}")
    if held != book:
        failures.append(f"broker positions {held}, the book after the last bar {book}")
    if compare_with_backtest:
        failures += _compare_with_backtest(deployment, rows)
    return failures


def _last_book(journal: Journal) -> dict[str, float]:
    rows = journal.table("positions")
    if not rows:
        return {}
    last = max(r["bar_datetime"] for r in journal.table("equity"))
    return {r["symbol"]: r["qty"] for r in rows if r["bar_datetime"] == last and r["qty"]}


def _compare_with_backtest(deployment: Deployment, rows) -> list[str]:
    """The live orders (the backtest's records never see the orders of its very last bar: they are
    notified on the bar after) against the backtest's on the same bars."""
    key = ["datetime", "symbol", "side", "size"]
    backtest = deployment.backtest_orders()[key]
    last = max(bar_time(group) for group in deployment.live)
    live = pd.DataFrame([(r.bar_datetime, r.symbol, r.side, r.qty) for r in rows
                         if r.bar_datetime is not None and r.bar_datetime < last], columns=key)
    merged = live.assign(n=1).merge(backtest.assign(n=1), on=key, how="outer", suffixes=("_live", "_backtest"))
    differ = merged[merged["n_live"].isna() | merged["n_backtest"].isna()]
    if differ.empty and len(live) == len(backtest):
        return []
    lines = [f"{r.datetime} {r.symbol} {r.side} {r.size:g}: {'live only' if pd.isna(r.n_backtest) else 'backtest only'}"
             for r in differ.sort_values(key).itertuples()]
    return [f"orders differ from the backtest ({len(live)} live, {len(backtest)} backtest): " + "; ".join(lines)]


# ---- a randomized trial ------------------------------------------------------------------------------
@dataclass
class TrialResult:
    seed: int
    kills: list[str] = field(default_factory=list)
    restarts: int = 0
    bars_while_down: int = 0
    compared_with_backtest: bool = True
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


class CrashTrial:
    """One seeded trial (module doc). ``kill_rate``: the chance that a bar brings a kill;
    ``max_kills``: at most this many kills a trial; ``live_bars``: bars pushed after the warm-up."""

    def __init__(self, tmp: Path, seed: int, *, live_bars: int = 30, kill_rate: float = 0.12, max_kills: int = 5,
                 strategy_extra: str = "stop_pct = 0.005", journal_url: str | None = None):
        self.tmp, self.seed = Path(tmp), seed
        self.journal_url = journal_url  # None: the deployment's SQLite file
        self.rng = random.Random(seed)
        self.live_bars, self.kill_rate, self.max_kills = live_bars, kill_rate, max_kills
        self.strategy_extra = strategy_extra  # tight stops: stop legs fill, while up and while down
        self.result = TrialResult(seed)
        self.server: AlpacaTestServer | None = None
        self.deployment: Deployment | None = None
        self.process: LiveProcess | None = None
        self.pending: list = []
        self.pushed: list = []
        self._starts = 0
        self._crash_hook: str | None = None
        self._timer: threading.Timer | None = None

    def run(self) -> TrialResult:
        started = time.monotonic()
        try:
            with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server:
                self.server = server
                self.deployment = Deployment(server, self.tmp, live=self.live_bars,
                                             strategy_extra=self.strategy_extra, journal_url=self.journal_url)
                self.pending = list(self.deployment.live)
                self._drive()
                if not self.result.failures:
                    self.result.failures += check_invariants(
                        server, self.deployment, compare_with_backtest=self.result.compared_with_backtest)
        finally:
            if self.process is not None:
                self.process.kill()
            self.result.seconds = time.monotonic() - started
        return self.result

    # ---- driving --------------------------------------------------------------------------------
    def _drive(self) -> None:
        self._start()
        while True:
            if not self.process.alive:
                if not self._restart():
                    return
                continue
            if not self.pending:
                break
            self._next_bar()
        if not self._settle():
            return
        self.process.popen.send_signal(signal.SIGTERM)
        code = self.process.wait()
        if code != 0:
            self.result.failures.append(f"the last process ended with {code}: {self.process.output()}")

    def _next_bar(self) -> None:
        kind = None
        if len(self.result.kills) < self.max_kills and self.rng.random() < self.kill_rate:
            kind = self.rng.choice(("mid_bar", "mid_bar", "between_bars", "post_before", "post_after",
                                    "after_cancel"))
            self._arm(kind)
        group = self.pending.pop(0)
        self.server.push(group)
        self.pushed.append(bar_time(group))
        if kind == "mid_bar":
            time.sleep(self.rng.uniform(0.0, 0.15))
            self._kill(kind)
        try:
            decided = wait_decided(self.deployment, self.process, bar_time(group))
        except AssertionError:
            self.result.failures.append(f"stuck at the bar of {bar_time(group)}: {self.process.output()}")
            self.process.kill()
            self.pending = []
            return
        if kind == "between_bars" and decided:
            self._kill(kind)

    def _arm(self, kind: str) -> None:
        """Kill the process at the next request of this kind (the test server runs the kill)."""
        process = self.process
        if kind in ("post_before", "post_after"):
            self.server.on_request("POST", "/v2/orders", lambda: self._kill(kind, process) and kind == "post_before",
                                   when=kind.removeprefix("post_"))
        elif kind == "after_cancel":
            self.server.on_request("DELETE", "/v2/orders/", lambda: self._kill(kind, process) and False)

    def _kill(self, kind: str, process: LiveProcess | None = None) -> bool:
        process = process or self.process
        if process is not self.process or not process.kill():
            return False
        self.result.kills.append(kind)
        return True

    def _start(self) -> None:
        crash = None
        if len(self.result.kills) < self.max_kills and self.rng.random() < 0.2:
            point = self.rng.choice(("after_intent", "after_submit", "reconcile"))
            crash = f"{point}:{1 if point == 'reconcile' else self.rng.randint(1, 4)}"
        self._starts += 1
        self.process = LiveProcess(self.deployment, self.tmp / f"process-{self._starts}.log",
                                   live_env(self.server), crash)
        self._crash_hook = crash

    def _restart(self) -> bool:
        """The process died: check how, let bars arrive while it is down, start the next one (which may
        be killed in its start-up or reconciliation, or see a bar arrive while it reconciles)."""
        code = wait_gone(self.server, self.process)
        self.server.clear_hooks()
        if code != -signal.SIGKILL:
            self.result.failures.append(f"the process ended with {code} without being killed: "
                                        f"{self.process.output()}")
            return False
        if self._crash_hook and "test hook" in self.process.output():  # it killed itself
            self.result.kills.append("crash_hook")
        self.result.restarts += 1
        # bars that arrive while it is down or reconciling: mostly within what a restart catches up on
        # (so the trial still compares with the backtest), sometimes more
        undecided = sum(1 for when in self.pushed if when > last_decided(self.deployment))
        room = max(0, MAX_CATCHUP_BARS - undecided)
        arriving = self.rng.randint(0, room) if self.rng.random() < 0.85 else room + self.rng.randint(1, 2)
        arriving = min(arriving, len(self.pending))
        into_reconcile = self.pending[arriving - 1] if arriving and self.rng.random() < 0.35 else None
        down = arriving - (into_reconcile is not None)
        for _ in range(down):
            group = self.pending.pop(0)
            self.server.push(group, settle_seconds=0.0)
            self.pushed.append(bar_time(group))
        self.result.bars_while_down += down
        during = None
        if len(self.result.kills) < self.max_kills and self.rng.random() < 0.2:
            during = self.rng.choice(("during_restart", "during_reconcile"))
        self._start()
        process = self.process
        released = []
        if into_reconcile is not None:  # a bar (and its fills) arrives while the new process reads the broker
            self.pending.pop(0)

            def release():
                released.append(True)
                self.server.push(into_reconcile)
                self.pushed.append(bar_time(into_reconcile))
                self.result.bars_while_down += 1

            self.server.on_request("GET", "/v2/positions", release)
        if undecided + arriving > MAX_CATCHUP_BARS:
            self.result.compared_with_backtest = False
        if during == "during_reconcile":
            self.server.on_request("GET", "/v2/orders", lambda: self._kill(during, process) and False)
        elif during == "during_restart":
            self._timer = threading.Timer(self.rng.uniform(0.0, 4.0), lambda: self._kill(during, process))
            self._timer.daemon = True
            self._timer.start()
        try:
            ready = wait_ready(self.server, process)
        except AssertionError:
            self.result.failures.append(f"the restarted process never got ready: {process.output()}")
            return False
        if into_reconcile is not None and not released:  # it died before reading positions: the bar waits
            self.server.clear_hooks()
            self.pending.insert(0, into_reconcile)
        if not ready:
            return True  # killed in its start-up: restarted again
        try:
            if self.pushed:
                wait_decided(self.deployment, process, self.pushed[-1], timeout=60)
        except AssertionError:
            self.result.failures.append(f"the restarted process did not catch up: {process.output()}")
            return False
        return True

    def _settle(self) -> bool:
        """Let the last process take in the last updates and sync once before it is stopped."""
        time.sleep(1.2)
        if self._timer is not None:
            self._timer.cancel()
        if not self.process.alive:
            return self._restart() and self._settle()
        return True
