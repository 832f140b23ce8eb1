#!/usr/bin/env python
"""Restart recovery soak: many seeded crash trials (``tests.live.crash``), the totals printed.

Each trial is a real ``python run.py live`` process killed with SIGKILL at random moments of every
kind (``tests.live.crash.KILL_KINDS``: mid-bar, between bars, at an order's POST before and after the
broker takes it, after an exit's stop cancel, the broker's own test hook, during the restart's start-up
and reconciliation), with bars arriving while it is down or reconciling, restarted until its bars run
out, then checked: nothing sent twice, journal == broker, never short, positions equal, and the
backtest's orders whenever every restart had at most ``live.max_catchup_bars`` bars to catch up.

Usage: ``python benchmarks/crash_soak.py [--trials 200] [--first-seed 1] [--workers 2] [--keep DIR]
[--postgres ADMIN_URL]``; with ``--postgres`` each trial's journal is a fresh database on that server
(``.ci/postgres.sh start DIR PORT`` prints such a URL), dropped after a passing trial.
A failing trial's folder (its processes' logs, the journal) is kept and named; the seed replays it:
``python benchmarks/crash_soak.py --trials 1 --first-seed SEED``.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live.crash import CrashTrial  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="trials run at once (each is one live process)")
    parser.add_argument("--live-bars", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="keep every trial's folder here (default: only failing ones)")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="journals on this PostgreSQL server (one database per trial) instead of SQLite files")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="crash-soak-"))
    started = time.monotonic()

    def trial(seed: int):
        folder = root / f"trial-{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        database = _create_database(args.postgres, f"soak_{seed}_{root.name[-8:].lower()}") if args.postgres else None
        result = CrashTrial(folder, seed, live_bars=args.live_bars, journal_url=database).run()
        if database is not None and result.ok:
            _drop_database(args.postgres, database)
        status = "ok" if result.ok else "FAILED"
        print(f"seed {seed}: {status} in {result.seconds:.0f} s, kills {result.kills}, {result.restarts} restarts, "
              f"{result.bars_while_down} bars while down, compared with the backtest: "
              f"{result.compared_with_backtest}", flush=True)
        for failure in result.failures:
            print(f"    {failure[:2000]}", flush=True)
        if result.ok and args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
        return result

    seeds = range(args.first_seed, args.first_seed + args.trials)
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(trial, seeds))

    kills = collections.Counter(kind for r in results for kind in r.kills)
    failed = [r for r in results if not r.ok]
    print()
    print(f"trials {len(results)}, failed {len(failed)}, kills {sum(kills.values())}, restarts "
          f"{sum(r.restarts for r in results)}, bars while down {sum(r.bars_while_down for r in results)}, "
          f"compared with the backtest {sum(r.compared_with_backtest for r in results)}, "
          f"wall {time.monotonic() - started:.0f} s")
    print("kills by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kills.items())))
    if failed:
        print(f"failed seeds: {[r.seed for r in failed]} (folders under {root})")
    return 1 if failed else 0


def _admin(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)  # CREATE DATABASE: no transaction


def _create_database(admin_url: str, name: str) -> str:
    """A fresh database ``name`` on the server; its SQLAlchemy URL."""
    from sqlalchemy import text

    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return engine.url.set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import make_url, text

    with _admin(admin_url).connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


if __name__ == "__main__":
    sys.exit(main())
