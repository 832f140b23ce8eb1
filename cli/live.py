"""``python run.py live``: the backtested strategy on Alpaca (paper trading unless told otherwise), or
``--replay DATA``: the same live path on recorded bars against a local simulated broker, no keys needed.

Keys come from ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` (or a ``.env`` file) and are never
printed, logged or written. Real money needs ``--live-money`` and the confirmation phrase, typed at the
prompt or given with ``--confirm-live-money``. Stop with Ctrl-C or SIGTERM: the current bar finishes,
the journal keeps everything; a restart (even after ``kill -9``) picks up where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from cli.backtest import new_run_dir
from cli.common import add_config_option, add_data_option, add_strategy_option, config_from_args, load_data
from common.errors import UserError

log = logging.getLogger("live")

CONFIRMATION = "I UNDERSTAND THIS TRADES REAL MONEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", metavar="DATA", action="append",
                        help="run the live path on recorded bars (CSV file or folder, repeatable) against a local "
                             "simulated broker: no keys, no network; writes the backtest's records")
    parser.add_argument("--speed", type=float, default=0.0, metavar="N",
                        help="replay: release N bars per second (default 0: as fast as possible)")
    add_strategy_option(parser)
    add_data_option(parser)
    add_config_option(parser)
    parser.add_argument("--out", metavar="DIR", help="replay: output folder (default: a new folder under runs/); "
                                                     "live: the state folder (default: the config's live.state_dir)")
    parser.add_argument("--journal", metavar="URL",
                        help="SQLAlchemy URL of the journal (default: SQLite journal.sqlite in the state folder)")
    parser.add_argument("--model", metavar="NAME", help="registry model to trade (models/registry/NAME); refused if "
                                                        "its feature list differs from the current one")
    parser.add_argument("--live-money", action="store_true",
                        help="trade the real-money account instead of paper (asks for a confirmation)")
    parser.add_argument("--confirm-live-money", metavar="PHRASE",
                        help=f"the confirmation for --live-money without a prompt: exactly '{CONFIRMATION}'")
    parser.add_argument("--no-plot", action="store_true", help="replay: skip the PNG plots")
    parser.add_argument("--adopt-positions", action="store_true",
                        help="live: take the broker's positions as right where they differ from what the journal's "
                             "fills explain (a trade made outside this deployment), which otherwise halts new entries")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, {"backtest.strategy": args.strategy,
                                  "backtest.plot": False if args.no_plot else None,
                                  # a replay's data is its recorded bars (metrics.json records them)
                                  "data.paths": list(args.replay) if args.replay else None})
    if args.speed < 0:
        raise UserError("--speed must be 0 (as fast as possible) or a positive number of bars per second")
    if args.replay:
        return _replay(args, cfg)
    return _live(args, cfg)


def _replay(args, cfg) -> int:
    from engine.live import run_replay
    from feeds.loader import DataQuality
    from reports.writer import write_run
    from strategies import get_strategy

    strategy_cls = get_strategy(cfg.backtest.strategy)
    quality = DataQuality()
    bars = load_data(cfg, min_bars=strategy_cls.required_bars(cfg), end=cfg.backtest.end, quality=quality)
    model = _resolve_model(args.model, cfg, sorted(bars), strategy_cls)
    out = Path(args.out) if args.out else new_run_dir(cfg.backtest.out_root, f"replay-{cfg.backtest.strategy}")
    out.mkdir(parents=True, exist_ok=True)
    log.info("replay: %d symbols, %d bars; strategy %s%s", len(bars), sum(len(f) for f in bars.values()),
             cfg.backtest.strategy, f", model {model}" if model else "")
    result = run_replay(cfg, bars, strategy_cls=strategy_cls, bars_per_second=args.speed, journal_url=args.journal,
                        journal_dir=out, model=model)
    result.metrics["data_quality"] = quality.to_dict()
    write_run(out, result, plot=cfg.backtest.plot)
    m = result.metrics
    print(f"replay {cfg.backtest.strategy}: total return {m['total_return']:.2%}, {m['n_trades']} trades, "
          f"{len(result.records.orders)} orders")
    print(f"results in {out}/ (journal.sqlite, orders.csv, trades.csv, positions.csv, equity.csv, metrics.json)")
    return 0


def _live(args, cfg) -> int:
    from brokers.journal import Journal, journal_options, sqlite_url
    from brokers.alpaca.credentials import load_credentials, protect_logging
    from engine.live import LiveRunner
    from strategies import get_strategy

    credentials = load_credentials()
    protect_logging(credentials.secrets)
    paper = not args.live_money
    if not paper:
        _confirm_live_money(args.confirm_live_money)
    strategy_cls = get_strategy(cfg.backtest.strategy)
    symbols = _symbols(cfg)
    model = _resolve_model(args.model, cfg, symbols, strategy_cls)
    state_dir = Path(args.out or cfg.live.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(state_dir / "live.log", encoding="utf-8")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_file)
    protect_logging(credentials.secrets, log_file)
    _log_decisions(state_dir / "decisions.log")
    journal = Journal(args.journal or cfg.live.journal or sqlite_url(state_dir / "journal.sqlite"),
                      manual_checkpoints=True, **journal_options(cfg.live))
    from ops.observer import Observers

    observers = Observers()
    runner = LiveRunner(cfg, strategy_cls=strategy_cls, symbols=symbols, credentials=credentials, paper=paper,
                        journal=journal, state_dir=state_dir, model=model, adopt_positions=args.adopt_positions,
                        observers=observers)
    alerts = alerts_from_config(cfg, journal, credentials.secrets, session=runner.name)
    if alerts is not None:
        protect_logging(alerts.secrets, log_file)  # Apprise's own log lines too
        observers.add(alerts)

    def stop(signum, _frame):
        log.info("%s: stopping after the current bar", signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics = None
    try:
        metrics = metrics_from_config(cfg)  # serving from here to the end; a port in use stops the start
        if metrics is not None:
            observers.add(metrics)
        runner.run()
    finally:
        if alerts is not None:
            alerts.close()  # before the journal: the last alerts are written to it
        journal.close()
        if metrics is not None:
            metrics.close()
    return 0


def _log_decisions(path: Path) -> None:
    """The plan's one line per decision (the ``decisions`` logger, debug level) into ``path``, as a
    backtest's decisions.log, and not into the console or live.log."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    decisions = logging.getLogger("decisions")
    decisions.setLevel(logging.DEBUG)
    decisions.propagate = False
    decisions.addHandler(handler)


def alerts_from_config(cfg, journal, secrets, *, session: str):
    """The alerts observer (``[alerts]``; its URLs also from TRADER_ALERT_URLS), writing each alert to
    ``journal``; None when there is nowhere to send one."""
    from ops.alerts import AlertRules, LiveAlerts

    rules = AlertRules.from_config(cfg)
    if not rules.configured:
        return None
    try:
        alerts = LiveAlerts(rules, record=journal.record_alert, session=session, secrets=secrets)
    except ValueError as exc:  # a URL Apprise does not know
        raise UserError(str(exc)) from None
    log.info("alerts: %d URL(s)%s, rules %s", len(rules.urls), ", dead-man heartbeat" if rules.heartbeat_url else "",
             ", ".join(r for r in cfg.alerts.rules))
    return alerts


def metrics_from_config(cfg):
    """The Prometheus metrics observer, serving (``live.metrics_port``; 0: none)."""
    if not cfg.live.metrics_port:
        return None
    from ops.metrics import LiveMetrics

    metrics = LiveMetrics(drift_psi_threshold=cfg.live.drift_psi_threshold)
    log.info("Prometheus metrics at %s", metrics.serve(cfg.live.metrics_host, cfg.live.metrics_port))
    return metrics


def _confirm_live_money(given: str | None) -> None:
    if given is None and sys.stdin.isatty():
        print(f"--live-money trades the REAL-MONEY account. Type '{CONFIRMATION}' to go on:", file=sys.stderr)
        given = sys.stdin.readline().strip()
    if given != CONFIRMATION:
        raise UserError(f"--live-money not confirmed: type or pass --confirm-live-money '{CONFIRMATION}'")


def _symbols(cfg) -> list[str]:
    if cfg.live.symbols:
        return sorted({s.upper() for s in cfg.live.symbols})
    return sorted(load_data(cfg))


def _resolve_model(name: str | None, cfg, symbols: list[str], strategy_cls) -> str | None:
    """``--model NAME``: the artefact ``models/registry/NAME``, refused (one line) for a strategy that
    trades no models, or when the features it was trained on are not those the code computes for
    this run's data; returns its id for the journal."""
    if name is None:
        return None
    if not strategy_cls.trains_models:
        raise UserError(f"--model {name}: the strategy {cfg.backtest.strategy} trades no models")
    import hashlib
    import json

    from features.from_config import engine_from_config
    from models.registry import REGISTRY_ROOT, read_manifest

    folder = REGISTRY_ROOT / name
    manifest = read_manifest(folder)
    registry = engine_from_config(cfg, symbols).registry
    trained, computed = manifest["feature_names"], registry.names
    if trained != computed or manifest["feature_registry_hash"] != registry.hash():
        unknown = sorted(set(computed) - set(trained))[:5]
        missing = sorted(set(trained) - set(computed))[:5]
        raise UserError(f"--model {name}: trained on other features than the code computes for this data "
                        f"({len(trained)} vs {len(computed)}; missing {missing}, new {unknown}, or other definitions:"
                        f" registry hash {manifest['feature_registry_hash']} vs {registry.hash()}); retrain it")
    trained_on = manifest.get("symbols")
    if trained_on is not None and sorted(trained_on) != sorted(symbols):
        # cross-sectional features (ranks, the universe's index) depend on the universe
        raise UserError(f"--model {name}: trained on the symbols {sorted(trained_on)}, this run has {sorted(symbols)}; "
                        "trade the universe it was trained on, or retrain it on this one")
    ids = json.dumps(manifest.get("model_ids", {}), sort_keys=True)
    return f"{name}@{hashlib.sha256(ids.encode()).hexdigest()[:12]}"
