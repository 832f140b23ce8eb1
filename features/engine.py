"""The feature engine: compiles a registry's formulas into one deduplicated graph and evaluates it
in batch (a whole history at once) or as a stream (one bar at a time from running state).

Training, the backtest and live trading all call this module, so they compute identical values.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.graph import (PANEL, SYMBOL, BatchContext, CumSum, Grouping, Map, Node, RollingSum,
                            ValidCount)
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
# Inputs and results

class BarArrays(NamedTuple):
    """The bars of a batch evaluation as arrays (:meth:`FeatureEngine.batch_arrays` reads them):
    ``times`` (T,) increasing, ``present`` (T, N) bool, ``fields`` {open, high, low, close, volume:
    (L, N)}, L = the most bars of one symbol: row k of column j is symbol j's k-th bar (NaN past its
    last)."""

    times: pd.DatetimeIndex
    present: np.ndarray
    fields: Mapping[str, np.ndarray]


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

class _Buffers:
    """Reusable arrays for the intermediate values of one batch evaluation: a value's array goes
    back to the pool when its last reader has run, so ~1000 nodes share a few dozen warm arrays
    instead of each allocating (and page-faulting) a new one."""

    def __init__(self):
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._users: dict[int, list] = {}  # id(array) -> [array, number of live values in it]
        self._lent: list[np.ndarray] = []

    def take(self, shape: tuple) -> np.ndarray:
        free = self._free.get(shape)
        array = free.pop() if free else np.empty(shape)
        self._users.setdefault(id(array), [array, 0])
        self._lent.append(array)
        return array

    def hold(self, value) -> np.ndarray | None:
        """The pooled array that ``value`` is or views (one more live value in it), or None."""
        while isinstance(value, np.ndarray):
            entry = self._users.get(id(value))
            if entry is not None and entry[0] is value:
                entry[1] += 1
                return value
            value = value.base
        return None

    def settle(self) -> None:
        """Arrays lent for the last node that its value does not live in go back to the pool."""
        for array in self._lent:
            if self._users[id(array)][1] == 0:
                self._free.setdefault(array.shape, []).append(array)
        self._lent.clear()

    def release(self, array: np.ndarray | None) -> None:
        if array is not None:
            entry = self._users[id(array)]
            entry[1] -= 1
            if entry[1] == 0:
                self._free.setdefault(array.shape, []).append(array)


@dataclass
class _Region:
    """Elementwise nodes of one scope evaluated together, a block of rows at a time: ``outputs``
    are read after the region (or are features) and get full arrays; the others live in one of
    ``blocks`` per-block buffers (``block[i]``), reused once their last reader in the region ran."""

    nodes: list[int]
    outputs: set[int]
    block: dict[int, int]
    blocks: int


def _batch_plan(program: Program) -> list:
    """The batch's order of evaluation: node indices, and regions of elementwise (``Map``) nodes
    evaluated a block of rows at a time, so that their intermediate values stay in the CPU's cache.
    A region collects the elementwise nodes of one scope until another node reads one of them."""
    plan: list = []
    pending: dict[str, list[int]] = {SYMBOL: [], PANEL: []}
    region_of: dict[int, str] = {}
    features = set(program.outputs)

    def flush(scope):
        nodes = pending[scope]
        if len(nodes) == 1:
            plan.append(nodes[0])
        elif nodes:
            plan.append(nodes)
        for i in nodes:
            del region_of[i]
        pending[scope] = []

    for i, node in enumerate(program.nodes):
        if isinstance(node.op, Map) and node.scope in pending:
            pending[node.scope].append(i)
            region_of[i] = node.scope
            continue
        for scope in {region_of[j] for j in program.inputs[i] if j in region_of}:
            flush(scope)
        plan.append(i)
    for scope in list(pending):
        flush(scope)

    region_at = {i: k for k, step in enumerate(plan) if isinstance(step, list) for i in step}
    read_outside = set(features)
    for i, inputs in enumerate(program.inputs):
        read_outside.update(j for j in inputs if j in region_at and region_at.get(i) != region_at[j])
    for k, step in enumerate(plan):
        if isinstance(step, list):
            outputs = {i for i in step if i in read_outside}
            last_read = {j: position for position, i in enumerate(step) for j in program.inputs[i]}
            block, free, blocks = {}, [], 0
            for position, i in enumerate(step):
                if i not in outputs:  # (never the block of one of its own inputs: no aliasing)
                    block[i] = free.pop() if free else blocks
                    blocks = max(blocks, block[i] + 1)
                free += [block[j] for j in set(program.inputs[i]) if j in block and last_read[j] == position]
            plan[k] = _Region(step, outputs, block, blocks)
    return plan


class _BatchRun:
    """The state of one batch evaluation: node values (freed when their last reader has run, their
    arrays reused), and the output, which feature nodes are computed straight into where the
    compact layout is the calendar's."""

    TILE = 1 << 16  # elements per block of rows in a region (fits in the CPU's cache)

    def __init__(self, engine: "FeatureEngine", ctx: BatchContext, data: np.ndarray):
        self.engine, self.ctx, self.data = engine, ctx, data
        program = self.program = engine.program
        self.features_of: dict[int, list[int]] = {}
        for f, i in enumerate(program.outputs):
            self.features_of.setdefault(i, []).append(f)
        self.own_index = None if ctx.aligned else ctx.own_index()
        self.shapes = {SYMBOL: (ctx.L, ctx.N), PANEL: (ctx.T, ctx.N)}  # market values are (T, 1)
        self.buffers = _Buffers()
        self.in_place: list[int] = []  # features computed into their slice: warm-up blanked at the end
        self.left = list(program.uses)
        self.values: list = [None] * len(program.nodes)
        self.held: list = [None] * len(program.nodes)  # the reusable array each value lives in

    def _destination(self, i: int) -> np.ndarray:
        """Where node i's value is written: its feature's slice, or a reusable array."""
        node, features = self.program.nodes[i], self.features_of.get(i, ())
        if features and self.ctx.aligned:
            return self.data[features[0]]
        return self.buffers.take(self.shapes[node.scope])

    def _args(self, i: int) -> list:
        args = [self.values[j] for j in self.program.inputs[i]]
        if not getattr(self.program.nodes[i].op, "reads_valid_counts", False):
            args = [a.dense() if isinstance(a, ValidCount) else a for a in args]
        return args

    def node(self, i: int) -> None:
        op, scope = self.program.nodes[i].op, self.program.nodes[i].scope
        if op.writes_out and scope in self.shapes:
            value = op.batch(self.ctx, *self._args(i), out=self._destination(i))
        else:
            value = op.batch(self.ctx, *self._args(i))
        self._keep(i, value)
        self.buffers.settle()
        self._release_inputs(i)

    def region(self, region: _Region) -> None:
        program, nodes = self.program, region.nodes
        full = {i: self._destination(i) for i in nodes if i in region.outputs}
        rows, columns = self.shapes[program.nodes[nodes[0]].scope]
        tile = max(1, self.TILE // max(columns, 1))
        blocks = [np.empty((min(tile, rows), columns)) for _ in range(region.blocks)]
        args = [self._args(i) for i in nodes]  # None for the inputs inside the region
        for start in range(0, rows, tile):
            stop = min(rows, start + tile)
            local: dict[int, np.ndarray] = {}
            for i, values in zip(nodes, args):
                xs = [local[j] if v is None else v[start:stop] for j, v in zip(program.inputs[i], values)]
                out = full[i][start:stop] if i in full else blocks[region.block[i]][: stop - start]
                result = program.nodes[i].op.batch(self.ctx, *xs, out=out)
                if result is not out:
                    np.copyto(out, result)
                local[i] = out
        for i in nodes:
            self._keep(i, full.get(i))
        self.buffers.settle()
        for i in nodes:
            self._release_inputs(i)

    def _keep(self, i: int, value) -> None:
        """Record node i's value and place its features."""
        ctx, data, node = self.ctx, self.data, self.program.nodes[i]
        self.values[i], self.held[i] = value, self.buffers.hold(value)
        features = self.features_of.get(i, ())
        for f in features:
            if ctx.aligned and node.scope in self.shapes:
                if not (f == features[0] and np.may_share_memory(value, data[f])):
                    np.copyto(data[f], value)
                self.in_place.append(f)
            else:
                self.engine._place(ctx, data[f], value, node.scope, self.engine.warmups[f], self.own_index)

    def _release_inputs(self, i: int) -> None:
        """Free the values that node i was the last to read (and its own, when nothing reads it)."""
        for j in (*self.program.inputs[i], i):
            self.left[j] -= j != i
            if self.left[j] == 0 and self.values[j] is not None:
                self.values[j] = None
                self.buffers.release(self.held[j])


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
        self._plan = _batch_plan(self.program)
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
        return self.batch_arrays(*self.bar_arrays(bars), progress)

    def bar_arrays(self, bars: Mapping[str, pd.DataFrame]) -> BarArrays:
        """``bars`` ({symbol: OHLCV frame}) as the arrays a batch evaluation reads."""
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
        counts = present.sum(axis=0)
        fields = {}
        for name in BAR_FIELDS:
            fields[name] = np.full((int(counts.max(initial=0)), N), np.nan)
            for j, frame in enumerate(frames):
                if counts[j]:
                    fields[name][: counts[j], j] = frame[name].to_numpy(np.float64)
        return BarArrays(times, present, fields)

    def batch_arrays(self, times: pd.DatetimeIndex, present: np.ndarray, fields: Mapping[str, np.ndarray],
                     progress: bool = False) -> FeaturePanel:
        """``batch`` from arrays (see :class:`BarArrays`), for adapters that hold the bars as arrays
        (Backtrader's lines)."""
        ctx = BatchContext(present, self.groupings.get)
        compact = {name: np.asarray(fields[name], dtype=np.float64) for name in BAR_FIELDS}
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
        # The output is allocated, and touched, at once: filled with NaN its pages are mapped
        # while memory freed just before (by the previous batch) is still at hand.
        data = np.full((F, ctx.T, ctx.N), np.nan)
        run = _BatchRun(self, ctx, data)
        with np.errstate(all="ignore"), tqdm(total=len(program.nodes), desc="features", unit="op",
                                              disable=not progress, leave=False) as bar:
            for step in self._plan:
                if isinstance(step, int):
                    run.node(step)
                else:
                    run.region(step)
                bar.update(1 if isinstance(step, int) else len(step.nodes))
        for f in run.in_place:
            data[f, : self.warmups[f]] = np.nan
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


def _schedule(program: Program, keys: Sequence) -> list[list[int]]:
    """Steps of nodes updated together, each of one group key: repeatedly run, of the ready nodes
    (inputs computed), all those of the key whose node is the most urgent (its latest possible turn
    comes first; among equally urgent keys, the one with the most ready nodes). Waiting lets
    more nodes of a key become ready, so a bar takes fewer, larger steps."""
    nodes, inputs = program.nodes, program.inputs
    depth = [0] * len(nodes)
    for i in range(len(nodes)):
        depth[i] = 1 + max((depth[j] for j in inputs[i]), default=0)
    latest = [max(depth, default=0)] * len(nodes)
    for i in reversed(range(len(nodes))):
        for j in inputs[i]:
            latest[j] = min(latest[j], latest[i] - 1)
    readers: list[list[int]] = [[] for _ in nodes]
    for i, ins in enumerate(inputs):
        for j in set(ins):
            readers[j].append(i)
    waiting = [len(set(ins)) for ins in inputs]
    ready = [i for i in range(len(nodes)) if waiting[i] == 0]
    groups = []
    while ready:
        by_key: dict = {}
        for i in ready:
            by_key.setdefault(keys[i], []).append(i)
        key = min(by_key, key=lambda k: (min(latest[i] for i in by_key[k]), -len(by_key[k])))
        run = by_key[key]
        groups.append(run)
        ready = [i for i in ready if keys[i] != key]
        for i in run:
            for r in readers[i]:
                waiting[r] -= 1
                if waiting[r] == 0:
                    ready.append(r)
    return groups


class FeatureStream:
    """Incremental evaluation: ``update`` takes one calendar bar for all symbols and returns the
    (N, F) feature rows (NaN rows for symbols without a bar, NaN before each warm-up).

    State: ``V`` holds every node's value at the current bar (rows x symbols; market values and
    constants repeated across symbols). Nodes of one group key that are ready together form one
    step (see :func:`_schedule`) and hold consecutive rows of ``V``, so a step writes its results
    into one slice. Running state (totals, streaks, smoother values) lives in the nodes' rows or
    in the step; values whose history is read (lags, windows, rolling sums) are also kept in ring
    buffers, one per clock: a symbol's slot advances only on its own bars, the calendar's on
    every bar.
    """

    def __init__(self, engine: FeatureEngine):
        program = self.program = engine.program
        self.engine = engine
        self.n = len(engine.symbols)
        self.nodes, self.inputs = program.nodes, program.inputs
        self.columns = np.arange(self.n)
        self.own_count = np.zeros(self.n, dtype=np.int64)
        self.calendar_count = 0
        self.last_time: pd.Timestamp | None = None
        self.present = np.ones(self.n, dtype=bool)
        self.all_present = True
        self._sources = None

        readers: list[list[int]] = [[] for _ in self.nodes]
        for i, ins in enumerate(self.inputs):
            for j in ins:
                readers[j].append(i)
        # running counts that only rolling sums read (all of them, in every registry so far) are
        # kept as streaks of valid bars instead: a window is all valid when the streak reaches n
        counts = [i for i, node in enumerate(self.nodes)
                  if isinstance(node.op, CumSum) and node.op.params[0] == "count"]
        only_summed = all(all(isinstance(self.nodes[r].op, RollingSum) for r in readers[i]) for i in counts)
        self.streaks = set(counts) if only_summed else set()

        # rows of V: each group's nodes consecutively (sorted by kind), then the constants
        groups = _schedule(program, [node.op.group_key(node) for node in self.nodes])
        groups = [sorted(group, key=lambda i: (str(self.nodes[i].op.params[:1]), i not in self.streaks))
                  for group in groups]
        self.row = np.empty(len(self.nodes), dtype=np.int64)
        self.row[np.concatenate(groups)] = np.arange(len(self.nodes))
        constants = {float(value).hex(): value for node in self.nodes if isinstance(node.op, Map)
                     for kind, value in node.op.params[1] if kind == "c"}  # by bits: -0.0 and NaN too
        self._constant_row = {key: len(self.nodes) + k for k, key in enumerate(constants)}
        self.V = np.full((len(self.nodes) + len(constants), self.n), np.nan)
        self.V[len(self.nodes):] = np.array(list(constants.values()), dtype=np.float64).reshape(-1, 1)

        # ring buffers, per clock: R = deepest lag + 1 positions, each kept twice (rows p and p + R),
        # x nodes with history x symbols; so the value L <= R - 1 bars back is always at row
        # p + R - L, with no wrap-around to compute
        self._slot: dict[int, int] = {}
        members: dict[str, list[int]] = {"own": [], "calendar": []}
        depth = {"own": 0, "calendar": 0}
        for i, lag in sorted(program.history.items()):
            if i in self.streaks:
                continue
            clock = _clock(self.nodes[i])
            self._slot[i] = len(members[clock])
            members[clock].append(i)
            depth[clock] = max(depth[clock], lag)
        self._rows = {c: depth[c] + 1 for c in depth}
        self._width = {c: len(members[c]) * self.n for c in members}
        self._rings = {}
        for clock, nodes in members.items():
            fills = np.array([getattr(self.nodes[i].op, "history_fill", np.nan) for i in nodes])
            ring = np.empty((2 * self._rows[clock], len(nodes), self.n))
            ring[:] = fills[None, :, None]
            self._rings[clock] = ring.reshape(-1)
        self._now = {"own": np.zeros(self.n, dtype=np.int64), "calendar": 0}  # flat start of row p + R
        self._set_positions()
        self._steps = [self.nodes[group[0]].op.stream_group(self, group) for group in groups]
        self._writers = [self._writer(nodes) for nodes in members.values() if nodes]
        self._outputs = self.row[program.outputs]
        self._warm_own = np.where(engine.calendar_clock, 0, engine.warmups)
        self._warm_calendar = np.where(engine.calendar_clock, engine.warmups, 0)
        # each symbol's previous close time (ns): its next bar counts the headlines in (previous, now].
        # A time, not a position in the book: headlines appended meanwhile (live) cannot shift it
        self._news_close = np.full(self.n, np.iinfo(np.int64).min, dtype=np.int64)

    # ---- the interface operators' stream steps use -------------------------------------------
    def mask(self, scope: str):
        """Symbols whose state advances at this bar: None for all (or for calendar values)."""
        return None if self.all_present or scope != SYMBOL else self.present

    def source(self, name: str) -> np.ndarray:
        return self._sources(name)

    def grouping(self, name: str):
        return self.engine.groupings.get(name)

    def output(self, nodes: Sequence[int]) -> np.ndarray:
        """The slice of ``V`` that holds the values of a step's nodes (consecutive rows)."""
        rows = self.row[list(nodes)]
        if not (rows == np.arange(rows[0], rows[0] + len(rows))).all():
            raise ValueError("a stream step's nodes do not hold consecutive rows")
        return self.V[rows[0]: rows[0] + len(rows)]

    def constant(self, value: float) -> int:
        """The row of ``V`` holding a constant."""
        return self._constant_row[float(value).hex()]

    def gather(self, rows: Sequence[int]) -> Callable[[], np.ndarray]:
        """f() -> (k, N): rows of ``V`` (a view when they are consecutive, else a reused buffer)."""
        rows = np.asarray(rows, dtype=np.int64)
        if (rows == np.arange(rows[0], rows[0] + len(rows))).all():
            view = self.V[rows[0]: rows[0] + len(rows)]
            return lambda: view
        V, buffer = self.V, np.empty((len(rows), self.n))
        return lambda: V.take(rows, axis=0, out=buffer, mode="clip")

    def gather_all(self, rows: Sequence[Sequence[int]]) -> Callable[[], list[np.ndarray]]:
        """f() -> [(k, N), ...]: several sets of k rows of ``V`` at once (views of consecutive rows;
        the others gathered by one ``take`` into a reused buffer)."""
        rows = [np.asarray(r, dtype=np.int64) for r in rows]
        views = [(r == np.arange(r[0], r[0] + len(r))).all() for r in rows]
        gathered = [r for r, view in zip(rows, views) if not view]
        V = self.V
        if not gathered:
            parts = [V[r[0]: r[0] + len(r)] for r in rows]
            return lambda: parts
        index, buffer = np.concatenate(gathered), np.empty((sum(map(len, gathered)), self.n))
        parts, at = [], 0
        for r, view in zip(rows, views):
            parts.append(V[r[0]: r[0] + len(r)] if view else buffer[at: at + len(r)])
            at += 0 if view else len(r)

        def read():
            V.take(index, axis=0, out=buffer, mode="clip")
            return parts
        return read

    def inputs_of(self, nodes: Sequence[int], position: int) -> Callable[[], np.ndarray]:
        """f() -> (k, N): the current values of each node's input at ``position``."""
        return self.gather(self.row[[self.inputs[i][position] for i in nodes]])

    def _ring_layout(self, nodes: Sequence[int]) -> tuple[str, np.ndarray, int, np.ndarray]:
        clocks = {_clock(self.nodes[i]) for i in nodes}
        if len(clocks) != 1:
            raise ValueError("a stream group reads histories of two clocks")
        clock = clocks.pop()
        slots = np.array([self._slot[i] for i in nodes])
        return clock, slots[:, None] * self.n + self.columns[None, :], self._width[clock], self._rings[clock]

    def _set_positions(self) -> None:
        """Flat offset of row p + R of each clock's ring, p = this bar's position (per symbol for
        the own-bar clock)."""
        for clock, count in (("own", self.own_count), ("calendar", self.calendar_count)):
            rows = self._rows[clock]
            self._now[clock] = (count % rows + rows) * self._width[clock]

    def lag_reader(self, nodes: Sequence[int], lags, back: np.ndarray | None = None) -> Callable:
        """f(out=None) -> (k, N): each node's value lags[i] >= 1 bars ago on its clock (rings are
        written at the end of the bar); ``back``: the lags as a (k, 1) array instead."""
        clock, offsets, width, ring = self._ring_layout(nodes)
        back = np.asarray(lags, dtype=np.int64)[:, None] if back is None else back.astype(np.int64)
        if (back < 1).any() or (back >= self._rows[clock]).any():
            raise ValueError("a lag reader reads the ring's past bars only")
        offsets, now = offsets - back * width, self._now
        return lambda out=None: ring.take(now[clock] + offsets, out=out, mode="wrap")

    def window_reader(self, nodes: Sequence[int], n: int) -> Callable[[], np.ndarray]:
        """f() -> (k, N, n) C-contiguous: each node's last n values including the current one,
        oldest first."""
        current = self.gather(self.row[list(nodes)])
        if n == 1:
            return lambda: current()[:, :, None]
        clock, offsets, width, ring = self._ring_layout(nodes)
        offsets = offsets[:, :, None] - np.arange(n - 1, 0, -1)[None, None, :] * width
        window, now = np.empty((len(nodes), self.n, n)), self._now
        own = clock == "own"

        def read():
            window[:, :, :-1] = ring.take((now[clock][:, None] if own else now[clock]) + offsets, mode="wrap")
            window[:, :, -1] = current()
            return window
        return read

    def history_reader(self, nodes: Sequence[int]) -> Callable[[np.ndarray, int], np.ndarray]:
        """f(pairs, m) -> (r, m): the values 1 .. m (< R) bars ago of (node, symbol) pairs given as
        flat indices into (len(nodes), N)."""
        clock, offsets, width, ring = self._ring_layout(nodes)
        now, back = self._now, np.arange(1, self._rows[clock])[None, :] * width

        def read(pairs, m):
            return ring.take((now[clock] + offsets).reshape(-1)[pairs][:, None] - back[:, :m])
        return read

    def _writer(self, nodes: list[int]):
        clock, offsets, width, ring = self._ring_layout(nodes)
        values, now, back = self.gather(self.row[nodes]), self._now, self._rows[clock] * width

        def write():
            at, current = now[clock] + offsets, values()
            ring[at] = current
            ring[at - back] = current
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
        prices = np.array([open, high, low, close, volume], dtype=np.float64)
        if not self.all_present:
            prices[:, ~present] = np.nan
        fields = dict(zip(BAR_FIELDS, prices))
        lazy: dict[str, np.ndarray] = {}

        def sources(name: str) -> np.ndarray:
            if name in fields:
                return fields[name]
            if name not in lazy:
                kind, _, field = name.partition(":")
                if kind == "calendar":
                    lazy.update({f"calendar:{k}": v for k, v in calendar_fields_at(timestamp).items()})
                elif kind == "macro":
                    close_ns = close_time(timestamp, self.engine.config.daily_close_time)
                    lazy[name] = self.engine.macro[field].asof(np.array([close_ns]))
                elif kind == "news":
                    lazy.update(self._news(present, close_time(timestamp, self.engine.config.daily_close_time)))
                else:
                    raise KeyError(f"unknown source {name}")
            return lazy[name]

        self._sources = sources
        with np.errstate(all="ignore"):
            for step in self._steps:
                step()
        for write in self._writers:
            write()
        invalid = self.own_count[:, None] < self._warm_own
        invalid |= self.calendar_count < self._warm_calendar
        if not self.all_present:
            invalid |= ~present[:, None]
        row = np.where(invalid, np.nan, self.V.take(self._outputs, axis=0).T)
        self.own_count += present
        self.calendar_count += 1
        self._set_positions()
        self.last_time = timestamp
        return row

    def _news(self, present: np.ndarray, close_ns: int) -> dict[str, np.ndarray]:
        out = np.full((len(NEWS_FIELDS), self.n), np.nan)
        book = self.engine.news
        now = np.array([close_ns])
        for j in np.flatnonzero(present):
            if self.own_count[j] > 0:  # the first bar's interval has no start
                upto = book.position(j, now)
                out[:, j] = book.between(j, book.position(j, self._news_close[j:j + 1]), upto)[0]
            self._news_close[j] = close_ns
        return {f"news:{name}": out[k] for k, name in enumerate(NEWS_FIELDS)}
