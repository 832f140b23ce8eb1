#!/usr/bin/env python
"""Live latency: a bar's arrival on the websocket to the order it causes reaching the broker.

A real ``python run.py live`` process trades ``--symbols`` symbols against the local Alpaca-compatible
server (``brokers.alpaca.local_server``): history for the warm-up, then one bar of every symbol per
minute over the market data websocket. The server stamps, on one clock, when it sends each bar and
when each order POST arrives; an order's latency is the difference, for the bar its client id names.
The path measured: websocket receive and decode (alpaca-py), the bar clock, Backtrader's loop with
every symbol's indicators, the strategy, the journal write before sending, the HTTP request (alpaca-py).
Only bars that place orders are measured.

``--strategy momentum_breakout`` (the default): fast parameters, so most bars place orders.

``--strategy ml``: the default ML trading plan (``strategies.ml.MLTradingPlan``) on a registry model
fitted once in this process on the warm-up history (the bars the live process gets), with the
project's model config and the hyperparameter search off, saved as ``models/registry/bench-<pid>``
for ``--model`` and removed at the end. The default history is the features' warm-up plus
``models.train_bars`` (``engine.live.warmup_needed`` without a model) and the bar the model is fitted
at. Its entry thresholds are lowered so most bars place orders: ``ml.min_confidence`` 0.5 and
``ml.min_expected_return`` 0 (the defaults, 0.65 and 1%, let no prediction through on these bars),
2% positions, at most ``risk.max_positions`` (20) of them as in the default plan, and initial stops
of at most 1% (``risk.stop_max``): the quarter-Kelly cap is zero
unless the expected gain is near the stop distance, and with the stop model's ~3% stops about one
bar in seven has such a candidate. Every decision still runs the whole pipeline: features,
predictor, ranking, cvxpy sizing, risk manager. The daily loss limit and the drawdown kill switch
are off: the live bars are daily bars stamped a minute apart, so a few hundred days of price moves
fall in one day of the calendar.

``--metrics``: the live process serves its Prometheus metrics (``live.metrics_port``, on a free
port; off otherwise); ``--scrape SECONDS``: a thread of this process reads them over HTTP every
SECONDS meanwhile, as Prometheus would (the issue: within 10% of the latency without metrics).

``--dashboard SECONDS``: a ``python run.py dashboard --journal URL`` process reads the live process's
journal (on a free port, started once the journal exists), and a thread of this process GETs its
``/api/overview``, ``/api/positions`` and ``/api/orders`` every SECONDS meanwhile, as an open page does
(the issue: within 10% of the latency without it).

``--stages``: the live process runs under ``benchmarks/live_stages.py``, which times each stage of a live
bar; printed after the latencies: from the bar's sending to its release by the bar clock, to Backtrader's
call of the strategy, to the first order's send, to its arrival, the garbage collections in between, and each
stage's time in the bar.

The first order's latency is also printed over the first and the last quarter of the live bars: a bar
late in the session must cost what an early one does, though the broker then follows thousands more
orders and the journal holds thousands more rows (``--bars 800``: about 5,900 orders).

``--set SECTION.KEY=VALUE`` (repeatable): one more line of the live process's config, VALUE in TOML, e.g.
``--set 'models.base_models=["xgboost", "lightgbm"]'`` to measure a cheaper ensemble (the registry model is
fitted with it too); a key the benchmark sets already is refused.

``--gap SECONDS`` (default 0.5): the pause between a bar's saved state and the next bar's sending. Live
bars come a minute (or a day) apart, so each finds the process idle; sent back to back (``--gap 0``), a
bar also waits for the previous one's last work (its journal checkpoint, the collector, the metrics).

Goal (the issue): p99 under 20 ms. Usage: ``python benchmarks/live_latency.py [--strategy ml]
[--symbols 50] [--bars 300] [--gap 0.5] [--metrics [--scrape 1]] [--dashboard 1] [--stages]
[--set SECTION.KEY=VALUE]``;
``BENCH_PROFILE=FILE`` runs the live process under cProfile.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brokers.journal import EQUITY, STRATEGY_STATE, Journal, sqlite_url  # noqa: E402
from brokers.alpaca.local_server import AlpacaTestServer  # noqa: E402
from feeds.live_feed import Bar, bars_of  # noqa: E402
from benchmarks.registry_model import fit_registry_model  # noqa: E402
from benchmarks.universe import clean_tickers, source_folder  # noqa: E402

PREFIX = "bench-"
MOMENTUM = "momentum_breakout"
# each strategy's own sections, and its lines of [risk] and [live]
SETTINGS = {
    MOMENTUM: {"sections": """[momentum_breakout]
breakout_bars = 2
momentum_bars = 1
trend_bars = 3
max_hold_bars = 2
position_weight = 0.02
""", "risk": "", "live": ""},
    "ml": {"sections": """[ml]
min_confidence = 0.5             # the schema's floor: entries on any positive expected return
min_expected_return = 0.0
[models.search]
schedule = "off"                 # the one fit in this process; a registry model is not searched live
[features]
cache = false                    # bars stamped today: nothing a later run could reuse
""", "risk": """max_position_weight = 0.02
stop_max = 0.01                  # a Kelly cap above 0 needs an expected gain near the stop distance
daily_loss_limit = 1.0           # off: a few hundred daily bars fall in one calendar day
max_drawdown = 1.0
""", "live": """retrain_every_days = 0           # no retrain when the process stops
"""},
}


def universe(n: int, length: int) -> tuple[dict, str]:
    """The first n clean tickers with ``length`` bars, cut to that length."""
    bars = {symbol: bars_of(frame.iloc[:length]) for symbol, frame in itertools.islice(clean_tickers(length), n)}
    return bars, str(source_folder())


def with_settings(text: str, settings: list[str]) -> str:
    """``text`` (TOML) with each ``SECTION.KEY=VALUE`` line added to its table (``--set``); a key
    already there is TOML's duplicate-key error."""
    for setting in settings:
        key, sep, value = setting.partition("=")
        section, dot, leaf = key.strip().rpartition(".")
        if not (sep and dot and leaf):
            raise SystemExit(f"--set {setting!r}: expected SECTION.KEY=VALUE")
        header = f"[{section}]\n"
        line = f"{leaf} = {value.strip()}\n"
        text = text.replace(header, header + line, 1) if header in text else f"{text}\n{header}{line}"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"--set: the config is not valid TOML ({exc})") from None
    return text


def config(server: AlpacaTestServer, symbols: list[str], state: Path, warmup: int, strategy: str,
           metrics_port: int = 0) -> str:
    urls = "\n".join(f'{k} = "{v}"' for k, v in server.urls.items())
    own = SETTINGS[strategy]
    return f"""
[backtest]
strategy = "{strategy}"
progress = false
{own["sections"]}[risk]
{f"max_positions = {len(symbols)}{chr(10)}" if strategy == MOMENTUM else ""}min_position_value = 100.0
{own["risk"]}[live]
symbols = {symbols!r}
timeframe = "1Min"
calendar = "24/7"
warmup_bars = {warmup}
max_catchup_bars = 0
stale_after_seconds = 1e9
order_sync_seconds = 5.0
commission_bps = 1.0
order_id_prefix = "{PREFIX}"
state_dir = "{state}"
metrics_port = {metrics_port}
{own["live"]}{urls}
"""


def ml_history() -> int:
    """Warm-up bars for ``ml``: those its live start needs to train its own model at the first live
    bar (the features' warm-up plus ``models.train_bars``), and that bar, where the model is fitted."""
    from config import load_config
    from engine.live import warmup_needed
    from strategies import get_strategy

    cfg = load_config()
    return warmup_needed(cfg, get_strategy("ml"))[0] + 1


def fit_model(config_path: Path, history: dict[str, list[Bar]], name: str) -> str:
    """Fit the ensemble once at the last history bar and save it as registry model ``name``
    (``benchmarks.registry_model``); returns a summary."""
    from config import load_config

    with contextlib.chdir(ROOT):   # relative paths (sector map, registry) as the live process sees them
        frames = {s: pd.DataFrame(bars, columns=Bar._fields).set_index("datetime") for s, bars in history.items()}
        return fit_registry_model(load_config(config_path), frames, name)


class Progress:
    """The last bar the live process saved its state after (one reader of its journal). It reads two
    timestamps, not the saved state: this process shares the machine with the one it measures."""

    def __init__(self, journal_path: Path, name: str):
        self.path, self.name, self.journal = journal_path, name, None

    def bar(self) -> dt.datetime:
        return self._latest(select(STRATEGY_STATE.c.bar_datetime).where(STRATEGY_STATE.c.name == self.name))

    def warmed_up_to(self) -> dt.datetime:
        """The last bar recorded (a warm-up bar is recorded too, though no state is saved for it)."""
        return self._latest(select(func.max(EQUITY.c.bar_datetime)))

    def _latest(self, query) -> dt.datetime:
        if self.journal is None and self.path.exists():
            self.journal = Journal(sqlite_url(self.path))
        if self.journal is None:
            return dt.datetime.min
        with self.journal.engine.connect() as conn:
            return conn.execute(query).scalar() or dt.datetime.min

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen, output: Path,
             who: str = "the live process") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-5:])
            raise SystemExit(f"{who} ended (status {process.returncode}) before {what}:\n{tail}")
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SCRAPER = """
import signal, sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
durations, failures = [], 0
def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)  # SIGINT may be ignored (a background job's)
try:
    while True:
        time.sleep(every)
        started = time.perf_counter()
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            failures += 1
            continue
        durations.append(time.perf_counter() - started)
except KeyboardInterrupt:
    durations.sort()
    print(len(durations), failures, durations[len(durations) // 2] if durations else 0.0, flush=True)
"""


class Scraper:
    """Reads ``url`` every ``every`` seconds, as Prometheus does: from a process of its own, so
    that neither the live process nor the server's clock here shares an interpreter with it.
    After :meth:`stop`: the scrapes' count, failures (before the process serves, expected) and
    median duration."""

    def __init__(self, url: str, every: float):
        self.process = subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(every)], stdout=subprocess.PIPE,
                                        text=True)
        self.count = self.failures = 0
        self.median_seconds = 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return
        count, failures, median = out.split()
        self.count, self.failures, self.median_seconds = int(count), int(failures), float(median)


def answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
        return True
    except OSError:
        return False


class Dashboard:
    """``run.py dashboard`` on the live process's journal, in a process of its own, and a thread of
    this one that GETs its overview, positions and orders every ``every`` seconds, as an open page
    does. After :meth:`stop`: the answers' count, failures and median duration."""

    APIS = ("/api/overview", "/api/positions", "/api/orders")

    def __init__(self, journal: Path, every: float, output: Path):
        self.base, self.every, self.output = f"http://127.0.0.1:{free_port()}", every, output
        with open(output, "w") as log:
            self.process = subprocess.Popen([sys.executable, "run.py", "dashboard", "--journal", sqlite_url(journal),
                                             "--port", self.base.rsplit(":", 1)[1]], cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.durations: list[float] = []
        self.failures = 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="dashboard-poller", daemon=True)

    def start(self) -> None:
        wait_for(lambda: answers(f"{self.base}/healthz", 1.0), 120, "it served /healthz", self.process, self.output,
                 "the dashboard")
        self.thread.start()

    def _poll(self) -> None:
        while not self.halt.wait(self.every):
            for path in self.APIS:
                started = time.perf_counter()
                if answers(self.base + path):
                    self.durations.append(time.perf_counter() - started)
                else:
                    self.failures += 1

    def stop(self) -> None:
        self.halt.set()
        if self.thread.is_alive():
            self.thread.join()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def summary(self) -> str:
        median = statistics.median(self.durations) * 1000 if self.durations else 0.0
        return (f"dashboard polled every {self.every:g} s ({len(self.durations)} answers, {self.failures} failures, "
                f"median {median:.1f} ms); ")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=sorted(SETTINGS), default=MOMENTUM)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--bars", type=int, default=300, help="live bars (after the warm-up)")
    parser.add_argument("--metrics", action="store_true", help="the live process serves Prometheus metrics")
    parser.add_argument("--scrape", type=float, metavar="SECONDS",
                        help="with --metrics: scrape them every SECONDS (Prometheus' side of the cost)")
    parser.add_argument("--history", type=int, help="warm-up bars (live.warmup_bars; momentum_breakout: 320, at "
                                                    "least the longest feature warm-up, 302; ml: that plus "
                                                    "models.train_bars and the fit's bar)")
    parser.add_argument("--dashboard", type=float, metavar="SECONDS",
                        help="a run.py dashboard on the journal, its overview, positions and orders read every SECONDS")
    parser.add_argument("--stages", action="store_true", help="time each stage of a live bar (live_stages.py)")
    parser.add_argument("--gap", type=float, default=0.5, metavar="SECONDS",
                        help="pause after a bar's saved state before the next bar (live bars come a minute apart)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="one more config line for the live process (VALUE in TOML; repeatable)")
    args = parser.parse_args()
    if args.scrape is not None and (not args.metrics or args.scrape <= 0):
        parser.error("--scrape SECONDS needs --metrics and SECONDS > 0")
    if args.dashboard is not None and args.dashboard <= 0:
        parser.error("--dashboard SECONDS needs SECONDS > 0")
    if args.history is None:
        args.history = 320 if args.strategy == MOMENTUM else ml_history()
    bars, source = universe(args.symbols, args.history + args.bars)
    symbols = sorted(bars)
    tomorrow = dt.datetime.combine(dt.date.today() + dt.timedelta(days=2), dt.time())
    first = tomorrow - dt.timedelta(minutes=args.history)
    stamped = [{s: bars[s][i]._replace(datetime=first + dt.timedelta(minutes=i)) for s in symbols}
               for i in range(args.history + args.bars)]
    with tempfile.TemporaryDirectory(prefix="live-latency-") as folder, \
            AlpacaTestServer(cash=1_000_000.0, commission_bps=1.0, slippage_bps=5.0) as server, \
            contextlib.ExitStack() as cleanup:
        tmp = Path(folder)
        for group in stamped[:args.history]:
            for symbol, bar in group.items():
                server.add_history(symbol, [bar])
        metrics_port = free_port() if args.metrics else 0
        (tmp / "bench.toml").write_text(with_settings(config(server, symbols, tmp / "state", args.history,
                                                             args.strategy, metrics_port), args.set))
        model = []
        if args.strategy != MOMENTUM:
            from models.registry import REGISTRY_ROOT

            name = f"{PREFIX}{os.getpid()}"
            cleanup.callback(shutil.rmtree, ROOT / REGISTRY_ROOT / name, ignore_errors=True)
            print(fit_model(tmp / "bench.toml", {s: [group[s] for group in stamped[:args.history]] for s in symbols},
                            name), flush=True)
            model = ["--model", name]
        gc.collect()
        gc.freeze()  # the server's side of the clock: no long collector pauses in this process either
        env = {**os.environ, "APCA_API_KEY_ID": server.key_id, "APCA_API_SECRET_KEY": server.secret_key}
        output = tmp / "live.out"
        profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
        stages = tmp / "stages.jsonl"
        program = ["benchmarks/live_stages.py", str(stages)] if args.stages else ["run.py"]
        command = [sys.executable, *profile, *program, "live", "--config", str(tmp / "bench.toml"), *model]
        with open(output, "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        progress = Progress(tmp / "state" / "journal.sqlite", f"{PREFIX}{args.strategy}")
        scraper = Scraper(f"http://127.0.0.1:{metrics_port}/metrics", args.scrape) if args.scrape else None
        dashboard = None
        try:
            wait_for(lambda: server.connected() == (1, 1), 120, "the live process connected", process, output)
            if args.dashboard:  # the journal exists now
                dashboard = Dashboard(tmp / "state" / "journal.sqlite", args.dashboard, tmp / "dashboard.out")
                dashboard.start()
            last_history = stamped[args.history - 1][symbols[0]].datetime
            # ml: each warm-up bar past the features' warm-up is predicted too
            warmup_seconds = 120 if args.strategy == MOMENTUM else 900
            wait_for(lambda: progress.warmed_up_to() >= last_history, warmup_seconds, "the warm-up ended", process,
                     output)
            time.sleep(1.0)  # the first live bar finds the process waiting, as it would a minute later
            for group in stamped[args.history:]:
                server.push(group)
                when = max(b.datetime for b in group.values())
                wait_for(lambda: progress.bar() >= when, 30, f"bar {when} was processed", process, output)
                time.sleep(args.gap)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            progress.close()
            if scraper is not None:
                scraper.stop()
            if dashboard is not None:
                dashboard.stop()
        first_order, every_order = [], []
        by_bar: dict[dt.datetime, list[float]] = {}
        for cid, arrived in zip(server.submissions, server.submitted_at):
            stamp = dt.datetime.strptime(cid[len(PREFIX):].split("-")[1], "%Y%m%d%H%M%S")
            by_bar.setdefault(stamp, []).append((arrived - server.bars_sent_at[stamp]) * 1000.0)
        for _, latencies in sorted(by_bar.items()):   # in the order the bars were sent
            first_order.append(min(latencies))
            every_order.extend(latencies)
        stage_lines = stage_table(stages, server.bars_sent_at, by_bar) if args.stages else []
    strategy = "" if args.strategy == MOMENTUM else f"strategy {args.strategy}; "
    if args.metrics:
        strategy += "metrics on" + (f", scraped every {args.scrape:g} s ({scraper.count} scrapes, median "
                                    f"{scraper.median_seconds * 1000:.1f} ms)" if scraper is not None else "") + "; "
    if dashboard is not None:
        strategy += dashboard.summary()
    if args.set:
        strategy += f"with {', '.join(args.set)}; "
    print(f"{strategy}data: {source}: {len(symbols)} symbols, {args.history} warm-up bars, {args.bars} live bars "
          f"{args.gap:g} s apart; {len(by_bar)} bars placed {len(every_order)} orders")
    if not every_order:
        raise SystemExit("no bar placed an order: no latency to measure (ml: no prediction passed the entry "
                         "thresholds)")
    for label, values in (("first order of a bar", first_order), ("every order", every_order)):
        print(f"bar sent -> {label} at the broker: median {statistics.median(values):.1f} ms, "
              f"p90 {percentile(values, 0.90):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
              f"max {max(values):.1f} ms (n={len(values)})")
    # the session's cost must not grow with what it has done (the orders it follows, its journal)
    quarter = len(first_order) // 4
    for label, values in (("first", first_order[:quarter]), ("last", first_order[-quarter:])) if quarter else ():
        print(f"first order of a bar, the {label} {quarter} bars: median {statistics.median(values):.1f} ms, "
              f"p90 {percentile(values, 0.90):.1f} ms")
    for line in stage_lines:
        print(line)


def stage_table(path: Path, sent_at: dict, by_bar: dict) -> list[str]:
    """Lines of ``--stages``' figures (ms; median, p90, p99 over the bars that placed orders)."""
    bars = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    steps: dict[str, list[float]] = {}
    starts: dict[str, list[float]] = {}
    collected = [c for bar in bars for c in bar.get("gc", [])]   # a bar's may fall in the next bar's window
    for bar in bars:
        stamp = dt.datetime.fromisoformat(bar["datetime"])
        if stamp not in by_bar or "send@start" not in bar or "strategy@start" not in bar:
            continue
        sent, arrived = sent_at[stamp], sent_at[stamp] + min(by_bar[stamp]) / 1000.0
        path_steps = {"bar sent -> released by the bar clock": bar["released"] - sent,
                      "released -> the strategy called (feeds, broker)": bar["strategy@start"] - bar["released"],
                      "the strategy called -> first order sent": bar["send@start"] - bar["strategy@start"],
                      "first order sent -> at the broker": arrived - bar["send@start"],
                      "garbage collection, bar sent -> first order sent": sum(
                          seconds for began, seconds, _ in collected if sent <= began < bar["send@start"])}
        for name, seconds in [*path_steps.items(), *((f"stage {k}", v) for k, v in bar.items()
                                                     if "@" not in k and isinstance(v, float) and k != "released")]:
            steps.setdefault(name, []).append(seconds * 1000.0)
        for key, began in bar.items():   # the stages begun before the first order: its path
            if key.endswith("@start") and key != "send@start" and bar["strategy@start"] <= began < bar["send@start"]:
                starts.setdefault(key[:-len("@start")], []).append((began - bar["strategy@start"]) * 1000.0)
    if not steps:
        return ["stages: no bar with an order was timed"]
    n = len(steps["bar sent -> released by the bar clock"])
    line = "  {:<52} median {:7.2f}  p90 {:7.2f}  p99 {:7.2f}".format
    return ([f"stages over {n} bars (ms; a stage's time in the bar, summed over its calls):"]
            + [line(name, statistics.median(v), percentile(v, 0.9), percentile(v, 0.99)) for name, v in steps.items()]
            + ["the first order's path: when each stage first began, after the strategy's call (ms; the bars where "
               "it began before the first order):"]
            + [line(f"{name} (in {len(v)} bars)", statistics.median(v), percentile(v, 0.9), percentile(v, 0.99))
               for name, v in sorted(starts.items(), key=lambda item: statistics.median(item[1]))])


if __name__ == "__main__":
    main()
