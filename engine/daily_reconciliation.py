"""The daily reconciliation: a live session's recorded bars replayed with the same strategy, config,
model and start state, and what live did compared with what the replay did (``ops.reconciliation``).

After each session (``LiveRunner._after_session``) :func:`reconcile_live_session` writes into the
session's folder (``state_dir/sessions/STAMP/``) what a replay needs: ``bars/SYMBOL_data.csv`` (every
bar the session received, warm-up history and live, in the sample-data format ``run.py live
--replay`` reads), ``news.csv`` when the features read news (every headline the session's features
read, stamped with its availability time: the replay's ``data.news``) and ``session.json`` (the
deployment's name and order id prefix, the model, the first traded bar, the strategy state the session
started from, the cash and positions at the start and the end, and ``carry``: what the next session
starts from). :func:`reconcile_folder` then replays
the folder and writes the dated report ``state_dir/reconciliation/YYYY-MM-DD.json`` and ``.md``; it
can be run by hand on any past session's folder (``python -m engine.daily_reconciliation``).

The replay is the live path itself (``engine.live.LiveSession``) on a simulated venue that fills as
the backtest does, with the session's order id prefix (so the same decision has the same client
order id on both sides), the same ``TradePolicy`` (history warms up, trading starts at the session's
first traded bar) and the saved state restored. A session that started flat replays from its start
cash. One that started with positions or orders in flight replays from the previous session's
``carry``: the venue and a fresh journal are seeded with them, and the live broker's start
reconciliation claims them as at a restart. Without a matching ``carry`` (the previous session was
killed, or the account changed in between) the report says "not compared" and why.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from brokers.journal import Journal, sqlite_url
from config import Config
from engine.backtest import collect_records
from engine.compat import bt
from feeds.live_feed import BarClock, BarGroup, ReplaySource
from ops.reconciliation import Reconciliation, SessionTables, Thresholds, not_compared, reconcile

log = logging.getLogger("live.reconciliation")

BAR_FIELDS = ["open", "high", "low", "close", "volume"]
SESSION_FILE = "session.json"
NEWS_FILE = "news.csv"  # the headlines the live features read, at their availability times (engine.live_news)


def replay_config(cfg: Config, folder: Path) -> Config:
    """``cfg`` for the replay of a session's folder: its features read the session's headlines
    (``news.csv``, availability times) where the session recorded them, as live read them."""
    news = Path(folder) / NEWS_FILE
    if not news.exists():
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"news": str(news)})})


# ---- what a session leaves for its replay ---------------------------------------------------------
def received_bars(strategy) -> dict[str, pd.DataFrame]:
    """Every bar each feed of a finished run received, from the feeds' own lines (Backtrader keeps
    them all): {symbol: frame indexed by datetime}."""
    bars = {}
    for data in strategy.datas:
        n = len(data)
        stamps = [bt.num2date(x) for x in data.lines.datetime.array[:n]]
        # Backtrader's float clock is a few microseconds off: bars are stamped on whole seconds
        index = pd.DatetimeIndex(stamps, name="datetime").round("s")
        bars[data._name] = pd.DataFrame({name: list(getattr(data.lines, name).array[:n]) for name in BAR_FIELDS},
                                        index=index)
    return bars


def write_bars(folder: Path, bars: dict[str, pd.DataFrame]) -> None:
    """``folder/SYMBOL_data.csv`` in the sample-data format (date, open, high, low, close, volume, Name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for symbol, frame in bars.items():
        out = frame[BAR_FIELDS].copy()
        out.index = out.index.strftime("%Y-%m-%d %H:%M:%S")
        out.index.name = "date"
        out["Name"] = symbol
        out.to_csv(folder / f"{symbol}_data.csv")


def read_bars(folder: Path) -> dict[str, pd.DataFrame]:
    """What :func:`write_bars` wrote, exactly (no validation: these are bars a session traded on)."""
    bars = {}
    for path in sorted(folder.glob("*_data.csv")):
        frame = pd.read_csv(path, parse_dates=["date"])
        symbol = str(frame["Name"].iloc[0]) if len(frame) else path.name[: -len("_data.csv")]
        bars[symbol] = frame.set_index(pd.DatetimeIndex(frame["date"], name="datetime"))[BAR_FIELDS].astype(float)
    return bars


def _positions_at(positions: pd.DataFrame, when) -> dict[str, dict]:
    rows = positions[pd.to_datetime(positions["datetime"]) == when]
    return {row.symbol: {"size": float(row.size), "price": float(row.price)} for row in rows.itertuples()}


def session_facts(strategy, session, *, name: str, order_id_prefix: str, model: str | None) -> dict:
    """What the replay starts from and what it is compared against, from a finished live session."""
    rec = collect_records(strategy)
    first = pd.to_datetime(rec.equity["datetime"]).min() if len(rec.equity) else None
    saved = session.saved
    return {
        "name": name, "order_id_prefix": order_id_prefix, "model": model,
        "trading_from": session.trading_from.isoformat() if session.trading_from is not None else None,
        "saved": None if saved is None else {"bar_datetime": saved[0].isoformat(), "state": saved[1]},
        # the account at the first bar: warm-up bars decide nothing, so this is the account at the start
        "start": {"cash": float(rec.equity["cash"].iloc[0]) if first is not None else None,
                  "positions": _positions_at(rec.positions, first) if first is not None else {}},
        "end": {"positions": {d._name: float(strategy.getposition(d).size) for d in strategy.datas
                              if strategy.getposition(d).size},
                "cash": float(session.broker.getcash()), "value": float(session.broker.getvalue())},
        "carry": carried(strategy, session, name),
        "controls": applied_controls(session),
    }


def applied_controls(session) -> list[str]:
    """The operator's controls the session applied (``ops.controls``), in words: the replay applies
    none, so a session with one is not compared (its differences would be the operator's)."""
    if session.trading_from is None:
        return []
    return [f"{c['action']}{' ' + c['symbol'] if c['symbol'] else ''} by {c['who']} at the bar of {c['bar_datetime']}"
            for c in reversed(session.journal.controls())
            if c["status"] == "applied" and c["bar_datetime"] is not None and c["bar_datetime"] >= session.trading_from]


def carried(strategy, session, name: str) -> dict:
    """What the next session starts from if nothing happens in between: the state the journal saved
    last, the cash, the positions with their average prices, and the open orders (each open family:
    an entry and its legs, an oco pair) as the journal rows them, with their fills."""
    from brokers.live.reconcile import open_families

    journal = session.journal
    saved = journal.load_state(name)
    families, fills = [], []
    for root, legs in open_families(journal.orders()).values():
        families.append({"root": dataclasses.asdict(root), "legs": [dataclasses.asdict(leg) for leg in legs]})
        for row in (root, *legs):
            fills += journal.fills(row.client_order_id)
    return {"saved_bar": saved[0].isoformat() if saved else None, "cash": float(session.broker.getcash()),
            "positions": {d._name: [float(p.size), float(p.price)] for d in strategy.datas
                          if (p := session.broker.getposition(d)).size},
            "families": families, "fills": fills}


def record_session(folder: Path, strategy, session, *, name: str, order_id_prefix: str,
                   model: str | None) -> dict:
    """Write the session's bars (``folder/bars/``), its headlines (``folder/news.csv``, when its
    features read news) and ``folder/session.json``; returns the latter."""
    write_bars(folder / "bars", received_bars(strategy))
    if getattr(session, "news", None) is not None:
        session.news.write_csv(folder / NEWS_FILE)
    facts = session_facts(strategy, session, name=name, order_id_prefix=order_id_prefix, model=model)
    (folder / SESSION_FILE).write_text(json.dumps(facts, indent=2, default=str))
    return facts


def started_with(facts: dict) -> str | None:
    """What the session held at its start that a replay from flat cannot reproduce (None: nothing)."""
    held = sorted(facts["start"]["positions"])
    state = (facts.get("saved") or {}).get("state") or {}
    plans = [plan["symbol"] for plan in state.get("plans", [])]
    if held or plans or state.get("orders"):
        what = ", ".join(held or plans) or f"{len(state['orders'])} order(s) in flight"
        return f"the session started with positions or open orders ({what})"
    return None


def start_carry(facts: dict, previous: dict | None) -> tuple[dict | None, str | None]:
    """The previous session's ``carry`` when it is where this session started (the state saved after
    the same bar, the same positions and cash at the start), else (None, why not)."""
    if previous is None or "carry" not in previous:
        return None, "no record of the previous session's end to start the replay from"
    carry = previous["carry"]
    saved_bar = (facts.get("saved") or {}).get("bar_datetime")
    if carry["saved_bar"] != saved_bar:
        return None, (f"the previous session's record ends with the state of {carry['saved_bar']}, this session "
                      f"started from the state of {saved_bar}")
    start = {symbol: held["size"] for symbol, held in facts["start"]["positions"].items()}
    carried_sizes = {symbol: size for symbol, (size, _) in carry["positions"].items()}
    if start != carried_sizes or abs(facts["start"]["cash"] - carry["cash"]) > 0.01:
        return None, (f"the account changed between the sessions (positions {carried_sizes} and cash "
                      f"{carry['cash']:.2f} at the previous end, {start} and {facts['start']['cash']:.2f} "
                      f"at this start)")
    return carry, None


# ---- the replay -----------------------------------------------------------------------------------
class _FromBar:
    """The live ``TradePolicy`` for a replay: history warms up, trading starts at the session's first
    traded bar."""

    def __init__(self, first: dt.datetime):
        self.first = first

    def trades(self, group: BarGroup) -> bool:
        return group.datetime >= self.first


def replay(cfg: Config, bars: dict[str, pd.DataFrame], facts: dict, *, strategy_cls, work_dir: Path,
           carry: dict | None = None):
    """The session's bars through the live path on a simulated venue with the session's start cash:
    (the replay's records, its positions at the end). ``carry``: the previous session's end, for a
    session that started with positions or open orders: the venue and a fresh journal are seeded with
    them and the live broker's start reconciliation claims them, as at a restart."""
    from brokers.sim_venue import SimulatedVenue
    from engine.live import _FEED_TIMEFRAMES, LiveSession, _model_param

    first = dt.datetime.fromisoformat(facts["trading_from"])
    source = ReplaySource(bars)
    # as live: history bars are not live, the bars from the first traded one are
    source.groups = [BarGroup(g.datetime, g.bars, g.datetime >= first) for g in source.groups]
    saved = facts.get("saved")
    saved = None if saved is None else (dt.datetime.fromisoformat(saved["bar_datetime"]), saved["state"])
    venue = SimulatedVenue(facts["start"]["cash"], commission_bps=cfg.costs.commission_bps,
                           slippage_bps=cfg.costs.slippage_bps)
    journal = Journal(sqlite_url(work_dir / "replay-journal.sqlite"), sqlite_synchronous=cfg.live.sqlite_synchronous)
    clock = BarClock(source, poll_seconds=cfg.live.poll_seconds)
    if carry is None:
        clock.add_listener(venue.on_bars)
    else:
        seed(venue, journal, carry)
        clock.add_listener(_AfterBar(venue, saved[0]))
    session = LiveSession(cfg, strategy_cls, clock, venue, journal, sorted(bars), _FEED_TIMEFRAMES[cfg.live.timeframe],
                          name=facts["name"], order_id_prefix=facts["order_id_prefix"],
                          commission_bps=cfg.costs.commission_bps, policy=_FromBar(first), saved=saved,
                          strategy_kwargs=_model_param(facts.get("model")))
    try:
        strategy = session.run()
    finally:
        journal.close()
    rec = collect_records(strategy)
    rec.equity = rec.equity[pd.to_datetime(rec.equity["datetime"]) >= pd.Timestamp(first)]
    positions = {d._name: float(strategy.getposition(d).size) for d in strategy.datas if strategy.getposition(d).size}
    return rec, positions


class _AfterBar:
    """A seeded venue's bar listener: the bars up to the last one the previous session decided only
    give prices (its orders met them then, live); orders are tried from the next one."""

    def __init__(self, venue, last: dt.datetime):
        self.venue, self.last = venue, last

    def __call__(self, group: BarGroup) -> None:
        if group.datetime > self.last:
            self.venue.on_bars(group)
        else:
            with self.venue._lock:
                self.venue.engine.observe_bars(group.datetime, group.bars)


def seed(venue, journal: Journal, carry: dict) -> None:
    """The venue and the replay's journal as the previous session left them: positions, open orders
    (the venue's, and the journal's rows with their fills) and the journal's baseline, so that the
    start's book check finds the positions explained."""
    from brokers.live.reconcile import BASELINE_KEY, net_fills

    def row_of(row: dict) -> dict:
        stamp = row.get("bar_datetime")
        return {**row, "bar_datetime": dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp}

    families = [(row_of(f["root"]), [row_of(leg) for leg in f["legs"]]) for f in carry["families"]]
    positions = {symbol: (size, price) for symbol, (size, price) in carry["positions"].items()}
    filled_at = {}
    for fill in carry["fills"]:
        when = pd.Timestamp(fill["filled_datetime"]).to_pydatetime()
        filled_at[fill["client_order_id"]] = max(when, filled_at.get(fill["client_order_id"], when))
    with venue._lock:
        venue.engine.seed(positions, [({**root, "filled_at": filled_at.get(root["client_order_id"])},
                                       [{**leg, "filled_at": filled_at.get(leg["client_order_id"])} for leg in legs])
                                      for root, legs in families])
    for root, legs in families:
        for row in (root, *legs):
            journal.adopt(row)
    fills = carry["fills"]
    for fill in fills:
        when = fill["filled_datetime"]
        journal.record_fill(execution_id=fill["execution_id"], client_order_id=fill["client_order_id"],
                            symbol=fill["symbol"], side=fill["side"], qty=fill["qty"], price=fill["price"],
                            commission=fill["commission"], position_qty=fill.get("position_qty"),
                            filled_datetime=dt.datetime.fromisoformat(when) if isinstance(when, str) else when)
    baseline = {symbol: size for symbol, (size, _) in positions.items()}
    for symbol, qty in net_fills(fills).items():
        baseline[symbol] = baseline.get(symbol, 0.0) - qty
    journal.set_meta(BASELINE_KEY, {s: q for s, q in baseline.items() if abs(q) > 1e-9})


def _tables(orders: pd.DataFrame, equity: pd.DataFrame, positions: dict[str, float]) -> SessionTables:
    return SessionTables(orders=orders, positions=positions, start_equity=float(equity["equity"].iloc[0]),
                         end_equity=float(equity["equity"].iloc[-1]))


# ---- the report -----------------------------------------------------------------------------------
def reconcile_folder(cfg: Config, folder: Path, *, strategy_cls=None, state_dir: Path | None = None,
                     observers=None) -> tuple[Reconciliation, Path]:
    """Replay a session folder (``state_dir/sessions/STAMP``, with its ``bars/`` and ``session.json``)
    and compare it with the live records there (``orders.csv``, ``equity.csv``); write the dated
    report under ``state_dir/reconciliation/`` (default: the folder's ``../..``) and tell ``observers``
    (``reconciliation_mismatch``) when a threshold is passed. Returns (the result, the report's .json)."""
    from strategies import get_strategy

    folder = Path(folder)
    state_dir = Path(state_dir) if state_dir is not None else folder.parent.parent
    facts = json.loads((folder / SESSION_FILE).read_text())
    strategy_cls = strategy_cls or get_strategy(cfg.backtest.strategy)
    trading_from = facts["trading_from"]
    date = (dt.datetime.fromisoformat(trading_from).date() if trading_from else dt.date.today()).isoformat()
    carry, reason = None, None
    if trading_from is None:
        reason = "the session never traded (warm-up only)"
    elif facts.get("controls"):
        reason = f"an operator's controls changed it, which the replay does not apply: {'; '.join(facts['controls'])}"
    elif started_with(facts) is not None:
        carry, why_not = start_carry(facts, previous_session(folder))
        if carry is None:
            reason = f"{started_with(facts)}, and {why_not}"
    if reason is not None:
        result = not_compared(facts["name"], date, reason)
    else:
        live_orders = pd.read_csv(folder / "orders.csv")
        live_equity = pd.read_csv(folder / "equity.csv")
        with tempfile.TemporaryDirectory(prefix="reconciliation-") as work:
            replay_rec, replay_positions = replay(replay_config(cfg, folder), read_bars(folder / "bars"), facts,
                                                  strategy_cls=strategy_cls, work_dir=Path(work), carry=carry)
        result = reconcile(_tables(live_orders, live_equity, facts["end"]["positions"]),
                           _tables(replay_rec.orders, replay_rec.equity, replay_positions),
                           Thresholds.of(cfg.reconciliation), session=facts["name"], date=date)
        if carry is not None:
            result.note = (f"{started_with(facts)}: the replay started from the previous session's end, seeded "
                           f"into the simulated venue and its journal.")
    path = write_report(state_dir / "reconciliation", result, folder)
    announce(result, path, observers)
    return result, path


def announce(result: Reconciliation, path: Path, observers=None) -> None:
    """Log the result; beyond a threshold, tell ``observers`` (``reconciliation_mismatch``: the alerts)."""
    if result.alarms:
        log.warning("%s (report: %s)", result.summary(), path)
        if observers is not None:
            observers.reconciliation_mismatch(f"{result.summary()} (report: {path})")
    elif not result.compared:
        log.warning("%s (report: %s)", result.summary(), path)
    else:
        log.info("%s (report: %s)", result.summary(), path)


def previous_session(folder: Path) -> dict | None:
    """The ``session.json`` of the session before ``folder`` (by its stamp), if recorded."""
    earlier = sorted(p for p in folder.parent.iterdir() if p.is_dir() and p.name < folder.name)
    path = earlier[-1] / SESSION_FILE if earlier else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def write_report(folder: Path, result: Reconciliation, session_folder: Path) -> Path:
    """``folder/DATE.json`` and ``.md`` (``DATE-2`` ... for a second session of the same day)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, n = result.date, 1
    while (folder / f"{stem}.json").exists():
        n += 1
        stem = f"{result.date}-{n}"
    report = {**result.to_dict(), "session_folder": str(session_folder), "summary": result.summary()}
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    (folder / f"{stem}.md").write_text(result.to_markdown())
    return path


def reconcile_live_session(cfg: Config, strategy, session, folder: Path, *, strategy_cls, name: str,
                           order_id_prefix: str, model: str | None, state_dir: Path,
                           observers=None) -> Path | None:
    """The runner's call after a session (its records already in ``folder``): record what the replay
    needs, then replay and report in a child process, and alert here. The child keeps the replay
    apart from the live process: its log lines (a replayed session logs like a live one) go to
    ``folder/reconciliation.log``, not the live log, and whatever the strategy class keeps at class
    level is not touched. A failure is logged, never raised: the next session must start."""
    try:
        record_session(folder, strategy, session, name=name, order_id_prefix=order_id_prefix, model=model)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no thread or lock of this one
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result, path = pool.submit(_reconcile_apart, cfg, folder, strategy_cls, state_dir).result()
        announce(result, path, observers)
        return path
    except Exception:
        log.exception("the daily reconciliation of %s failed", folder)
        return None


def _reconcile_apart(cfg: Config, folder: Path, strategy_cls, state_dir: Path) -> tuple[Reconciliation, Path]:
    """:func:`reconcile_folder` in the child process, its log in the session's folder."""
    handler = logging.FileHandler(Path(folder) / "reconciliation.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        return reconcile_folder(cfg, folder, strategy_cls=strategy_cls, state_dir=state_dir)
    finally:
        handler.close()


def main(argv: list[str] | None = None) -> int:
    """By hand, on a past session: ``python -m engine.daily_reconciliation --config live.toml
    state/sessions/STAMP`` writes its report again (as ``DATE-n`` beside the first) and prints it."""
    import argparse

    from config import load_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path, help="a session's folder (state_dir/sessions/STAMP)")
    parser.add_argument("--config", type=Path, default=None, help="the live deployment's config file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result, path = reconcile_folder(load_config(args.config), args.folder)
    print(result.to_markdown())
    print(f"report: {path}")
    return 1 if result.alarms else 0


if __name__ == "__main__":
    raise SystemExit(main())
