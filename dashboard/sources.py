"""Where the dashboard's views come from: a finished run folder (``backtest``, ``live --replay``: its
records) or a live journal (SQLite or PostgreSQL, read while the session writes it).

Both answer the same questions (:class:`Source`): each view's data as a JSON-ready dict, with
``as_of`` (the wall time of its newest record, UTC) so the page can tell how old it is. A journal is
read incrementally: the equity curve, the fills and the benchmark keep what they read and ask the
database only for rows after the last id, so an answer stays fast on a year of minute bars.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from dashboard import figures
from dashboard.figures import finite
from ops.controls import ACTIONS



def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return pd.Timestamp(value).isoformat()
    return str(value)


def _either(first, second):
    """The first that is known (a strategy's monitoring() or its risk figures)."""
    return first if first is not None else second


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN -> None, timestamps -> ISO)."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (finite(v) if isinstance(v, (float, np.floating)) else
                        int(v) if isinstance(v, np.integer) else _iso(v) if isinstance(v, (pd.Timestamp, dt.datetime))
                        else v) for k, v in row.items()})
    return out


TAIL_BYTES = 4 << 20  # a log's last 4 MB are searched: an answer stays fast on a months-long live.log


def tail_lines(path: Path | None, n: int, query: str = "") -> list[str]:
    """The last ``n`` lines of a text file containing ``query`` (case-insensitive), oldest first,
    among its last :data:`TAIL_BYTES`."""
    if path is None or not Path(path).is_file():
        return []
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    lines = text.splitlines()[1 if size > TAIL_BYTES else 0:]  # the first may be cut
    query = query.lower()
    return [line for line in lines if not query or query in line.lower()][-n:]


class Source:
    """What every source answers; ``kind``: ``run`` (finished: never stale, no controls) or ``live``."""

    kind = "run"
    controls_allowed = False

    def __init__(self, cfg):
        self.cfg = cfg
        self.sectors: dict[str, str] = {}
        if cfg.data.sector_map and Path(cfg.data.sector_map).is_file():
            from feeds.loader import load_sector_map

            self.sectors = load_sector_map(cfg.data.sector_map)

    # each view: a dict with "as_of" (ISO, UTC, or None for a finished run)
    def title(self) -> str:
        raise NotImplementedError

    def symbols(self) -> list[str]:
        raise NotImplementedError

    def overview(self) -> dict:
        raise NotImplementedError

    def positions(self) -> dict:
        raise NotImplementedError

    def orders(self, *, limit: int = 200, offset: int = 0, symbol: str | None = None,
               status: str | None = None) -> dict:
        raise NotImplementedError

    def risk(self) -> dict:
        raise NotImplementedError

    def models(self) -> dict:
        raise NotImplementedError

    def chart(self, symbol: str, bars: int = 500) -> dict:
        raise NotImplementedError

    def logs(self, which: str, query: str = "", lines: int = 500) -> dict:
        raise NotImplementedError

    def controls(self) -> dict:
        return {"as_of": None, "controls": [], "allowed": False}

    def request_control(self, action: str, *, who: str, symbol: str | None = None) -> int:
        raise PermissionError("a finished run takes no controls")

    # ---- shared pieces -------------------------------------------------------------------------
    def _risk_from(self, *, equity: pd.Series, held: pd.DataFrame, closes: pd.DataFrame, status: dict) -> dict:
        """The risk view: the gates from the session's status (live) or the equity curve (a run),
        sector and correlation exposure of the holdings, and the book's historical VaR."""
        r = self.cfg.risk
        last_equity = float(equity.iloc[-1]) if len(equity) else None
        peak = float(equity.max()) if len(equity) else None
        day = equity[equity.index.normalize() == equity.index[-1].normalize()] if len(equity) else equity
        before = equity[equity.index < day.index[0]] if len(day) else equity
        day_start = float(before.iloc[-1]) if len(before) else (float(day.iloc[0]) if len(day) else None)
        gates = {
            "daily_loss": finite(status.get("day_loss", 1.0 - last_equity / day_start if day_start else None)),
            "daily_loss_limit": status.get("daily_loss_limit", r.daily_loss_limit),
            "daily_loss_limit_reached": _either(status.get("daily_loss_limit_reached"),
                                                (status.get("daily_loss") or {}).get("blocked")),
            "drawdown": finite(status.get("drawdown", 1.0 - last_equity / peak if peak else None)),
            "kill_switch_limit": status.get("kill_switch_limit", r.max_drawdown),
            "kill_switch_tripped": _either(status.get("kill_switch_tripped"),
                                           (status.get("kill_switch") or {}).get("tripped")),
        }
        values = held.set_index("symbol")["value"] if len(held) else pd.Series(dtype=float)
        returns = closes.pct_change(fill_method=None).iloc[1:] if len(closes) > 1 else pd.DataFrame()
        weights = values / last_equity if last_equity else values
        return {
            "gates": gates,
            "risk_score": finite(status.get("risk_score")),
            "risk_components": status.get("risk_components"),
            "sectors": figures.sector_exposure(values, self.sectors, last_equity or 0.0),
            "max_sector_weight": r.max_sector_weight,
            "correlation": {**figures.correlation_exposure(returns.tail(r.correlation_bars), list(values.index)),
                            "limit": r.max_correlation},
            "var": {"value": figures.portfolio_var(returns.tail(r.var_bars), weights, r.var_confidence),
                    "confidence": r.var_confidence, "bars": int(min(len(returns), r.var_bars)),
                    "limit": r.var_limit},
        }


# ---- a finished run folder ------------------------------------------------------------------------
class RunFolder(Source):
    """``backtest`` or ``live --replay`` output: orders/trades/positions/equity CSVs, metrics.json,
    decisions.log; the bars (candles, buy-and-hold, VaR) from the data the run's config names."""

    def __init__(self, folder: Path, cfg):
        super().__init__(cfg)
        self.folder = Path(folder)
        missing = [n for n in ("equity.csv", "metrics.json", "orders.csv", "trades.csv", "positions.csv")
                   if not (self.folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.folder} is not a run folder: no {', '.join(missing)}")
        self.metrics = json.loads((self.folder / "metrics.json").read_text(encoding="utf-8"))
        read = lambda name, dates: pd.read_csv(self.folder / name, parse_dates=dates)  # noqa: E731
        self.equity_frame = read("equity.csv", ["datetime"])
        self.equity = self.equity_frame.set_index("datetime")["equity"].astype(float)
        self.trades_frame = read("trades.csv", ["entry_datetime", "exit_datetime"])
        self.orders_frame = read("orders.csv", ["datetime", "filled_datetime"])
        self.positions_frame = read("positions.csv", ["datetime"])
        self._bars: dict[str, pd.DataFrame] | None = None
        self._lock = threading.Lock()
        self._views: dict[str, dict] = {}

    def title(self) -> str:
        mode = self.metrics.get("mode", "backtest")
        return f"{self.metrics.get('strategy', '?')} {mode}: {self.folder.name}"

    def symbols(self) -> list[str]:
        """The run's symbols, the most traded first (the chart's default)."""
        counts = self.trades_frame["symbol"].value_counts()
        names = self.metrics.get("symbols") or self.orders_frame["symbol"].unique().tolist()
        return sorted(names, key=lambda s: (-int(counts.get(s, 0)), s))

    def bars(self) -> dict[str, pd.DataFrame]:
        """The run's bars, loaded once from its config's data paths (symbols whose file is gone: none)."""
        with self._lock:
            if self._bars is None:
                from feeds.loader import load_universe

                data = (self.metrics.get("config") or {}).get("data") or {}
                paths = [p for p in data.get("paths", self.cfg.data.paths) if Path(p).exists()]
                try:
                    universe = load_universe(paths, invalid_rows="drop") if paths else {}
                except Exception:  # a moved or changed data folder: the views without candles
                    universe = {}
                wanted = set(self.symbols())
                self._bars = {s: f for s, f in universe.items() if s in wanted}
            return self._bars

    def _closes(self) -> pd.DataFrame:
        bars = self.bars()
        if not bars:
            return pd.DataFrame()
        closes = pd.DataFrame({s: f["close"] for s, f in bars.items()})
        return closes.loc[(closes.index >= self.equity.index[0]) & (closes.index <= self.equity.index[-1])]

    def _cached(self, name: str, build) -> dict:
        if name not in self._views:  # a finished run never changes
            self._views[name] = build()
        return self._views[name]

    def _benchmark(self) -> pd.Series | None:
        from analyzers.stats import buy_and_hold

        bars = self.bars()
        if not bars or len(self.equity) < 2:
            return None
        c = self.cfg.costs
        return buy_and_hold(bars, float(self.equity.iloc[0]), commission_bps=c.commission_bps,
                            slippage_bps=c.slippage_bps, calendar=pd.DatetimeIndex(self.equity.index))["equity"]

    def overview(self) -> dict:
        def build():
            m = self.metrics
            last = self.equity_frame.iloc[-1]
            achieved = {k: m.get(k) for k in ("win_rate", "avg_win_loss_ratio", "sharpe", "max_drawdown",
                                                "annual_multiple", "trades_per_day", "avg_holding_days")}
            open_trades = self.trades_frame[self.trades_frame["exit_reason"] == "end"]
            halted = m.get("kill_switch")
            return {
                "as_of": None, "kind": self.kind, "title": self.title(),
                "state": "halted_kill_switch" if halted else "finished",
                "state_reason": halted["reason"] if halted else f"run ended {_iso(self.equity.index[-1])}",
                "equity_curve": figures.equity_curve(self.equity, self._benchmark(), self.cfg.dashboard.chart_points),
                "cards": {"equity": finite(last["equity"]), "cash": finite(last["cash"]),
                          "total_return": finite(m.get("total_return")), "max_drawdown": finite(m.get("max_drawdown")),
                          "win_rate": finite(m.get("win_rate")), "n_trades": m.get("n_trades"),
                          "exposure": finite(m.get("exposure")),
                          "unrealised_pnl": finite(float(open_trades["pnl"].sum())) if len(open_trades) else 0.0,
                          "buy_and_hold_return": finite((m.get("buy_and_hold") or {}).get("total_return"))},
                "targets": figures.targets(achieved, dict(self.cfg.report.blueprint_targets)),
                "benchmark_note": None if len(self.bars()) == len(self.symbols()) else
                f"buy and hold of the {len(self.bars())} of {len(self.symbols())} symbols whose bars were found",
            }
        return self._cached("overview", build)

    def positions(self) -> dict:
        def build():
            end = self.equity.index[-1]
            last = self.positions_frame[self.positions_frame["datetime"] == end]  # held at the run's last bar
            if last.empty:
                return {"as_of": None, "at": _iso(end), "positions": [], "mismatches": 0, "note": "flat at the end"}
            open_trades = self.trades_frame[self.trades_frame["exit_reason"] == "end"].set_index("symbol")
            rows = []
            for p in last.itertuples(index=False):
                trade = open_trades.loc[p.symbol] if p.symbol in open_trades.index else None
                entry = float(trade["entry_price"]) if trade is not None else None
                rows.append({"symbol": p.symbol, "size": finite(p.size), "entry": finite(entry), "last": finite(p.price),
                             "unrealised_pnl": finite(p.size * (p.price - entry)) if entry else None,
                             "stop": finite(p.stop), "trailing": None,
                             "target": finite(trade["target"]) if trade is not None else None,
                             "confidence_entry": finite(trade["confidence"]) if trade is not None else None,
                             "confidence_now": None,
                             "bars_held": int(trade["bars_held"]) if trade is not None else None,
                             "sector": self.sectors.get(p.symbol.upper()), "broker_size": None, "mismatch": False})
            return {"as_of": None, "at": _iso(last["datetime"].iloc[0]), "positions": rows, "mismatches": 0}
        return self._cached("positions", build)

    def orders(self, *, limit=200, offset=0, symbol=None, status=None) -> dict:
        frame = self.orders_frame
        if symbol:
            frame = frame[frame["symbol"] == symbol]
        if status:
            frame = frame[frame["status"] == status]
        total = len(frame)
        page = frame.iloc[::-1].iloc[offset: offset + limit]
        bars = self.bars()
        rows = []
        for o in page.itertuples(index=False):
            decision = bars.get(o.symbol)
            price = None
            if decision is not None and o.datetime in decision.index:
                price = float(decision.at[o.datetime, "close"])
            filled = o.status == "completed"
            rows.append({"id": o.client_order_id, "created": _iso(o.datetime), "symbol": o.symbol, "side": o.side,
                         "qty": finite(o.size), "type": o.type, "status": o.status, "reason": o.reason,
                         "limit_or_stop": finite(o.stop_price), "fill_price": finite(o.price) if filled else None,
                         "decision_price": finite(price),
                         "slippage_bps": figures.order_slippage(o.side, o.price, price) if filled else None,
                         "status_reason": None,
                         "history": [{"at": _iso(o.datetime), "status": "created"},
                                     *([{"at": _iso(o.filled_datetime), "status": o.status}]
                                       if not pd.isna(o.filled_datetime) else [])]})
        return {"as_of": None, "total": total, "offset": offset, "orders": rows,
                "rejected": int(self.orders_frame["status"].isin(["rejected", "margin"]).sum())}

    def risk(self) -> dict:
        def build():
            frame = self.positions_frame
            held = frame[frame["datetime"] == self.equity.index[-1]]
            halted = self.metrics.get("kill_switch")
            view = self._risk_from(equity=self.equity, held=held, closes=self._closes(),
                                   status={"kill_switch_tripped": bool(halted)})
            return {"as_of": None, **view}
        return self._cached("risk", build)

    def models(self) -> dict:
        def build():
            wf = self.metrics.get("walk_forward")
            confidences = self.trades_frame["confidence"].dropna().tolist() if len(self.trades_frame) else []
            if not wf:
                return {"as_of": None, "model_id": None, "note": "this run's strategy trains no models",
                        "confidence": figures.histogram(confidences)}
            folds = wf.get("folds") or []
            return {"as_of": None, "model_id": ", ".join(wf.get("models") or []),
                    "training_window": [folds[0]["train_start"], folds[-1]["train_end"]] if folds else None,
                    "retrains": wf.get("retrains"),
                    "folds": [{k: f.get(k) for k in ("fold", "train_start", "train_end", "test_start", "test_end",
                                                     "accuracy", "auc", "ic")} for f in folds],
                    "out_of_sample": {k: wf.get(k) for k in ("directional_accuracy", "directional_accuracy_ci95",
                                                            "auc", "ic", "log_loss", "samples", "leak_alarm")},
                    "baselines": wf.get("baselines"), "reliability": wf.get("reliability"),
                    "confidence": figures.histogram(confidences), "drift": [],
                    "note": "confidence: of the trades' entries; feature drift is measured live only"}
        return self._cached("models", build)

    def chart(self, symbol: str, bars: int = 500) -> dict:
        frame = self.bars().get(symbol)
        trades = self.trades_frame[self.trades_frame["symbol"] == symbol]
        levels = self.positions_frame[self.positions_frame["symbol"] == symbol][["datetime", "stop"]]
        if frame is None:
            return {"as_of": None, "symbol": symbol, "candles": None, "note": f"no bars for {symbol} in the run's data"}
        frame = frame.loc[frame.index <= self.equity.index[-1]].tail(bars)
        start = frame.index[0] if len(frame) else None
        trades = trades[(trades["exit_datetime"].isna()) | (trades["exit_datetime"] >= start)] if start is not None else trades
        levels = levels[levels["datetime"] >= start] if start is not None else levels
        return {"as_of": None, "symbol": symbol, **_candles(frame), "trades": _records(trades[
            ["entry_datetime", "exit_datetime", "entry_price", "exit_price", "initial_stop", "target", "exit_reason",
             "pnl"]]), "stops": {"t": [_iso(t) for t in levels["datetime"]], "stop": [finite(v) for v in levels["stop"]]}}

    def logs(self, which: str, query: str = "", lines: int = 500) -> dict:
        path = self.folder / "decisions.log" if which == "decisions" else None
        return {"as_of": None, "which": which, "lines": tail_lines(path, lines, query),
                "note": None if path is not None else "a finished run keeps its decisions.log, not a session log"}


def _candles(frame: pd.DataFrame) -> dict:
    return {"candles": {"t": [t.isoformat() for t in frame.index],
                        **{c: [finite(v) for v in frame[c]] for c in ("open", "high", "low", "close")}}}


# ---- a live journal -------------------------------------------------------------------------------
class LiveJournal(Source):
    """A live session's journal (``--journal URL`` or a state folder's journal.sqlite) and, with a
    state folder, its ``live.log``. Reads while the session writes; writes only controls."""

    kind = "live"

    def __init__(self, url: str, cfg, *, state_dir: Path | None = None):
        super().__init__(cfg)
        from brokers.journal import Journal

        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
            raise FileNotFoundError(f"no journal at {url[len('sqlite:///'):]}")
        self.journal = Journal(url)
        self.state_dir = Path(state_dir) if state_dir else None
        self.token_free_url = self.journal._safe_url()
        self._lock = threading.Lock()
        # the equity curve (one row per bar: a restart's warm-up journals history bars again, the first
        # row of a bar is the one it traded), grown by the rows after the last id read
        self._equity_id, self._equity_at = 0, None
        self._equity_t = np.array([], dtype="datetime64[us]")
        self._equity_v = np.array([], dtype=float)
        # the bars: the last ones' closes (the risk view's returns), each symbol's first and last close,
        # and the benchmark at each day's last bar, read once per day (bars are millions of rows a year)
        risk = cfg.risk
        self._window_bars = max(risk.var_bars, risk.correlation_bars) + 2
        self._bars_id: int | None = None
        self._window: deque[tuple[dt.datetime, str, float]] = deque()
        self._first_close: dict[str, float] = {}
        self._last_close: dict[str, float] = {}
        self._daily: dict[np.datetime64, dict[str, float]] = {}  # a day's last bar -> the closes then
        self._fills_id, self._fills = 0, []
        self._cache: dict[str, tuple] = {}  # view part -> (the ids it was computed at, its value)

    def close(self) -> None:
        self.journal.close()

    @property
    def controls_allowed(self) -> bool:
        return True

    def title(self) -> str:
        status = self._status()
        return f"live: {status.get('session') or 'session'} ({self.token_free_url})"

    # ---- incremental reads -----------------------------------------------------------------------
    def _read(self, query):
        """The query's rows (tuples), on the journal's retrying reader."""
        return self.journal._read(lambda conn: conn.execute(query).all())

    def _mappings(self, query) -> list:
        """The query's rows as mappings (by column name)."""
        return self.journal._read(lambda conn: conn.execute(query).mappings().all())

    def _scalar(self, query):
        return self.journal._read(lambda conn: conn.execute(query).scalar())

    def _refresh(self) -> None:
        """The equity rows, bars and fills written since the last call (indexed by id)."""
        from brokers.journal import EQUITY, FILLS

        with self._lock:
            rows = self._read(select(EQUITY.c.id, EQUITY.c.bar_datetime, EQUITY.c.equity, EQUITY.c.recorded_at)
                              .where(EQUITY.c.id > self._equity_id).order_by(EQUITY.c.id))
            if rows:
                self._equity_id, self._equity_at = rows[-1][0], rows[-1][3] or self._equity_at
                last = self._equity_t[-1] if len(self._equity_t) else None
                times, values = [], []
                for _, when, value, _ in rows:
                    stamp = np.datetime64(when, "us")
                    if last is None or stamp > last:
                        times.append(stamp)
                        values.append(value)
                        last = stamp
                self._equity_t = np.concatenate([self._equity_t, np.array(times, dtype="datetime64[us]")])
                self._equity_v = np.concatenate([self._equity_v, np.array(values, dtype=float)])
            self._refresh_bars()
            for row in self._read(select(FILLS).where(FILLS.c.id > self._fills_id).order_by(FILLS.c.id)):
                self._fills_id = row.id
                self._fills.append(row._asdict())

    def _refresh_bars(self) -> None:
        """The first read takes the last ``_window_bars`` bars and each symbol's first close; then only
        the bars after the last id."""
        from brokers.journal import BARS

        if self._bars_id is None:
            top = self._scalar(select(func.max(BARS.c.id)))
            if top is None:
                return
            symbols = self._status().get("symbols") or [r[0] for r in self._read(select(BARS.c.symbol).distinct())]
            for symbol in symbols:
                first = self._read(select(BARS.c.close).where(BARS.c.symbol == symbol)
                                   .order_by(BARS.c.bar_datetime, BARS.c.id).limit(1))
                if first:
                    self._first_close[symbol] = first[0][0]
            since = (self._equity_t[max(0, len(self._equity_t) - self._window_bars)].astype(dt.datetime)
                     if len(self._equity_t) else None)
            query = select(BARS.c.bar_datetime, BARS.c.symbol, BARS.c.close).where(BARS.c.id <= top)
            rows = self._read((query.where(BARS.c.bar_datetime >= since) if since is not None else query)
                              .order_by(BARS.c.id))
            self._bars_id = top
        else:
            rows = self._read(select(BARS.c.id, BARS.c.bar_datetime, BARS.c.symbol, BARS.c.close)
                              .where(BARS.c.id > self._bars_id).order_by(BARS.c.id))
            if rows:
                self._bars_id = rows[-1][0]
            rows = [row[1:] for row in rows]
        newest = self._window[-1][0] if self._window else None
        for when, symbol, close in rows:
            if newest is not None and when < newest:
                continue  # a restart's warm-up journals history bars again
            newest = when
            self._window.append((when, symbol, close))
            self._first_close.setdefault(symbol, close)
            self._last_close[symbol] = close
        if self._window:  # keep the last _window_bars timestamps
            stamps = sorted({t for t, _, _ in self._window})
            if len(stamps) > self._window_bars:
                cut = stamps[-self._window_bars]
                while self._window and self._window[0][0] < cut:
                    self._window.popleft()

    def _cached(self, name: str, build, key=None):
        """``build()``, again only once ``key`` changed (default: a new equity row, bar or fill read)."""
        key = key if key is not None else (self._equity_id, self._bars_id, self._fills_id)
        held = self._cache.get(name)
        if held is None or held[0] != key:
            held = self._cache[name] = (key, build())
        return held[1]

    def _equity(self) -> pd.Series:
        return pd.Series(self._equity_v, index=pd.DatetimeIndex(self._equity_t), dtype=float)

    def _closes_frame(self) -> pd.DataFrame:
        if not self._window:
            return pd.DataFrame()
        frame = pd.DataFrame(list(self._window), columns=["t", "symbol", "close"])
        return frame.pivot_table(index="t", columns="symbol", values="close", aggfunc="last").ffill()

    def _benchmark(self) -> pd.Series | None:
        """Equal-weight buy-and-hold: each symbol's close over its first (no costs), averaged, at each
        day's last bar and now. A past day's closes are read once (one query for the days not read yet)."""
        from brokers.journal import BARS

        if not self._first_close or not len(self._equity_t):
            return None
        days = self._equity_t.astype("datetime64[D]")
        ends = self._equity_t[np.append(np.flatnonzero(days[1:] != days[:-1]), len(days) - 1)][:-1]
        missing = [t for t in ends if t not in self._daily]
        for start in range(0, len(missing), 500):
            chunk = [t.astype(dt.datetime) for t in missing[start: start + 500]]
            for when, symbol, close in self._read(select(BARS.c.bar_datetime, BARS.c.symbol, BARS.c.close)
                                                  .where(BARS.c.bar_datetime.in_(chunk))):
                self._daily.setdefault(np.datetime64(when, "us"), {})[symbol] = close
        first = self._first_close
        carried: dict[str, float] = {}
        times, values = [], []
        for t in ends:
            carried.update(self._daily.get(t, {}))
            ratios = [carried[s] / first[s] for s in carried if first.get(s)]
            if ratios:
                times.append(t)
                values.append(float(np.mean(ratios)))
        now = [self._last_close[s] / first[s] for s in self._last_close if first.get(s)]
        if now:
            times.append(self._equity_t[-1])
            values.append(float(np.mean(now)))
        return pd.Series(values, index=pd.DatetimeIndex(np.array(times, dtype="datetime64[us]")), dtype=float)

    def _fills_frame(self) -> pd.DataFrame:
        columns = ["symbol", "side", "qty", "price", "commission", "filled_datetime", "client_order_id"]
        return pd.DataFrame(self._fills, columns=None).reindex(columns=columns) if self._fills else \
            pd.DataFrame(columns=columns)

    def _status(self) -> dict:
        rows = self.journal.session_status()
        if not rows:
            return {}
        row = rows[0]
        return {**(row["status"] or {}), "session": row["session"], "updated_at": _iso(row["updated_at"])}

    def _latest_positions(self) -> tuple[dt.datetime | None, pd.DataFrame]:
        from brokers.journal import POSITIONS

        last = self._scalar(select(func.max(POSITIONS.c.bar_datetime)))
        equity_last = self._equity_t[-1].astype(dt.datetime) if len(self._equity_t) else None
        if last is None or (equity_last is not None and last < equity_last):
            return equity_last, pd.DataFrame(columns=["symbol", "qty", "avg_price", "market_price"])
        rows = self._read(select(POSITIONS.c.symbol, POSITIONS.c.qty, POSITIONS.c.avg_price, POSITIONS.c.market_price)
                          .where(POSITIONS.c.bar_datetime == last))
        frame = pd.DataFrame(rows, columns=["symbol", "qty", "avg_price", "market_price"])
        return last, frame.drop_duplicates("symbol", keep="last")

    def _latest_predictions(self) -> tuple[dt.datetime | None, list[tuple[str, dict]]]:
        """The last bar's predictions, (symbol, values) each."""
        from brokers.journal import PREDICTIONS

        last = self._scalar(select(func.max(PREDICTIONS.c.bar_datetime)))
        if last is None:
            return None, []
        return last, [(s, v) for s, v in self._read(select(PREDICTIONS.c.symbol, PREDICTIONS.c["values"])
                                                    .where(PREDICTIONS.c.bar_datetime == last))]

    # ---- views -------------------------------------------------------------------------------------
    def overview(self) -> dict:
        self._refresh()
        status = self._status()
        # recomputed only after a new bar or fill: a poll between bars reads these
        achieved = self._cached("achieved", lambda: figures.performance(
            self._equity(), self._cached("trades", lambda: figures.round_trips(self._fills_frame()),
                                         key=self._fills_id))
            if len(self._equity_t) > 1 else {})
        curve = self._cached("curve", lambda: figures.equity_curve(self._equity(), self._benchmark(),
                                                                   self.cfg.dashboard.chart_points))
        _, held = self._latest_positions()
        unrealised = float((held["qty"] * (held["market_price"] - held["avg_price"])).sum()) if len(held) else 0.0
        last = float(self._equity_v[-1]) if len(self._equity_v) else None
        return {
            "as_of": _iso(self._equity_at), "kind": self.kind, "title": self.title(),
            "state": status.get("state", "unknown"), "state_reason": status.get("state_reason")
            or status.get("entries_halted"), "status_updated": status.get("updated_at"),
            "equity_curve": curve,
            "cards": {"equity": finite(last), "cash": finite(status.get("cash")),
                      "todays_pnl": finite(status.get("daily_pnl")), "exposure": finite(status.get("exposure")),
                      "unrealised_pnl": finite(unrealised), "win_rate": finite(achieved.get("win_rate")),
                      "n_trades": achieved.get("n_trades", 0), "total_return": finite(achieved.get("total_return")),
                      "max_drawdown": finite(achieved.get("max_drawdown"))},
            "too_short": achieved.get("too_short"),
            "targets": figures.targets(achieved, dict(self.cfg.report.blueprint_targets)),
        }

    def positions(self) -> dict:
        from brokers.journal import ORDERS

        self._refresh()
        status = self._status()
        at, held = self._latest_positions()
        # the journal's own account of each position: its fills, summed
        fills = self._fills_frame()
        from_fills = (fills.assign(signed=np.where(fills["side"] == "buy", fills["qty"], -fills["qty"]))
                      .groupby("symbol")["signed"].sum()) if len(fills) else pd.Series(dtype=float)
        stops = self._read(select(ORDERS.c.symbol, ORDERS.c.stop_price, ORDERS.c.trail_percent, ORDERS.c.limit_price,
                                  ORDERS.c.leg, ORDERS.c.info).where(ORDERS.c.status.in_(("new", "accepted", "held",
                                                                                          "partially_filled")))
                           .where(ORDERS.c.side == "sell"))
        stop_of, target_of = {}, {}
        for symbol, stop, trail, limit, leg, _info in stops:
            if stop is not None or trail is not None:
                stop_of[symbol] = (stop, trail is not None)
            elif limit is not None:
                target_of[symbol] = limit
        # each symbol's last buy, from the fills already read: its order's info (confidence) by primary key
        last_buy = {f["symbol"]: f["client_order_id"] for f in self._fills if f["side"] == "buy"}
        entries = self._read(select(ORDERS.c.symbol, ORDERS.c.info, ORDERS.c.bar_datetime)
                             .where(ORDERS.c.client_order_id.in_(list(last_buy.values())))) if last_buy else []
        entry_info = {symbol: (info or {}, when) for symbol, info, when in entries}
        confidences = {symbol: (values or {}).get("confidence") for symbol, values in self._latest_predictions()[1]}
        rows = []
        symbols = sorted(set(held["symbol"]) | {s for s, q in from_fills.items() if abs(q) > 1e-9})
        by_symbol = held.set_index("symbol") if len(held) else held
        for symbol in symbols:
            p = by_symbol.loc[symbol] if symbol in by_symbol.index else None
            size = float(p["qty"]) if p is not None else 0.0
            journal_size = float(from_fills.get(symbol, 0.0))
            info, entered = entry_info.get(symbol, ({}, None))
            stop, trailing = stop_of.get(symbol, (None, False))
            last, entry = (float(p["market_price"]), float(p["avg_price"])) if p is not None else (None, None)
            bars_held = (len(self._equity_t) - int(np.searchsorted(self._equity_t, np.datetime64(entered, "us"),
                                                                   side="right")) if entered else None)
            rows.append({"symbol": symbol, "size": size, "entry": finite(entry), "last": finite(last),
                         "unrealised_pnl": finite(size * (last - entry)) if p is not None else None,
                         "stop": finite(stop), "trailing": trailing, "target": finite(target_of.get(symbol)),
                         "confidence_entry": finite(info.get("confidence")),
                         "confidence_now": finite(confidences.get(symbol)), "bars_held": bars_held,
                         "sector": self.sectors.get(symbol.upper()), "broker_size": size, "journal_size": journal_size,
                         "mismatch": abs(journal_size - size) > 1e-9})
        return {"as_of": _iso(self._equity_at), "at": _iso(at), "positions": rows,
                "mismatches": sum(r["mismatch"] for r in rows),
                "note": "broker: the positions the session's broker held after its last bar; journal: its fills, summed"}

    def orders(self, *, limit=200, offset=0, symbol=None, status=None) -> dict:
        from brokers.journal import BARS, FILLS, ORDERS

        query = select(ORDERS)
        count = select(func.count()).select_from(ORDERS)
        if symbol:
            query, count = query.where(ORDERS.c.symbol == symbol), count.where(ORDERS.c.symbol == symbol)
        if status:
            query, count = query.where(ORDERS.c.status == status), count.where(ORDERS.c.status == status)
        rows = self._mappings(query.order_by(ORDERS.c.created_at.desc(), ORDERS.c.client_order_id.desc())
                             .limit(limit).offset(offset))
        total = self._scalar(count)
        rejected = self._scalar(select(func.count()).select_from(ORDERS).where(ORDERS.c.status.in_(("rejected",
                                                                                                  "margin"))))
        ids = [r["client_order_id"] for r in rows]
        fills: dict[str, list] = {}
        if ids:
            for f in self._mappings(select(FILLS).where(FILLS.c.client_order_id.in_(ids)).order_by(FILLS.c.id)):
                fills.setdefault(f["client_order_id"], []).append(f)
        # the decision bars' closes, in one query (the bars of those timestamps, by the bar_datetime index)
        stamps = sorted({r["bar_datetime"] for r in rows if r["bar_datetime"] is not None})
        closes = {(symbol, when): close for when, symbol, close in self._read(
            select(BARS.c.bar_datetime, BARS.c.symbol, BARS.c.close).where(BARS.c.bar_datetime.in_(stamps))
            .where(BARS.c.symbol.in_({r["symbol"] for r in rows})))} if stamps else {}
        out = []
        for r in rows:
            decision = closes.get((r["symbol"], r["bar_datetime"]))
            history = [{"at": _iso(r["created_at"]), "status": "intent"}]
            history += [{"at": _iso(f["recorded_at"]), "status": f"fill {f['qty']:g} @ {f['price']:.2f}"}
                        for f in fills.get(r["client_order_id"], [])]
            if r["status"] != "intent":
                history.append({"at": _iso(r["updated_at"]), "status": r["status"]})
            out.append({"id": r["client_order_id"], "created": _iso(r["bar_datetime"] or r["created_at"]),
                        "symbol": r["symbol"], "side": r["side"], "qty": finite(r["qty"]), "type": r["order_type"],
                        "status": r["status"], "reason": r["reason"] or r["leg"],
                        "limit_or_stop": finite(r["stop_price"] if r["stop_price"] is not None else r["limit_price"]),
                        "fill_price": finite(r["filled_avg_price"]), "decision_price": finite(decision),
                        "slippage_bps": figures.order_slippage(r["side"], r["filled_avg_price"], decision),
                        "status_reason": r["status_reason"], "history": history})
        return {"as_of": _iso(rows[0]["updated_at"]) if rows else None, "total": total, "offset": offset,
                "orders": out, "rejected": rejected}

    def risk(self) -> dict:
        self._refresh()
        status = self._status()
        _, held = self._latest_positions()
        held = held.assign(value=held["qty"] * held["market_price"]) if len(held) else held.assign(value=[])
        view = self._risk_from(equity=self._equity(), held=held, closes=self._closes_frame(), status=status)
        return {"as_of": status.get("updated_at") or _iso(self._equity_at), **view}

    def models(self) -> dict:
        status = self._status()
        model = status.get("model_id") or self.journal.get_meta("model")
        last, latest = self._latest_predictions()
        confidences = [v.get("confidence") for _, v in latest if isinstance(v, dict)] or status.get("confidences") or []
        trained = status.get("model_trained_at")
        age_days = None
        if trained:
            age_days = finite((dt.datetime.now(dt.UTC).replace(tzinfo=None) - pd.Timestamp(trained).to_pydatetime()
                               .replace(tzinfo=None)).total_seconds() / 86400)
        retrain = self.cfg.live.retrain_every_days
        last_retrain = self.journal.get_meta("last_retrain")
        next_retrain = None
        if retrain and last_retrain:
            next_retrain = (dt.date.fromisoformat(last_retrain) + dt.timedelta(days=retrain)).isoformat()
        return {"as_of": status.get("updated_at"), "model_id": model, "trained_at": trained, "age_days": age_days,
                "training_window": status.get("model_training_window"), "last_retrain": last_retrain,
                "next_retrain": next_retrain or ("after the close, every " f"{retrain} days" if retrain else "never"),
                "predictions_at": _iso(last),
                "predictions": [{"symbol": s, **{k: finite(v) if isinstance(v, (int, float)) else v
                                                 for k, v in (values or {}).items()}} for s, values in latest][:100],
                "confidence": figures.histogram(confidences),
                "calibration_error": finite(status.get("calibration_error")),
                "drift": figures.worst_drift(status.get("feature_drift_psi")),
                "drift_threshold": self.cfg.live.drift_psi_threshold}

    def symbols(self) -> list[str]:
        self._refresh()
        return sorted(self._first_close) or sorted(self._status().get("symbols") or [])

    def chart(self, symbol: str, bars: int = 500) -> dict:
        from brokers.journal import BARS, FILLS, ORDERS

        rows = self._read(select(BARS.c.bar_datetime, BARS.c.open, BARS.c.high, BARS.c.low, BARS.c.close)
                          .where(BARS.c.symbol == symbol).order_by(BARS.c.bar_datetime.desc(), BARS.c.id.desc())
                          .limit(bars * 3))
        frame = pd.DataFrame(rows, columns=["datetime", "open", "high", "low", "close"]).drop_duplicates(
            "datetime").sort_values("datetime").tail(bars).set_index("datetime")
        if frame.empty:
            return {"as_of": None, "symbol": symbol, "candles": None, "note": f"no bars of {symbol} in the journal"}
        start = frame.index[0]
        fills = self._read(select(FILLS.c.filled_datetime, FILLS.c.side, FILLS.c.qty, FILLS.c.price)
                           .where(FILLS.c.symbol == symbol).where(FILLS.c.filled_datetime >= start))
        levels = self._read(select(ORDERS.c.bar_datetime, ORDERS.c.stop_price, ORDERS.c.limit_price, ORDERS.c.leg)
                            .where(ORDERS.c.symbol == symbol).where(ORDERS.c.leg.is_not(None))
                            .where(ORDERS.c.bar_datetime >= start))
        return {"as_of": _iso(self._equity_at), "symbol": symbol, **_candles(frame),
                "fills": [{"t": _iso(t), "side": side, "qty": q, "price": p} for t, side, q, p in fills],
                "levels": [{"t": _iso(t), "stop": finite(s), "target": finite(lim) if leg == "take_profit" else None}
                           for t, s, lim, leg in levels]}

    def logs(self, which: str, query: str = "", lines: int = 500) -> dict:
        if which == "events":
            from brokers.journal import ALERTS, EVENTS

            events = self._mappings(select(EVENTS).order_by(EVENTS.c.id.desc()).limit(lines))
            alerts = self._mappings(select(ALERTS).order_by(ALERTS.c.id.desc()).limit(lines))
            text = [f"{_iso(e['at'])} {e['kind']}: {e['message']}" for e in events]
            text += [f"{_iso(a['at'])} alert {a['rule']} ({'sent' if a['delivered'] else 'not sent'}): {a['message']}"
                     for a in alerts]
            text = sorted(line for line in text if query.lower() in line.lower())[-lines:]
            return {"as_of": None, "which": which, "lines": text}
        if self.state_dir is None:
            return {"as_of": None, "which": which, "lines": [],
                    "note": "no state folder given (--run STATE_DIR, or --logs DIR with --journal): no log files"}
        path = self.state_dir / ("decisions.log" if which == "decisions" else "live.log")
        return {"as_of": None, "which": which, "lines": tail_lines(path, lines, query),
                "note": None if path.is_file() else f"no {path.name} in {self.state_dir}"}

    def controls(self) -> dict:
        rows = self.journal.controls(limit=50)
        status = self._status()
        return {"as_of": None, "allowed": True, "paused": status.get("paused"),
                "controls": [{k: _iso(v) if isinstance(v, dt.datetime) else v for k, v in r.items()} for r in rows]}

    def request_control(self, action: str, *, who: str, symbol: str | None = None) -> int:
        if action not in ACTIONS:
            raise ValueError(f"unknown control {action!r}: one of {', '.join(ACTIONS)}")
        return self.journal.request_control(action, who=who, symbol=symbol)


def open_source(cfg, *, run: Path | None = None, journal: str | None = None) -> Source:
    """A run folder (its equity.csv and metrics.json), a live state folder (its journal.sqlite), or a
    journal URL; FileNotFoundError naming what is missing."""
    from brokers.journal import sqlite_url

    if journal:
        return LiveJournal(journal, cfg, state_dir=run)
    if run is None and cfg.live.journal:  # a deployment's config names its journal (deploy/live.toml)
        return LiveJournal(cfg.live.journal, cfg, state_dir=Path(cfg.live.state_dir))
    if run is None:
        run = Path(cfg.live.state_dir)
    run = Path(run)
    if (run / "equity.csv").is_file() and (run / "metrics.json").is_file():
        return RunFolder(run, cfg)
    if (run / "journal.sqlite").is_file():
        return LiveJournal(sqlite_url(run / "journal.sqlite"), cfg, state_dir=run)
    raise FileNotFoundError(f"{run}: neither a run folder (equity.csv, metrics.json) nor a live state folder "
                            "(journal.sqlite); give --run DIR or --journal URL")
