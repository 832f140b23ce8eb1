#!/usr/bin/env python
"""``run.py`` with a timer around each stage of a live bar: where ``benchmarks/live_latency.py --stages``
finds a bar's time from the websocket to the first order.

Usage (live_latency.py runs it in place of ``run.py``): ``python benchmarks/live_stages.py OUT.jsonl live
--config ...``. For each live bar (not the warm-up's) one JSON line in OUT: ``released`` (when the bar
clock released the bar, ``time.perf_counter()``: one clock with the local server's, on this machine),
``datetime``, and for each stage below the seconds it took in the bar (summed over its calls) and when its
first call began (``<stage>@start``), and ``gc``: each garbage collection from its release to the next
bar's, ``[began, seconds, generation]``. The wrappers cost a few microseconds a call.
"""
from __future__ import annotations

import functools
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (module, class, method, stage); stages nest: ``strategy`` holds ``predictions`` (``features``, ``models``,
# ``stacking``), ``decision`` (``open_positions``, ``entries``: ``candidates``, ``returns_window``,
# ``mean_variance`` (``solve``), ``risk_score``, ``enter_long`` (``send``)) and ``after_bar`` (the rest of the
# sends, ``record_only_outputs``, the journal)
STAGES = [
    ("backtrader", "Strategy", "_next", "strategy"),   # the strategy's next, then analyzers and observers
    ("strategies.base", "PortfolioStrategy", "next", "decision"),   # the clock, controls, decide
    ("strategies.signals", "WalkForwardSignals", "current", "predictions"),
    ("indicators.feature_hub", "FeatureHub", "advance", "features"),
    ("models.predictor", "EnsemblePredictor", "predict_base", "models"),
    ("models.predictor", "EnsemblePredictor", "combine", "stacking"),
    ("models.predictor", "EnsemblePredictor", "predict_record", "record_only_outputs"),
    ("strategies.ml", "MLTradingPlan", "_manage", "open_positions"),
    ("strategies.ml", "MLTradingPlan", "_enter", "entries"),
    ("strategies.ml", "MLStrategy", "candidates", "candidates"),
    ("strategies.ml", "RiskGatedPlan", "_returns", "returns_window"),
    ("risk.portfolio", "MeanVarianceSizer", "weights", "mean_variance"),
    ("risk.portfolio", "MeanVarianceProblem", "solve", "solve"),
    ("risk.manager", "RiskManager", "assess", "risk_score"),
    ("strategies.base", "PortfolioStrategy", "enter_long", "enter_long"),
    ("brokers.live.outbox", "Outbox", "_send", "send"),
    ("analyzers.live_session", "LiveSessionRecorder", "next", "after_bar"),
]


class Recorder:
    def __init__(self, path: str):
        self.path, self.bar = path, None
        self._collecting = None
        gc.callbacks.append(self._collection)

    def _collection(self, phase: str, info: dict) -> None:
        """Each garbage collection in a bar's record: ``gc`` [[began, seconds, generation], ...]."""
        if phase == "start":
            self._collecting = time.perf_counter()
        elif self._collecting is not None and self.bar is not None:
            now = time.perf_counter()
            self.bar.setdefault("gc", []).append([self._collecting, now - self._collecting, info["generation"]])

    def release(self, group) -> None:
        self.flush()
        self.bar = {"datetime": str(group.datetime), "released": time.perf_counter()}

    def flush(self) -> None:
        if self.bar is not None:
            with open(self.path, "a") as out:
                out.write(json.dumps(self.bar) + "\n")
        self.bar = None

    def wrap(self, owner, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                bar = self.bar
                if bar is not None:
                    bar[stage] = bar.get(stage, 0.0) + time.perf_counter() - began
                    bar.setdefault(f"{stage}@start", began)

        setattr(owner, attribute, timed)


def main() -> int:
    import atexit
    import importlib

    import feeds.live_feed as live_feed

    recorder = Recorder(sys.argv[1])
    atexit.register(recorder.flush)
    advance = live_feed.BarClock._advance

    def released(clock):
        before = clock.current
        advance(clock)
        if clock.current is not before and clock.current is not None and clock.current.live:
            recorder.release(clock.current)

    live_feed.BarClock._advance = released
    for module, owner, attribute, stage in STAGES:
        target = importlib.import_module(module)
        recorder.wrap(getattr(target, owner), attribute, stage)
    import run

    return run.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
