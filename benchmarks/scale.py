#!/usr/bin/env python
"""Scale: a backtest on 28, 100 and 505 symbols of ``../shared/data/sp500_5yr``, time per phase and
peak memory, serial and on a local Ray.

Each (strategy, executor, size) runs in its own process, so its peak resident memory (``ru_maxrss``)
is its own: the first N files in name order, bad rows dropped and too-short symbols skipped as
``data.invalid_rows = "drop"`` does (``metrics.json``'s ``data_quality``). Phases: loading the CSV
files; the run (for ``ml``: the features, the walk-forward training's wall time, and Backtrader's
loop with the decisions); the records, metrics and report written (no plots). On Ray the workers
are other processes: the last column is then the machine's memory in use at its peak (sampled every
half second) above what was in use before the run, which counts the driver, the workers and the
object store; serial rows show both.

Usage: ``python benchmarks/scale.py [--sizes 28 100 505] [--strategies momentum_breakout ml]
[--executors serial ray] [--timeout SECONDS]``. The feature cache is off, so every run computes its
features. A run past the timeout is reported as such.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class MachineMemory:
    """Peak of the machine's memory in use (MemTotal - MemAvailable) above its level at the start."""

    def __init__(self):
        self.start = self.peak = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def _used() -> float:
        info = dict(line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self._used())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._used()) - self.start


def one(size: int, strategy: str, executor: str = "serial") -> dict:
    """Run one backtest here and return its figures (called in a child process)."""
    from benchmarks.universe import source_folder
    from config import load_config
    from engine.backtest import run_backtest
    from feeds.loader import DataQuality, load_universe
    from reports.writer import write_run
    from strategies import get_strategy

    memory = MachineMemory()
    cfg = load_config(overrides={"backtest.strategy": strategy, "backtest.plot": False, "backtest.progress": False,
                                 "data.invalid_rows": "drop", "features.cache": False, "executor.kind": executor})
    strategy_cls = get_strategy(strategy)
    files = sorted(source_folder().glob("*.csv"))[:size]
    began = time.perf_counter()
    quality = DataQuality()
    bars = load_universe(files, invalid_rows="drop", min_bars=strategy_cls.required_bars(cfg), quality=quality)
    loaded = time.perf_counter()
    result = run_backtest(cfg, bars, strategy_cls=strategy_cls)
    ran = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_run(Path(out), result, plot=False)
    written = time.perf_counter()
    got = result.strategy.walk_forward() if hasattr(result.strategy, "walk_forward") else None
    folds = got[0].folds if got is not None else []
    return {"symbols": len(bars), "bars": sum(len(f) for f in bars.values()), "load_s": loaded - began,
            "run_s": ran - loaded, "training_s": got[0].seconds.get("total", 0.0) if got else 0.0,
            "folds": len(folds), "report_s": written - ran,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "machine_mb": memory.stop()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 100, 505])
    parser.add_argument("--strategies", nargs="+", default=["momentum_breakout", "ml"])
    parser.add_argument("--executors", nargs="+", default=["serial", "ray"], choices=["serial", "ray"],
                        help="momentum_breakout trains nothing: it runs serial only")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "STRATEGY", "EXECUTOR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.one[2])))
        return 0
    print(f"{'strategy':<18} {'executor':<8} {'files':>5} {'symbols':>7} {'bars':>8} {'load s':>7} {'run s':>8} "
          f"{'of which training':>17} {'folds':>5} {'report s':>8} {'peak RSS MB':>11} {'machine MB':>10}")
    for strategy in args.strategies:
        for executor in args.executors if strategy != "momentum_breakout" else ["serial"]:
            for size in args.sizes:
                name = f"{strategy:<18} {executor:<8} {size:>5}"
                try:
                    child = subprocess.run([sys.executable, __file__, "--one", str(size), strategy, executor],
                                           capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
                except subprocess.TimeoutExpired:
                    print(f"{name}  over {args.timeout:.0f} s: stopped")
                    continue
                if child.returncode != 0:
                    print(f"{name}  failed: {child.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(child.stdout.strip().splitlines()[-1])
                print(f"{name} {r['symbols']:>7} {r['bars']:>8} {r['load_s']:>7.1f} {r['run_s']:>8.1f} "
                      f"{r['training_s']:>17.1f} {r['folds']:>5} {r['report_s']:>8.1f} {r['peak_rss_mb']:>11.0f} "
                      f"{r['machine_mb']:>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
