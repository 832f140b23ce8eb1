"""Features as formulas over a few primitive operators, each with a batch and a streaming evaluator.

A feature definition builds a small expression graph (:class:`Node`) from source series (open, high,
low, close, volume, ...) with ordinary arithmetic and the operators below. Every operator has

- ``batch(ctx, *arrays)``: vectorised over a whole history (T bars x N symbols), and
- ``stream_group(machine, nodes)``: an incremental updater whose state is numpy arrays, updated once
  per bar for all symbols at once. Nodes of the same kind that are ready at the same time are
  updated together (one set of numpy calls for, say, every rolling sum at once), so a bar costs a
  few hundred numpy calls however many symbols and features there are.

The streaming arithmetic repeats the batch's operation for operation (rolling sums are differences
of the same sequential cumulative sum, smoothers run the same recurrence, windows and cross-sections
share their kernels), so the two evaluators agree to a few units in the last place, not just to a
tolerance.

Scopes (where a node's values live):

- ``SYMBOL``: per symbol, on the symbol's own bars. Time-series operators advance only on the
  symbol's bars: a day it does not trade is not a gap in its windows. Batch arrays are "compact"
  (L, N): row k of column j is symbol j's k-th bar.
- ``PANEL``: per symbol on the run's calendar (T, N), NaN where the symbol has no bar; the input of
  cross-sectional operators (ranks, sector means), which see every symbol at the same bar.
- ``MARKET``: one value per calendar bar (T, 1): the universe's index, breadth, calendar, macro.

Mixing scopes in arithmetic converts automatically: a market value used with a symbol's series is
read at the symbol's own bars; a symbol series used cross-sectionally is laid on the calendar.

Warm-up: every operator knows how many bars of its input's clock it needs (a lag of k adds k, a
window of n adds n - 1, a recursive smoother adds its seed plus the bars for the seed's weight to
fall below ``seed_tolerance``), so a feature's warm-up is derived from its formula.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import scipy.signal
import talib

SYMBOL, PANEL, MARKET = "symbol", "panel", "market"
UNBOUNDED = 10**9  # warm-up of a start-dependent value (a running total): never usable on its own


class Op:
    """A primitive operator. Subclasses set ``name`` and ``params`` and implement the evaluators.

    ``stream_group(machine, nodes)`` returns a step that updates the values of ``nodes`` (indices
    into the machine's value matrix, all with equal :meth:`group_key`) for the current bar; see
    ``features.engine.FeatureStream`` for the machine's interface.
    """

    name = "op"

    def __init__(self, *params):
        self.params = params

    def key(self) -> tuple:
        return (type(self).__qualname__, self.params)

    def group_key(self, node: "Node") -> tuple:
        """Nodes with equal keys can be updated by one stream step."""
        return (type(self).__qualname__, self.params, node.scope)

    def warmup(self, node: "Node", warmup_of: Callable[["Node"], int], tolerance: float) -> int:
        """Bars of this node's clock before its value no longer depends on where the data started."""
        return max((warmup_of(i) for i in node.inputs), default=0)

    def history(self) -> dict[int, int]:
        """{input position: largest lag read from that input's history} (streaming only)."""
        return {}

    def batch(self, ctx: "BatchContext", *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def stream_group(self, machine, nodes: list[int]) -> Callable[[], None]:
        raise NotImplementedError(f"{type(self).__name__} has no streaming evaluator")


class Node:
    """One value per (bar, symbol), or per bar for ``MARKET``, defined by an operator over inputs."""

    __slots__ = ("op", "inputs", "scope")
    __array_priority__ = 1000  # numpy scalars on the left defer to our operators

    def __init__(self, op: Op, inputs: Sequence["Node"], scope: str):
        self.op, self.inputs, self.scope = op, tuple(inputs), scope

    def __repr__(self):
        return f"Node({self.op.name}{self.op.params!r}, {self.scope})"

    # arithmetic builds nodes; comparisons give 1.0 / 0.0 (NaN where an input is NaN)
    def __add__(self, other): return apply("add", self, other)
    def __radd__(self, other): return apply("add", other, self)
    def __sub__(self, other): return apply("sub", self, other)
    def __rsub__(self, other): return apply("sub", other, self)
    def __mul__(self, other): return apply("mul", self, other)
    def __rmul__(self, other): return apply("mul", other, self)
    def __truediv__(self, other): return apply("div", self, other)
    def __rtruediv__(self, other): return apply("div", other, self)
    def __pow__(self, other): return apply("pow", self, other)
    def __neg__(self): return apply("neg", self)
    def __abs__(self): return apply("abs", self)
    def __gt__(self, other): return apply("gt", self, other)
    def __lt__(self, other): return apply("gt", other, self)
    def __ge__(self, other): return apply("ge", self, other)
    def __le__(self, other): return apply("ge", other, self)
    __hash__ = object.__hash__


# ---------------------------------------------------------------------------------------------
# Elementwise functions: the same numpy calls on (L, N) batch arrays and (k, N) stream groups.

def _div(a, b):
    """a / b, NaN where b is 0 (no infinities anywhere in the graph)."""
    out = np.true_divide(a, b)
    if np.ndim(out):
        out[np.isinf(out)] = np.nan
    return out


TIE = 1e-12  # relative: rolling sums started at another bar differ from each other by rounding


def _cmp(d, strict):
    return np.where(np.isnan(d), np.nan, (d > 0) if strict else (d >= 0))


def _above(a, b):
    """a > b beyond rounding (relative TIE): 1.0 / 0.0, NaN where either is NaN. For comparing
    with a rolling sum, whose last bits depend on where the data began."""
    d = a - b
    return np.where(np.isnan(d), np.nan, d > TIE * np.maximum(np.abs(a), np.abs(b)))


def _where(cond, a, b):
    return np.where(np.isnan(cond), np.nan, np.where(cond > 0, a, b))


FUNCS: dict[str, Callable] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": _div,
    "pow": np.power,
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "sqrt": lambda x: np.sqrt(np.maximum(x, 0.0)),
    "log": lambda x: np.log(np.where(x > 0, x, np.nan)),
    "exp": np.exp,
    "max2": np.maximum,
    "min2": np.minimum,
    "gt": lambda a, b: _cmp(a - b, True),
    "ge": lambda a, b: _cmp(a - b, False),
    "above": _above,
    "eq": lambda a, b: np.where(np.isnan(a - b), np.nan, a == b),
    "where": _where,
    "fillna": lambda x, v: np.where(np.isnan(x), v, x),
}


class Map(Op):
    """Elementwise function of nodes and constants; ``params = (fn, spec)`` where spec lists, per
    argument, ``("n", i)`` for the i-th input node or ``("c", value)`` for a constant."""

    name = "map"

    def group_key(self, node):
        fn, spec = self.params
        return ("map", fn, self.function() is np.true_divide, tuple(kind if kind == "c" else v for kind, v in spec),
                node.scope)

    def batch(self, ctx, *xs):
        fn, spec = self.params
        return self.function()(*(xs[v] if kind == "n" else v for kind, v in spec))

    def function(self) -> Callable:
        fn, spec = self.params
        if fn == "div" and spec[1][0] == "c" and spec[1][1] != 0:
            return np.true_divide  # by a non-zero constant: no infinities to clear
        return FUNCS[fn]

    def stream_group(self, m, nodes):
        fn, spec = self.function(), self.params[1]
        out = np.array(nodes)
        args = []
        for position, (kind, v) in enumerate(spec):
            if kind == "n":
                args.append(("n", np.array([m.inputs[i][v] for i in nodes])))
            else:  # each node's own constant, as a column
                args.append(("c", np.array([m.nodes[i].op.params[1][position][1] for i in nodes])[:, None]))
        V = m.V

        if len(args) == 1:
            (_, a), = args
            def step(): V[out] = fn(V[a])
        elif len(args) == 2 and args[0][0] == "n" and args[1][0] == "n":
            a, b = args[0][1], args[1][1]
            def step(): V[out] = fn(V[a], V[b])
        else:
            def step(): V[out] = fn(*(V[v] if kind == "n" else v for kind, v in args))
        return step


def _unify(nodes: Sequence[Node]) -> tuple[str, list[Node]]:
    scopes = {n.scope for n in nodes}
    if SYMBOL in scopes:
        return SYMBOL, [to_symbol(n) for n in nodes]
    if PANEL in scopes:
        return PANEL, [to_panel(n) for n in nodes]
    return MARKET, list(nodes)


def apply(fn: str, *args) -> Node:
    """Elementwise ``FUNCS[fn]`` over nodes and numbers (scopes unified, see module docstring)."""
    nodes = [a for a in args if isinstance(a, Node)]
    if not nodes:
        raise TypeError(f"{fn}: at least one argument must be a feature expression")
    scope, converted = _unify(nodes)
    spec, inputs, at = [], [], {}
    for arg in args:
        if isinstance(arg, Node):
            node = converted[nodes.index(arg)]
            if id(node) not in at:
                at[id(node)] = len(inputs)
                inputs.append(node)
            spec.append(("n", at[id(node)]))
        else:
            spec.append(("c", float(arg)))
    return Node(Map(fn, tuple(spec)), inputs, scope)


# ---------------------------------------------------------------------------------------------
# Sources

class Source(Op):
    """An input series: ``params = (name, warm-up)``; the evaluator supplies its values."""

    name = "source"

    def __init__(self, name: str, warm: int = 0):
        super().__init__(name, warm)

    def warmup(self, node, warmup_of, tolerance):
        return self.params[1]

    def batch(self, ctx, *xs):
        return ctx.source(self.params[0])

    def stream_group(self, m, nodes):
        name, V, (i,) = self.params[0], m.V, nodes

        def step():
            V[i] = m.source(name)
        return step


def source(name: str, scope: str = SYMBOL, warmup: int = 0) -> Node:
    return Node(Source(name, warmup), (), scope)


# ---------------------------------------------------------------------------------------------
# Time-series operators (along each symbol's own bars for SYMBOL, along the calendar otherwise)

class Lag(Op):
    """x_{t-k}: the value k bars earlier (NaN before the first k bars)."""

    name = "lag"

    def group_key(self, node):
        return ("lag", node.scope)

    def warmup(self, node, warmup_of, tolerance):
        return warmup_of(node.inputs[0]) + self.params[0]

    def history(self):
        return {0: self.params[0]}

    def batch(self, ctx, x):
        k = self.params[0]
        out = np.empty_like(x)
        out[:k] = np.nan
        out[k:] = x[: len(x) - k]
        return out

    def stream_group(self, m, nodes):
        V, out = m.V, np.array(nodes)
        read = m.lag_reader([m.inputs[i][0] for i in nodes], [m.nodes[i].op.params[0] for i in nodes])

        def step():
            V[out] = read()
        return step


class CumSum(Op):
    """Running total of x with NaN counted as 0 (``params = ("sum",)``) or running count of valid
    values (``params = ("count",)``). Start-dependent: only differences are features."""

    name = "cumsum"
    history_fill = 0.0

    def warmup(self, node, warmup_of, tolerance):
        return UNBOUNDED

    def batch(self, ctx, x):
        valid = ~np.isnan(x)
        if self.params[0] == "count":
            return np.cumsum(valid, axis=0, dtype=np.int64).astype(np.float64)
        return np.cumsum(np.where(valid, x, 0.0), axis=0)

    def stream_group(self, m, nodes):
        V, out, count = m.V, np.array(nodes), self.params[0] == "count"
        src = np.array([m.inputs[i][0] for i in nodes])
        total = np.zeros((len(nodes), m.n))
        scope = m.nodes[nodes[0]].scope

        def step():
            x = V[src]
            valid = ~np.isnan(x)
            mask = m.mask(scope)
            if mask is not None:
                valid &= mask
            np.add(total, valid if count else np.where(valid, x, 0.0), out=total)
            V[out] = total
        return step


class RollingSum(Op):
    """Sum of x over the last n bars, NaN unless all n are valid: S_t - S_{t-n} of the running
    sums of :class:`CumSum` (inputs: running sum, running count)."""

    name = "rsum"

    def group_key(self, node):
        return ("rsum", node.scope)

    def warmup(self, node, warmup_of, tolerance):
        return warmup_of(node.inputs[0].inputs[0]) + self.params[0] - 1

    def history(self):
        return {0: self.params[0], 1: self.params[0]}

    def batch(self, ctx, total, count):
        n = self.params[0]
        window_total, window_count = total.copy(), count.copy()  # S_t - S_{t-n}, S_{t-n} = 0 at t < n
        np.subtract(total[n:], total[:-n], out=window_total[n:])
        np.subtract(count[n:], count[:-n], out=window_count[n:])
        window_total[window_count != n] = np.nan
        return window_total

    def stream_group(self, m, nodes):
        V, out = m.V, np.array(nodes)
        n = np.array([m.nodes[i].op.params[0] for i in nodes], dtype=np.float64)[:, None]
        totals = np.array([m.inputs[i][0] for i in nodes])
        counts = np.array([m.inputs[i][1] for i in nodes])
        back = n.astype(np.int64)
        read_total, read_count = m.lag_reader(totals, None, back), m.lag_reader(counts, None, back)

        def step():
            window_total = V[totals] - read_total()
            window_total[(V[counts] - read_count()) != n] = np.nan
            V[out] = window_total
        return step


class Window(Op):
    """A reduction over the last n bars of one or more inputs that running sums cannot express
    (max, min, bars since the extreme, mean absolute deviation, fixed-weight sums, volume profile).

    ``params = (kind, n, extra)``. The kernel works on windows shaped (..., N, n), oldest first; the
    batch applies it to sliding windows of the whole history (in row blocks), the stream to the
    windows gathered from its ring buffers, so both run the same reduction.
    """

    name = "window"
    _BLOCK = 1 << 22  # elements per batch block of windows

    def warmup(self, node, warmup_of, tolerance):
        return max(warmup_of(i) for i in node.inputs) + self.params[1] - 1

    def history(self):
        return {i: self.params[1] - 1 for i in range(self.n_windowed)}

    @property
    def n_windowed(self) -> int:
        return 2 if self.params[0] == "volume_below" else 1

    def kernel(self, windows, current):
        kind, n, extra = self.params
        w = windows[0]
        if kind == "max":
            return w.max(axis=-1)
        if kind == "min":
            return w.min(axis=-1)
        if kind in ("bars_since_max", "bars_since_min"):
            recent_first = w[..., ::-1]
            idx = (recent_first.argmax(axis=-1) if kind == "bars_since_max"
                   else recent_first.argmin(axis=-1)).astype(np.float64)
            return np.where(np.isnan(w).any(axis=-1), np.nan, idx)
        # sums run over a contiguous last axis in both evaluators, so they add in the same order
        windows = [np.ascontiguousarray(x) for x in windows]
        w = windows[0]
        if kind == "mean_abs_dev":
            mean = w.mean(axis=-1)
            return np.abs(w - mean[..., None]).mean(axis=-1)
        if kind == "dot":
            return w @ np.asarray(extra)
        if kind == "volume_below":  # share of the window's volume traded at or below the current price
            price, volume = windows
            below = np.where(price <= current[0][..., None], volume, 0.0)
            return _div(below.sum(axis=-1), volume.sum(axis=-1))
        raise ValueError(f"unknown window kind {kind}")

    def batch(self, ctx, *xs):
        kind, n, _ = self.params
        k = self.n_windowed
        out = np.full(xs[0].shape, np.nan)
        if kind in self._TALIB and xs[0].shape[0] >= n:
            done = self._talib_extreme(xs[0], out)
            if done.all():
                return out
        else:
            done = np.zeros(xs[0].shape[1], dtype=bool)
        rows = xs[0].shape[0] - n + 1
        if rows <= 0:
            return out
        cols = np.flatnonzero(~done)
        views = [np.lib.stride_tricks.sliding_window_view(x[:, cols], n, axis=0) for x in xs[:k]]
        block = max(1, self._BLOCK // max(1, len(cols) * n))
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            current = [x[start + n - 1: stop + n - 1][:, cols] for x in xs[k:]]
            out[start + n - 1: stop + n - 1, cols] = self.kernel([v[start:stop] for v in views], current)
        return out

    _TALIB = {  # kind -> f(column, n): the same values as the kernel on a column without NaN
        "max": lambda x, n: talib.MAX(x, n),
        "min": lambda x, n: talib.MIN(x, n),
        # Aroon over n - 1 bars looks at n bars and takes the most recent extreme on ties, as the kernel
        "bars_since_max": lambda x, n: np.round((n - 1) * (1 - talib.AROON(x, x, n - 1)[1] / 100)),
        "bars_since_min": lambda x, n: np.round((n - 1) * (1 - talib.AROON(x, x, n - 1)[0] / 100)),
    }

    def _talib_extreme(self, x, out) -> np.ndarray:
        """Rolling extremes by TA-Lib per column where the column has no NaN inside its data (the
        result is then identical to the kernel's); returns which columns were done."""
        kind, n, _ = self.params
        fn = self._TALIB[kind]
        done = np.zeros(x.shape[1], dtype=bool)
        valid = ~np.isnan(x)
        for j in range(x.shape[1]):
            idx = np.flatnonzero(valid[:, j])
            if len(idx) == 0:
                done[j] = True
                continue
            first, last = idx[0], idx[-1]
            if last - first + 1 != len(idx):
                continue  # a NaN inside: the kernel handles it
            if last - first + 1 >= n:
                out[first: last + 1, j] = fn(np.ascontiguousarray(x[first: last + 1, j]), n)
            done[j] = True
        return done

    def stream_group(self, m, nodes):
        kind, n, _ = self.params
        k = self.n_windowed
        V, out = m.V, np.array(nodes)
        readers = [m.window_reader([m.inputs[i][p] for i in nodes], n) for p in range(k)]
        current = [np.array([m.inputs[i][p] for i in nodes]) for p in range(k, len(m.nodes[nodes[0]].inputs))]

        def step():
            V[out] = self.kernel([read() for read in readers], [V[c] for c in current])
        return step


def settle_bars(b: float, tolerance: float) -> int:
    """Bars after which a seed's weight b^k in a recursion y = a x + b y is below ``tolerance``."""
    return math.ceil(math.log(tolerance) / math.log(b)) if 0 < b < 1 else 0


class Smooth(Op):
    """Recursive smoother y_t = a * x_t + b * y_{t-1}, TA-Lib-style seeded.

    ``params = (a, b, m, div, skip)``: from the first valid input, ``skip`` bars are passed over,
    the seed is the sum of the next m inputs divided by ``div`` (an SMA seed: div = m; Wilder's
    running sums: div = 1); then the recurrence. A NaN input after the start propagates (as in
    TA-Lib). EMA: a = 2/(n+1), b = 1 - a; Wilder: a = 1/n, b = 1 - 1/n.

    Warm-up: skip + m - 1 bars for the seed, plus the bars after which the seed's weight b^k falls
    below ``seed_tolerance``.
    """

    name = "smooth"

    def group_key(self, node):
        return ("smooth", node.scope)

    def warmup(self, node, warmup_of, tolerance):
        a, b, m, div, skip = self.params
        return warmup_of(node.inputs[0]) + skip + m - 1 + settle_bars(b, tolerance)

    def batch(self, ctx, x):
        a, b, m, div, skip = self.params
        out = np.full(x.shape, np.nan)
        valid = ~np.isnan(x)
        first = np.where(valid.any(axis=0), valid.argmax(axis=0), -1)
        for start in np.unique(first[first >= 0]):
            cols = np.flatnonzero(first == start)
            seed_at = start + skip + m - 1
            if seed_at >= x.shape[0]:
                continue
            block = x[:, cols]
            seed = np.cumsum(block[start + skip: seed_at + 1], axis=0)[-1] / div
            out[seed_at, cols] = seed
            if seed_at + 1 < x.shape[0]:
                out[seed_at + 1:, cols] = scipy.signal.lfilter(
                    [a], [1.0, -b], block[seed_at + 1:], axis=0, zi=(b * seed)[None, :])[0]
        return out

    def stream_group(self, mach, nodes):
        V, out = mach.V, np.array(nodes)
        src = np.array([mach.inputs[i][0] for i in nodes])
        a, b, m, div, skip = (np.array([mach.nodes[i].op.params[p] for i in nodes])[:, None] for p in range(5))
        m, skip = m.astype(np.int64), skip.astype(np.int64)
        shape = (len(nodes), mach.n)
        seen = np.zeros(shape, dtype=np.int64)   # bars since (and including) the first valid input
        total = np.zeros(shape)
        y = np.full(shape, np.nan)
        scope = mach.nodes[nodes[0]].scope
        ready = np.zeros(mach.n, dtype=bool)  # symbols past the seed in every node of the group

        def step():
            x = V[src]
            mask = mach.mask(scope)
            if ready.all() or (mask is not None and ready[mask].all()):  # the plain recurrence
                if mask is None:
                    y[:] = a * x + b * y
                else:
                    np.copyto(y, a * x + b * y, where=mask)
            else:
                started = (seen > 0) | ~np.isnan(x)
                if mask is not None:
                    started &= mask
                np.add(seen, started, out=seen)
                seeding = started & (seen > skip) & (seen <= skip + m)
                total[:] = np.where(seeding, total + x, total)
                y[:] = np.where(started & (seen > skip + m), a * x + b * y,
                                np.where(started & (seen == skip + m), total / div, y))
                ready[:] = (seen > skip + m).all(axis=0)
            V[out] = y
        return step


# ---------------------------------------------------------------------------------------------
# Scope conversions and cross-sectional operators

class ToPanel(Op):
    """A symbol's series (or a market value) laid on the calendar, NaN where the symbol has no bar."""

    name = "to_panel"

    def batch(self, ctx, x):
        return ctx.scatter(x) if self.params[0] == SYMBOL else ctx.broadcast(x)

    def stream_group(self, m, nodes):
        V, out, src = m.V, np.array(nodes), np.array([m.inputs[i][0] for i in nodes])

        def step():
            V[out] = V[src] if m.all_present else np.where(m.present, V[src], np.nan)
        return step


class ToSymbol(Op):
    """A calendar value read at each symbol's own bars."""

    name = "to_symbol"

    def group_key(self, node):
        return ("to_symbol", node.scope)

    def batch(self, ctx, x):
        return ctx.gather(x)

    def stream_group(self, m, nodes):
        V, out, src = m.V, np.array(nodes), np.array([m.inputs[i][0] for i in nodes])

        def step():
            V[out] = V[src]
        return step


def to_panel(node: Node) -> Node:
    return node if node.scope == PANEL else Node(ToPanel(node.scope), (node,), PANEL)


def to_symbol(node: Node) -> Node:
    return node if node.scope == SYMBOL else Node(ToSymbol(), (node,), SYMBOL)


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1-based average ranks along the last axis, NaN ranked after every value; number of valid
    values)."""
    shape, n = x.shape, x.shape[-1]
    x = x.reshape(-1, n)
    rows = np.arange(x.shape[0])[:, None]
    valid = ~np.isnan(x)
    filled = np.where(valid, x, np.inf)
    order = np.argsort(filled, axis=-1, kind="stable")
    ordered = filled[rows, order]
    position = np.arange(n, dtype=np.float64)
    tied = ordered[:, 1:] == ordered[:, :-1]
    if not (tied & (ordered[:, 1:] < np.inf)).any():  # no ties among values: ordinal ranks
        average = position + 1.0
    else:
        starts = np.ones(x.shape, dtype=bool)
        starts[:, 1:] = ~tied
        ends = np.ones(x.shape, dtype=bool)
        ends[:, :-1] = ~tied
        first = np.maximum.accumulate(np.where(starts, position, 0.0), axis=-1)
        last = np.minimum.accumulate(np.where(ends, position, n)[:, ::-1], axis=-1)[:, ::-1]
        average = (first + last) / 2 + 1
    ranks = np.empty(x.shape)
    ranks[rows, order] = average
    return ranks.reshape(shape), valid.sum(axis=-1).reshape(shape[:-1] + (1,))


def _rank(x: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1] along the last axis among valid values (average ties; 0.5 alone)."""
    ranks, n = _average_ranks(x)
    pct = np.where(n > 1, (ranks - 1.0) / np.maximum(n - 1, 1), 0.5)
    return np.where(np.isnan(x), np.nan, pct)


def _mean(x):
    valid = ~np.isnan(x)
    return _div(np.where(valid, x, 0.0).sum(axis=-1, keepdims=True), valid.sum(axis=-1, keepdims=True))


def _std(x):
    centred = x - _mean(x)
    return np.sqrt(_mean(centred * centred))


class Grouping:
    """Columns split into groups (e.g. sectors): each column's group code, -1 for none."""

    def __init__(self, codes: Sequence[int]):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.size = int(self.codes.max(initial=-1)) + 1
        self.order = np.argsort(self.codes, kind="stable")
        self.order = self.order[self.codes[self.order] >= 0]
        self.starts = np.searchsorted(self.codes[self.order], np.arange(self.size))

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Each column's group mean over valid values (NaN for columns in no group)."""
        out = np.full(x.shape, np.nan)
        if self.size == 0:
            return out
        part = x[..., self.order]
        valid = ~np.isnan(part)
        sums = np.add.reduceat(np.where(valid, part, 0.0), self.starts, axis=-1)
        counts = np.add.reduceat(valid.astype(np.float64), self.starts, axis=-1)
        means = _div(sums, counts)
        out[..., self.order] = means[..., self.codes[self.order]]
        return out

    def rank(self, x: np.ndarray) -> np.ndarray:
        """Percentile rank within each column's group (average ties; 0.5 alone in its group):
        the average ranks of (group, overall rank) keys, less the valid values of lower groups."""
        out = np.full(x.shape, np.nan)
        if self.size == 0:
            return out
        part = x[..., self.order]
        codes = self.codes[self.order]
        valid = ~np.isnan(part)
        ranks, _ = _average_ranks(np.where(valid, 2.0 * codes + _rank(part), np.nan))  # rank in [0, 1]
        sizes = np.add.reduceat(valid.astype(np.float64), self.starts, axis=-1)
        below = (np.cumsum(sizes, axis=-1) - sizes)[..., codes]
        n = sizes[..., codes]
        pct = np.where(n > 1, (ranks - below - 1.0) / np.maximum(n - 1, 1), 0.5)
        out[..., self.order] = np.where(valid, pct, np.nan)
        return out


class CrossSection(Op):
    """Row-wise across the symbols present at one bar: ``params = (kind, grouping)``.

    kinds: ``rank`` (percentile rank), ``zscore``, ``mean`` / ``std`` (to a market value),
    ``group_mean`` / ``group_rank`` (within each group of the named grouping, e.g. "sector", which
    the evaluator supplies; symbols in no group get NaN). The batch applies the kernel to every
    calendar row, the stream to one row per node.
    """

    name = "cross_section"

    def kernel(self, x: np.ndarray, grouping: Grouping | None) -> np.ndarray:
        kind = self.params[0]
        if kind == "rank":
            return _rank(x)
        if kind == "mean":
            return _mean(x)
        if kind == "std":
            return _std(x)
        if kind == "zscore":
            return _div(x - _mean(x), _std(x))
        if kind == "group_mean":
            return grouping.mean(x)
        if kind == "group_rank":
            return grouping.rank(x)
        raise ValueError(f"unknown cross-section kind {kind}")

    def batch(self, ctx, x):
        return self.kernel(x, ctx.grouping(self.params[1]))

    def stream_group(self, m, nodes):
        V, out, src = m.V, np.array(nodes), np.array([m.inputs[i][0] for i in nodes])
        grouping = m.grouping(self.params[1])

        def step():
            V[out] = self.kernel(V[src], grouping)
        return step


# ---------------------------------------------------------------------------------------------
# The batch context: compact (own-bar) and calendar layouts of a panel of bars.

class BatchContext:
    """Layouts of one batch evaluation: T calendar bars, N symbols, L = most bars of one symbol."""

    def __init__(self, present: np.ndarray, groupings: Callable[[str], Grouping | None]):
        self.present = present                      # (T, N) bool
        self.T, self.N = present.shape
        self.own_counts = present.sum(axis=0)       # bars per symbol
        self.L = int(self.own_counts.max(initial=0))
        self.aligned = bool(present.all())          # compact layout == calendar layout
        self.cols, self.cal_rows = np.nonzero(present.T)  # every own bar, by symbol then time
        starts = np.concatenate([[0], np.cumsum(self.own_counts)[:-1]])
        self.own_rows = np.arange(len(self.cols)) - np.repeat(starts, self.own_counts)
        self.grouping = groupings
        self.sources: Callable[[str], np.ndarray] | None = None

    def source(self, name: str) -> np.ndarray:
        return self.sources(name)

    def scatter(self, compact: np.ndarray) -> np.ndarray:
        if self.aligned:
            return compact
        out = np.full((self.T, self.N), np.nan)
        out[self.cal_rows, self.cols] = compact[self.own_rows, self.cols]
        return out

    def gather(self, calendar: np.ndarray) -> np.ndarray:
        if self.aligned:
            return np.broadcast_to(calendar, (self.T, self.N)).copy()
        out = np.full((self.L, self.N), np.nan)
        out[self.own_rows, self.cols] = calendar[self.cal_rows, self.cols if calendar.shape[1] > 1 else 0]
        return out

    def broadcast(self, market: np.ndarray) -> np.ndarray:
        return np.where(self.present, market, np.nan)

    def own_index(self) -> np.ndarray:
        """(T, N): the symbol's own bar number at each calendar bar, -1 where it has no bar."""
        out = np.full((self.T, self.N), -1, dtype=np.int64)
        out[self.cal_rows, self.cols] = self.own_rows
        return out
