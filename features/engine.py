"""The feature engine: compiles a registry's formulas into one deduplicated graph and evaluates it
in batch (a whole history at once) or as a stream (one bar at a time from running state).

Training, the backtest and live trading all call this module, so they compute identical values.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.graph import PANEL, SYMBOL, BatchContext, Grouping, Node
from features.registry import default_config
from features.sources import (CALENDAR_FIELDS, NEWS_FIELDS, MacroSeries, NewsBook, calendar_fields,
                              calendar_fields_at, close_time, close_times, score_headlines)

BAR_FIELDS = ("open", "high", "low", "close", "volume")


# ---------------------------------------------------------------------------------------------
# Compilation

def _structure_hashes(roots: Sequence[Node]) -> dict[int, str]:
    """id(node) -> a hash of its operator, parameters and inputs' hashes (equal formulas, equal hash)."""
    hashes: dict[int, str] = {}
    stack = list(roots)
    while stack:
        node = stack[-1]
        if id(node) in hashes:
            stack.pop()
            continue
        pending = [i for i in node.inputs if id(i) not in hashes]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        text = repr((node.scope, node.op.key(), [hashes[id(i)] for i in node.inputs]))
        hashes[id(node)] = hashlib.sha1(text.encode()).hexdigest()
    return hashes


def structure_keys(roots: Sequence[Node]) -> list[str]:
    hashes = _structure_hashes(roots)
    return [hashes[id(r)] for r in roots]


@dataclass
class Program:
    """A topologically ordered, deduplicated graph: ``nodes[i]`` reads ``inputs[i]`` (indices)."""

    nodes: list[Node]
    inputs: list[tuple[int, ...]]
    outputs: list[int]               # node index of each feature
    uses: list[int]                  # how many nodes read each node
    history: dict[int, int]          # node index -> deepest lag read from its history
    index_of: dict[int, int]         # id(any node object of the formulas) -> its node index

    @classmethod
    def compile(cls, roots: Sequence[Node]) -> "Program":
        hashes = _structure_hashes(roots)
        index: dict[str, int] = {}
        nodes: list[Node] = []
        inputs: list[tuple[int, ...]] = []

        def visit(root: Node) -> int:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                key = hashes[id(node)]
                if key in index:
                    continue
                if not expanded:
                    stack.append((node, True))
                    stack.extend((i, False) for i in reversed(node.inputs) if hashes[id(i)] not in index)
                    continue
                index[key] = len(nodes)
                nodes.append(node)
                inputs.append(tuple(index[hashes[id(i)]] for i in node.inputs))
            return index[hashes[id(root)]]

        outputs = [visit(r) for r in roots]
        uses = [0] * len(nodes)
        history: dict[int, int] = {}
        for i, node in enumerate(nodes):
            for j in inputs[i]:
                uses[j] += 1
            for position, depth in node.op.history().items():
                j = inputs[i][position]
                history[j] = max(history.get(j, 0), depth)
        index_of = {ident: index[key] for ident, key in hashes.items()}
        return cls(nodes, inputs, outputs, uses, history, index_of)


def derive_warmups(roots: Sequence[Node], tolerance: float) -> list[int]:
    """Each root's warm-up from its formula (see :meth:`features.graph.Op.warmup`)."""
    memo: dict[int, int] = {}

    def warmup_of(node: Node) -> int:
        if id(node) not in memo:
            memo[id(node)] = node.op.warmup(node, warmup_of, tolerance)
        return memo[id(node)]

    program = Program.compile(roots)  # topological order: inputs are memoised before their readers
    for node in program.nodes:
        warmup_of(node)
    return [warmup_of(r) for r in roots]


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class FeaturePanel:
    """Feature values of a run: ``values[t, j, f]`` for calendar bar t, symbol j, feature f.

    Stored feature-major (F, T, N), so ``values`` is a transposed view and one feature over all
    bars is contiguous. NaN where the symbol has no bar, and before each feature's warm-up.
    """

    times: pd.DatetimeIndex
    symbols: list[str]
    names: list[str]
    data: np.ndarray          # (F, T, N)
    present: np.ndarray       # (T, N) bool: the symbol has a bar

    @property
    def values(self) -> np.ndarray:
        return self.data.transpose(1, 2, 0)

    def row(self, t: int) -> np.ndarray:
        """(N, F) at calendar bar t."""
        return self.data[:, t, :].T

    def to_frame(self, symbol_column: bool | None = None) -> pd.DataFrame:
        """One row per (bar, symbol) that has a bar, ordered by time then symbol; index: the bar's
        datetime; a ``symbol`` column (by default only when there are several symbols)."""
        t, j = np.nonzero(self.present)
        columns = {}
        if symbol_column if symbol_column is not None else len(self.symbols) > 1:
            columns["symbol"] = np.asarray(self.symbols, dtype=object)[j]
        for f, name in enumerate(self.names):
            columns[name] = self.data[f][t, j]
        return pd.DataFrame(columns, index=pd.DatetimeIndex(self.times[t], name="datetime"))


# ---------------------------------------------------------------------------------------------
# The engine

def _sector_grouping(symbols: Sequence[str], sectors: Mapping[str, str] | None) -> Grouping:
    names = sorted({sectors[s] for s in symbols if s in sectors}) if sectors else []
    return Grouping([names.index(sectors[s]) if sectors and s in sectors else -1 for s in symbols])


class FeatureEngine:
    """Evaluates a registry for a fixed list of symbols.

    sectors: {symbol: sector} (required when the registry has sector features); news: DataFrame
    with timestamp, symbol and score (or headline) columns, see ``features.sources.load_news``;
    macro: {name: Series of values by date}; config: ``FeaturesConfig``.
    """

    def __init__(self, registry, symbols: Sequence[str], sectors: Mapping[str, str] | None = None,
                 news: pd.DataFrame | None = None, macro: Mapping[str, pd.Series] | None = None,
                 config=None):
        config = config or default_config()
        self.registry, self.symbols, self.config = registry, list(symbols), config
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("duplicate symbols")
        context = registry.context
        if context.has_sectors and not sectors:
            raise ValueError("the registry has sector features: give the sector map (sectors=...)")
        if context.has_news and news is None:
            raise ValueError("the registry has sentiment features: give the news (news=...)")
        missing = set(context.macro_names) - set(macro or {})
        if missing:
            raise ValueError(f"macro series not given: {sorted(missing)}")
        self.groupings = {"sector": _sector_grouping(self.symbols, sectors)}
        if news is not None and "score" not in news:
            news = news.assign(score=score_headlines(news["headline"]))
        self.news = (NewsBook(news, self.symbols, config.news_neutral_band)
                     if context.has_news and news is not None else None)
        self.macro = {name: MacroSeries(series, config.daily_close_time) for name, series in (macro or {}).items()}
        self.program = Program.compile([f.node for f in registry])
        self.warmups = np.array([f.warmup for f in registry], dtype=np.int64)
        self.calendar_clock = np.array([f.calendar_clock for f in registry], dtype=bool)

    @property
    def names(self) -> list[str]:
        return self.registry.names

    # ---- batch --------------------------------------------------------------------------------
    def batch(self, bars: Mapping[str, pd.DataFrame], progress: bool = False) -> FeaturePanel:
        """All features over the whole history of ``bars`` ({symbol: OHLCV frame}, see
        ``feeds.loader.load_universe``; a symbol of the engine absent from ``bars`` has no bars).
        progress: show a progress bar (the command line)."""
        unknown = set(bars) - set(self.symbols)
        if unknown:
            raise ValueError(f"bars for symbols the engine was not built for: {sorted(unknown)}")
        frames = [bars.get(s) for s in self.symbols]
        stamps = [pd.DatetimeIndex(f.index) if f is not None else pd.DatetimeIndex([]) for f in frames]
        times = stamps[0] if len(stamps) == 1 else pd.DatetimeIndex(
            np.unique(np.concatenate([s.as_unit("ns").asi8 for s in stamps]).astype("datetime64[ns]")))
        times = pd.DatetimeIndex(times, name="datetime").as_unit("ns")
        T, N = len(times), len(self.symbols)
        present = np.zeros((T, N), dtype=bool)
        for j, s in enumerate(stamps):
            present[times.get_indexer(s), j] = True
        return self._evaluate(times, present, frames, progress)

    def _evaluate(self, times, present, frames, progress: bool = False) -> FeaturePanel:
        ctx = BatchContext(present, self.groupings.get)
        compact = {}
        for name in BAR_FIELDS:
            values = np.concatenate([f[name].to_numpy(np.float64) for f in frames if f is not None and len(f)]) \
                if any(f is not None and len(f) for f in frames) else np.array([])
            arr = np.full((ctx.L, ctx.N), np.nan)
            arr[ctx.own_rows, ctx.cols] = values
            compact[name] = arr
        closes = close_times(times, self.config.daily_close_time)
        calendar = calendar_fields(times) if len(times) else {k: np.array([]) for k in CALENDAR_FIELDS}
        news = self._news_batch(ctx, closes) if self.news is not None else {}

        def sources(name: str) -> np.ndarray:
            if name in compact:
                return compact[name]
            kind, _, field = name.partition(":")
            if kind == "calendar":
                return calendar[field][:, None]
            if kind == "macro":
                return self.macro[field].asof(closes)[:, None]
            if kind == "news":
                return news[field]
            raise KeyError(f"unknown source {name}")
        ctx.sources = sources

        program, F = self.program, len(self.registry)
        data = np.empty((F, ctx.T, ctx.N))  # each feature's slice is written once, by _place
        features_of: dict[int, list[int]] = {}
        for f, i in enumerate(program.outputs):
            features_of.setdefault(i, []).append(f)
        own_index = None if ctx.aligned else ctx.own_index()
        left = list(program.uses)
        values: list = [None] * len(program.nodes)
        with np.errstate(all="ignore"), tqdm(total=len(program.nodes), desc="features", unit="op",
                                              disable=not progress, leave=False) as bar:
            for i, node in enumerate(program.nodes):
                bar.update()
                values[i] = node.op.batch(ctx, *(values[j] for j in program.inputs[i]))
                for f in features_of.get(i, ()):
                    self._place(ctx, data[f], values[i], node.scope, self.warmups[f], own_index)
                for j in program.inputs[i]:
                    left[j] -= 1
                    if left[j] == 0:
                        values[j] = None
                if left[i] == 0:
                    values[i] = None
        return FeaturePanel(times, list(self.symbols), self.registry.names, data, present)

    @staticmethod
    def _place(ctx: BatchContext, out: np.ndarray, value: np.ndarray, scope: str, warmup: int, own_index):
        """Write one feature's values into its (T, N) slice: NaN before the warm-up and where the
        symbol has no bar."""
        if ctx.aligned:  # every symbol has every bar: compact rows are calendar rows
            out[:warmup] = np.nan
            out[warmup:] = value[warmup:]
        elif scope == SYMBOL:
            out.fill(np.nan)
            keep = ctx.own_rows >= warmup
            out[ctx.cal_rows[keep], ctx.cols[keep]] = value[ctx.own_rows[keep], ctx.cols[keep]]
        elif scope == PANEL:
            out[:] = np.where(own_index >= warmup, value, np.nan)
        else:
            out[:warmup] = np.nan
            out[warmup:] = np.where(ctx.present[warmup:], value[warmup:], np.nan)

    def _news_batch(self, ctx: BatchContext, closes: np.ndarray) -> dict[str, np.ndarray]:
        out = np.full((len(NEWS_FIELDS), ctx.L, ctx.N), np.nan)
        for j in range(ctx.N):
            rows = ctx.cal_rows[ctx.cols == j]
            if len(rows) == 0:
                continue
            upto = self.news.position(j, closes[rows])
            before = np.concatenate([[0], upto[:-1]])
            out[:, : len(rows), j] = self.news.between(j, before, upto).T
            out[:, 0, j] = np.nan  # the first bar's interval has no start
        return {name: out[k] for k, name in enumerate(NEWS_FIELDS)}

    # ---- stream -------------------------------------------------------------------------------
    def stream(self) -> "FeatureStream":
        """A bar-by-bar evaluator from running state (live trading, Backtrader's ``next``)."""
        return FeatureStream(self)


def _clock(node: Node) -> str:
    """Own-bar clock for symbol series, the calendar for panel and market values."""
    return "own" if node.scope == SYMBOL else "calendar"


def _schedule(program: Program) -> list[list[int]]:
    """Groups of nodes updated together: repeatedly take the ready nodes (inputs computed), and run,
    for every group key held by a node that cannot wait (its latest possible turn has come), all the
    ready nodes with that key."""
    nodes, inputs = program.nodes, program.inputs
    depth = [0] * len(nodes)
    for i in range(len(nodes)):
        depth[i] = 1 + max((depth[j] for j in inputs[i]), default=0)
    latest = [max(depth)] * len(nodes)
    for i in reversed(range(len(nodes))):
        for j in inputs[i]:
            latest[j] = min(latest[j], latest[i] - 1)
    keys = [node.op.group_key(node) for node in nodes]
    readers: list[list[int]] = [[] for _ in nodes]
    for i, ins in enumerate(inputs):
        for j in set(ins):
            readers[j].append(i)
    waiting = [len(set(ins)) for ins in inputs]
    ready = [i for i in range(len(nodes)) if waiting[i] == 0]
    groups = []
    while ready:
        urgent = min(latest[i] for i in ready)
        run_keys = {keys[i] for i in ready if latest[i] <= urgent}
        run = [i for i in ready if keys[i] in run_keys]
        ready = [i for i in ready if keys[i] not in run_keys]
        by_key: dict = {}
        for i in run:
            by_key.setdefault(keys[i], []).append(i)
        groups.extend(by_key.values())
        for i in run:
            for r in readers[i]:
                waiting[r] -= 1
                if waiting[r] == 0:
                    ready.append(r)
    return groups


class FeatureStream:
    """Incremental evaluation: ``update`` takes one calendar bar for all symbols and returns the
    (N, F) feature rows (NaN rows for symbols without a bar, NaN before each warm-up).

    State: ``V`` holds every node's value at the current bar (nodes x symbols; market values
    repeated across symbols); each operator group keeps its running state (totals, smoother
    values); values whose history is read (lags, windows, rolling sums) are kept in ring buffers,
    one per clock: a symbol's slot advances only on its own bars, the calendar's on every bar.
    """

    def __init__(self, engine: FeatureEngine):
        program = self.program = engine.program
        self.engine = engine
        self.n = len(engine.symbols)
        self.nodes, self.inputs = program.nodes, program.inputs
        self.V = np.full((len(self.nodes), self.n), np.nan)
        self.columns = np.arange(self.n)
        self.own_count = np.zeros(self.n, dtype=np.int64)
        self.calendar_count = 0
        self.last_time: pd.Timestamp | None = None
        self.present = np.ones(self.n, dtype=bool)
        self.all_present = True
        self._sources = None

        # ring buffers: rows (deepest lag + 1) x nodes with history x symbols, per clock
        self._slot: dict[int, int] = {}
        members: dict[str, list[int]] = {"own": [], "calendar": []}
        depth = {"own": 0, "calendar": 0}
        for i, lag in sorted(program.history.items()):
            clock = _clock(self.nodes[i])
            self._slot[i] = len(members[clock])
            members[clock].append(i)
            depth[clock] = max(depth[clock], lag)
        self._rows = {c: depth[c] + 1 for c in depth}
        self._rings = {}
        for clock, nodes in members.items():
            fills = np.array([getattr(self.nodes[i].op, "history_fill", np.nan) for i in nodes])
            ring = np.empty((self._rows[clock], len(nodes), self.n))
            ring[:] = fills[None, :, None]
            self._rings[clock] = ring.reshape(-1)

        self._rows_cache: dict = {}
        self._window_backs: dict[int, np.ndarray] = {}  # shared per window length: one index per bar
        self._steps = [self.nodes[group[0]].op.stream_group(self, group) for group in _schedule(program)]
        self._writers = [self._writer(nodes) for nodes in members.values() if nodes]
        self._outputs = np.array(program.outputs)
        self._warm_own = np.where(engine.calendar_clock, 0, engine.warmups)
        self._warm_calendar = np.where(engine.calendar_clock, engine.warmups, 0)
        self._news_position = np.zeros(self.n, dtype=np.int64)

    # ---- the interface operators' stream steps use -------------------------------------------
    def mask(self, scope: str):
        """Symbols whose state advances at this bar: None for all (or for calendar values)."""
        return None if self.all_present or scope != SYMBOL else self.present

    def source(self, name: str) -> np.ndarray:
        return self._sources(name)

    def grouping(self, name: str):
        return self.engine.groupings.get(name)

    def _ring_layout(self, nodes: Sequence[int]) -> tuple[str, np.ndarray, int, np.ndarray]:
        clocks = {_clock(self.nodes[i]) for i in nodes}
        if len(clocks) != 1:
            raise ValueError("a stream group reads histories of two clocks")
        clock = clocks.pop()
        slots = np.array([self._slot[i] for i in nodes])
        width = (len(self._rings[clock]) // self._rows[clock])
        return clock, slots[:, None] * self.n + self.columns[None, :], width, self._rings[clock]

    def _base(self, clock: str, back: np.ndarray, width: int) -> np.ndarray:
        """Flat ring offsets of the rows holding the values ``back`` bars ago (back: an array
        broadcast against the symbols), cached for the bar."""
        key = (clock, id(back), width)
        base = self._rows_cache.get(key)
        if base is None:
            count = self.own_count if clock == "own" else self.calendar_count
            base = ((count - back) % self._rows[clock]) * width
            if base.shape[-1] != self.n:
                base = np.broadcast_to(base, base.shape[:-1] + (self.n,))
            self._rows_cache[key] = base
        return base

    def lag_reader(self, nodes: Sequence[int], lags, back: np.ndarray | None = None) -> Callable[[], np.ndarray]:
        """f() -> (k, N): each node's value lags[i] >= 1 bars ago on its clock (rings are written
        at the end of the bar). Readers given the same ``back`` array share its index per bar."""
        clock, offsets, width, ring = self._ring_layout(nodes)
        if back is None:
            back = np.asarray(lags, dtype=np.int64)[:, None]
        if (back < 1).any():
            raise ValueError("a lag reader reads past bars only")
        return lambda: ring.take(self._base(clock, back, width) + offsets)

    def window_reader(self, nodes: Sequence[int], n: int) -> Callable[[], np.ndarray]:
        """f() -> (k, N, n): each node's last n values including the current one, oldest first."""
        nodes = np.asarray(nodes)
        V = self.V
        if n == 1:
            return lambda: V[nodes][:, :, None]
        clock, offsets, width, ring = self._ring_layout(nodes)
        back = self._window_backs.setdefault(n, np.arange(n - 1, 0, -1, dtype=np.int64)[:, None])
        offsets = offsets[:, None, :]
        window = np.empty((len(nodes), n, self.n))

        def read():
            window[:, :-1] = ring.take(self._base(clock, back, width)[None, :, :] + offsets)
            window[:, -1] = V[nodes]
            return window.transpose(0, 2, 1)
        return read

    def _writer(self, nodes: list[int]):
        clock, offsets, width, ring = self._ring_layout(nodes)
        index = np.array(nodes)
        now = np.zeros(1, dtype=np.int64)

        def write():
            ring[self._base(clock, now, width) + offsets] = self.V[index]
        return write

    # ---- one bar ---------------------------------------------------------------------------------
    def update(self, timestamp, present, open, high, low, close, volume) -> np.ndarray:
        """One calendar bar: ``present`` (N,) bool says which symbols have a bar; the price arrays
        are (N,) (ignored where not present). Timestamps must increase."""
        timestamp = pd.Timestamp(timestamp)
        if self.last_time is not None and timestamp <= self.last_time:
            raise ValueError(f"bar {timestamp} is not after the previous one ({self.last_time})")
        present = np.asarray(present, dtype=bool)
        self.present, self.all_present = present, bool(present.all())
        fields = {name: np.where(present, np.asarray(v, dtype=np.float64), np.nan)
                  for name, v in zip(BAR_FIELDS, (open, high, low, close, volume))}
        close_ns = close_time(timestamp, self.engine.config.daily_close_time)
        lazy: dict[str, np.ndarray] = {}

        def sources(name: str) -> np.ndarray:
            if name in fields:
                return fields[name]
            if name not in lazy:
                kind, _, field = name.partition(":")
                if kind == "calendar":
                    lazy.update({f"calendar:{k}": v for k, v in calendar_fields_at(timestamp).items()})
                elif kind == "macro":
                    lazy[name] = self.engine.macro[field].asof(np.array([close_ns]))
                elif kind == "news":
                    lazy.update(self._news(present, close_ns))
                else:
                    raise KeyError(f"unknown source {name}")
            return lazy[name]

        self._sources = sources
        self._rows_cache.clear()
        with np.errstate(all="ignore"):
            for step in self._steps:
                step()
        for write in self._writers:
            write()
        invalid = (self.own_count[:, None] < self._warm_own[None, :]) | \
                  (self.calendar_count < self._warm_calendar)[None, :] | ~present[:, None]
        row = np.where(invalid, np.nan, self.V[self._outputs].T)
        self.own_count += present
        self.calendar_count += 1
        self.last_time = timestamp
        return row

    def _news(self, present: np.ndarray, close_ns: int) -> dict[str, np.ndarray]:
        out = np.full((len(NEWS_FIELDS), self.n), np.nan)
        book = self.engine.news
        for j in np.flatnonzero(present):
            upto = book.position(j, np.array([close_ns]))
            if self.own_count[j] > 0:  # the first bar's interval has no start
                out[:, j] = book.between(j, self._news_position[j:j + 1], upto)[0]
            self._news_position[j] = upto[0]
        return {f"news:{name}": out[k] for k, name in enumerate(NEWS_FIELDS)}
