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
share their kernels; rolling extremes, being exact, are tracked incrementally), so the two evaluators
agree to a few units in the last place, not just to a tolerance.

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

    ``stream_group(machine, nodes)`` returns a step that updates the values of ``nodes`` (program
    indices, all with equal :meth:`group_key`) for the current bar, writing them into the
    consecutive rows ``machine.output(nodes)`` of the machine's value matrix; see
    ``features.engine.FeatureStream`` for the machine's interface.
    """

    name = "op"
    writes_out = False  # batch(ctx, *xs, out=array) may write its result into ``out`` (the node's shape)

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

def _div(a, b, out=None):
    """a / b, NaN where b is 0 (no infinities anywhere in the graph)."""
    out = np.true_divide(a, b, out=out)
    if np.ndim(out):
        inf = np.isinf(out)
        if inf.any():
            out[inf] = np.nan
    return out


TIE = 1e-12  # relative: rolling sums started at another bar differ from each other by rounding


def _cmp(d, strict, out=None):
    if out is None:
        return np.where(np.isnan(d), np.nan, (d > 0) if strict else (d >= 0))
    nan = np.isnan(d)
    np.copyto(out, (d > 0) if strict else (d >= 0))
    out[nan] = np.nan
    return out


def _gt(a, b, out=None):
    return _cmp(np.subtract(a, b, out=out), True, out)


def _ge(a, b, out=None):
    return _cmp(np.subtract(a, b, out=out), False, out)


def _above(a, b, out=None):
    """a > b beyond rounding (relative TIE): 1.0 / 0.0, NaN where either is NaN. For comparing
    with a rolling sum, whose last bits depend on where the data began."""
    d = a - b
    return _into(np.where(np.isnan(d), np.nan, d > TIE * np.maximum(np.abs(a), np.abs(b))), out)


def _eq(a, b, out=None):
    if out is None:
        return np.where(np.isnan(a - b), np.nan, a == b)
    nan = np.isnan(np.subtract(a, b, out=out))
    np.equal(a, b, out=out)
    out[nan] = np.nan
    return out


def _where(cond, a, b, out=None):
    if out is None:
        return np.where(np.isnan(cond), np.nan, np.where(cond > 0, a, b))
    np.copyto(out, b)
    np.copyto(out, a, where=cond > 0)
    out[np.isnan(cond)] = np.nan
    return out


def _sqrt(x, out=None):
    return np.sqrt(np.maximum(x, 0.0, out=out), out=out)


def _log(x, out=None):
    return np.log(np.where(x > 0, x, np.nan), out=out)


def _fillna(x, v, out=None):
    return _into(np.where(np.isnan(x), v, x), out)


def _into(value, out):
    if out is None:
        return value
    out[...] = value
    return out


# Each takes its arguments and an optional ``out`` array to write the result into.
FUNCS: dict[str, Callable] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": _div,
    "pow": np.power,
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "sqrt": _sqrt,
    "log": _log,
    "exp": np.exp,
    "max2": np.maximum,
    "min2": np.minimum,
    "gt": _gt,
    "ge": _ge,
    "above": _above,
    "eq": _eq,
    "where": _where,
    "fillna": _fillna,
}


class Map(Op):
    """Elementwise function of nodes and constants; ``params = (fn, spec)`` where spec lists, per
    argument, ``("n", i)`` for the i-th input node or ``("c", value)`` for a constant."""

    name = "map"

    def group_key(self, node):
        fn, spec = self.params
        if fn == "pow":  # not exactly rounded: its constants stay scalars, as in the batch
            return ("map", fn, tuple(kind if kind == "c" else v for kind, v in spec))
        # exactly rounded functions give the same values whether a constant is a scalar or a row
        # of the machine's constants, so one step takes every node of the function and arity
        return ("map", fn, self.function() is np.true_divide, len(spec))

    writes_out = True

    def batch(self, ctx, *xs, out=None):
        fn, spec = self.params
        return self.function()(*(xs[v] if kind == "n" else v for kind, v in spec), out=out)

    def function(self) -> Callable:
        fn, spec = self.params
        if fn == "div" and spec[1][0] == "c" and spec[1][1] != 0:
            return np.true_divide  # by a non-zero constant: no infinities to clear
        return FUNCS[fn]

    def stream_group(self, m, nodes):
        fn, target = self.function(), m.output(nodes)
        name, spec = self.params
        rows, columns = [], {}
        for position in range(len(spec)):
            specs = [m.nodes[i].op.params[1][position] for i in nodes]
            if name == "pow" and specs[0][0] == "c":  # each node's constant, as a column
                columns[position] = np.array([v for _, v in specs])[:, None]
            else:
                rows.append([m.row[m.inputs[i][v]] if kind == "n" else m.constant(v)
                             for i, (kind, v) in zip(nodes, specs)])
        read = m.gather_all(rows)
        if columns:
            def step():
                gathered = iter(read())
                fn(*(columns[p] if p in columns else next(gathered) for p in range(len(spec))), out=target)
        elif len(spec) == 1:
            def step(): fn(read()[0], out=target)
        elif len(spec) == 2:
            def step():
                a, b = read()
                fn(a, b, out=target)
        else:
            def step(): fn(*read(), out=target)
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

    def group_key(self, node):
        return ("source", node.scope)

    def batch(self, ctx, *xs):
        return ctx.source(self.params[0])

    def stream_group(self, m, nodes):
        target, names = m.output(nodes), [m.nodes[i].op.params[0] for i in nodes]

        def step():
            for k, name in enumerate(names):
                target[k] = m.source(name)
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

    writes_out = True

    def batch(self, ctx, x, out=None):
        k = self.params[0]
        out = np.empty_like(x) if out is None else out
        out[:k] = np.nan
        out[k:] = x[: len(x) - k]
        return out

    def stream_group(self, m, nodes):
        target = m.output(nodes)
        read = m.lag_reader([m.inputs[i][0] for i in nodes], [m.nodes[i].op.params[0] for i in nodes])

        def step():
            read(out=target)
        return step


class CumSum(Op):
    """Running total of x with NaN counted as 0 (``params = ("sum",)``) or running count of valid
    values (``params = ("count",)``). Start-dependent: only differences are features."""

    name = "cumsum"
    history_fill = 0.0

    def warmup(self, node, warmup_of, tolerance):
        return UNBOUNDED

    writes_out = True

    def batch(self, ctx, x, out=None):
        if self.params[0] == "count":
            return ValidCount.of(x)
        nan = np.isnan(x)
        missing = np.count_nonzero(nan)
        if not missing:
            return np.cumsum(x, axis=0, out=out)
        lead = missing // x.shape[1]
        if lead < len(x) and missing == lead * x.shape[1] and nan[:lead].all() and not nan[lead:].any() \
                and not (np.signbit(x[lead]) & (x[lead] == 0)).any():
            # NaN rows, then none: the total is 0 through them and then the sum from the first
            # valid row (0 + v is v unless v is -0.0, checked above)
            out = np.empty(x.shape) if out is None else out
            out[:lead] = 0.0
            np.cumsum(x[lead:], axis=0, out=out[lead:])
            return out
        return np.cumsum(np.where(nan, 0.0, x), axis=0, out=out)

    def group_key(self, node):
        return ("cumsum", node.scope)

    def stream_group(self, m, nodes):
        """The nodes' rows hold their running totals: streaks first (a count only rolling sums
        read: the number of valid values in a row, 0 after a NaN), then counts, then sums."""
        target, x_of, scope = m.output(nodes), m.inputs_of(nodes, 0), m.nodes[nodes[0]].scope
        streaks = sum(i in m.streaks for i in nodes)
        counts = streaks + sum(m.nodes[i].op.params[0] == "count" and i not in m.streaks for i in nodes)
        target[:] = 0.0

        streak, count, total = target[:streaks], target[streaks:counts], target[counts:]

        def step():
            x = x_of()
            valid = ~np.isnan(x)
            mask = m.mask(scope)
            if streaks:  # (s + 1) if valid, 0 if not; unchanged where the symbol has no bar
                np.add(streak, 1.0 if mask is None else mask, out=streak)
                np.multiply(streak, valid[:streaks] if mask is None else valid[:streaks] | ~mask, out=streak)
            if mask is not None:
                valid &= mask
            if len(count):
                np.add(count, valid[streaks:counts], out=count)
            if len(total):  # + 0.0 where invalid: a total is never -0.0, so adding nothing is the same
                np.add(total, x[counts:], out=total, where=valid[counts:])
        return step


class ValidCount:
    """The batch value of a running count of valid values (``CumSum("count")``). Usually NaN only
    precede a series' warm-up and follow a symbol's last bar, so each column's valid values form
    one run, rows ``first..last``, and the count need not be materialised; when a column has a NaN
    inside its run, ``first`` is None and the dense running count is kept instead."""

    def __init__(self, first: np.ndarray | None, last: np.ndarray | None, dense: np.ndarray | None = None,
                 rows: int = 0):
        self.first, self.last, self._dense, self.rows = first, last, dense, rows

    @classmethod
    def of(cls, x: np.ndarray) -> "ValidCount":
        nan = np.isnan(x)
        first, last, single = _valid_runs(nan)
        if not single.all():
            return cls(None, None, np.cumsum(~nan, axis=0, dtype=np.int64).astype(np.float64), len(x))
        return cls(first, last, rows=len(x))

    def dense(self) -> np.ndarray:
        """The running count as an array (the value ``CumSum("count")`` stands for)."""
        if self._dense is None:
            t = np.arange(self.rows)[:, None]
            self._dense = np.clip(t - self.first + 1, 0, np.maximum(self.last - self.first + 1, 0)).astype(np.float64)
        return self._dense


def _valid_runs(nan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of a (rows, columns) mask of NaN: the first and last valid row (rows and -1 for a
    column with none) and whether the valid rows are one unbroken run."""
    rows, columns = nan.shape
    missing = np.count_nonzero(nan)
    lead = missing // columns if columns else 0
    if missing == lead * columns and nan[:lead].all() and not nan[lead:].any():  # NaN rows, then none
        return np.full(columns, lead), np.full(columns, rows - 1), np.ones(columns, dtype=bool)
    valid = ~nan
    count = np.count_nonzero(valid, axis=0)
    empty = count == 0
    first = np.where(empty, rows, valid.argmax(axis=0))
    last = np.where(empty, -1, rows - 1 - valid[::-1].argmax(axis=0))
    return first, last, empty | (count == last - first + 1)


def _blank_outside(out: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
    """NaN in each column j of ``out`` outside rows first[j]..last[j]; columns sharing their bounds
    are blanked together (usually all of them)."""
    rows = len(out)
    start, stop = np.clip(first, 0, rows), np.clip(last + 1, 0, rows)
    if (start == start[0]).all() and (stop == stop[0]).all():
        out[: start[0]] = np.nan
        out[stop[0]:] = np.nan
        return
    bounds = np.unique(start * (rows + 1) + stop)
    if len(bounds) > 8:
        t = np.arange(rows)[:, None]
        out[(t < start) | (t >= stop)] = np.nan
        return
    for a, b in zip(*np.divmod(bounds, rows + 1)):
        cols = np.flatnonzero((start == a) & (stop == b))
        out[:a, cols] = np.nan
        out[b:, cols] = np.nan


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

    writes_out = True
    reads_valid_counts = True  # its count input may be a ValidCount

    def batch(self, ctx, total, count, out=None):
        n = self.params[0]
        window_total = np.empty_like(total) if out is None else out  # S_t - S_{t-n}, S_{t-n} = 0 at t < n
        window_total[:n] = total[:n]
        np.subtract(total[n:], total[:-n], out=window_total[n:])
        if count.first is not None:  # all n valid: from the run's (first + n - 1)-th row to its last
            _blank_outside(window_total, count.first + n - 1, count.last)
            return window_total
        count = count.dense()
        window_count = count.copy()
        np.subtract(count[n:], count[:-n], out=window_count[n:])
        window_total[window_count != n] = np.nan
        return window_total

    def stream_group(self, m, nodes):
        target = m.output(nodes)
        n = np.array([m.nodes[i].op.params[0] for i in nodes], dtype=np.float64)[:, None]
        totals, counts = [m.inputs[i][0] for i in nodes], [m.inputs[i][1] for i in nodes]
        back = n.astype(np.int64)
        now = m.gather_all([m.row[totals], m.row[counts]])
        read_total = m.lag_reader(totals, None, back)
        if all(j in m.streaks for j in counts):  # all n valid: a streak of at least n
            def step():
                total, count = now()
                np.subtract(total, read_total(), out=target)
                target[count < n] = np.nan
            return step
        read_count = m.lag_reader(counts, None, back)

        def step():
            total, count = now()
            np.subtract(total, read_total(), out=target)
            target[(count - read_count()) != n] = np.nan
        return step


class Window(Op):
    """A reduction over the last n bars of one or more inputs that running sums cannot express
    (max, min, bars since the extreme, mean absolute deviation, fixed-weight sums, volume profile).

    ``params = (kind, n, extra)``. The kernel works on windows shaped (..., N, n), oldest first; the
    batch applies it to sliding windows of the whole history (in row blocks; rolling extremes of
    columns without a NaN inside go through TA-Lib, which gives the same values), the stream to the
    windows gathered from its ring buffers, so both run the same reduction; but the stream tracks
    rolling extremes incrementally (:func:`_stream_extremes`), which is exact as well.

    The sums of ``mean_abs_dev`` and ``volume_below`` add the window's terms one at a time, oldest
    first: the stream by a running sum along the window (``np.add.accumulate``), the batch by
    adding whole lagged columns (:meth:`_lag_sums`), the same additions in the same order, and
    far faster on long histories than reducing millions of small windows.
    """

    name = "window"
    _BLOCK = 1 << 16  # elements per batch block of windows (a block stays in the CPU's cache)

    _EXTREMES = ("bars_since_max", "bars_since_min", "max", "min")

    def group_key(self, node):
        if self.params[0] in self._EXTREMES:  # one step tracks every extreme (see _stream_extremes)
            return ("window", "extreme", node.scope)
        return ("window", self.params, node.scope)

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
        if kind == "mean_abs_dev":
            mean = _running_total(w) / n
            return _running_total(np.abs(w - mean[..., None])) / n
        if kind == "dot":  # a contiguous last axis in both evaluators: the same products and sums
            return np.ascontiguousarray(w) @ np.asarray(extra)
        if kind == "volume_below":  # share of the window's volume traded at or below the current price
            price, volume = windows
            # volume x (price <= current): where the volume is NaN, so is the window's total
            below = volume * (price <= current[0][..., None])
            return _div(_running_total(below), _running_total(volume))
        raise ValueError(f"unknown window kind {kind}")

    _LAGGED = ("mean_abs_dev", "volume_below")

    def _lag_sums(self, xs, out) -> None:
        """The batch of the kinds in ``_LAGGED``: the kernel's sums over whole lagged columns,
        window position k (oldest first) being rows k .. k + R - 1 for the R full windows."""
        kind, n, _ = self.params
        rows = len(xs[0]) - n + 1
        lag = lambda x, k: x[k: k + rows]  # noqa: E731
        if kind == "mean_abs_dev":
            x = xs[0]
            total = lag(x, 0).copy()
            for k in range(1, n):
                np.add(total, lag(x, k), out=total)
            mean = np.true_divide(total, n, out=total)
            deviations, term = np.abs(lag(x, 0) - mean), np.empty_like(mean)
            for k in range(1, n):
                np.abs(np.subtract(lag(x, k), mean, out=term), out=term)
                np.add(deviations, term, out=deviations)
            np.true_divide(deviations, n, out=out[n - 1:])
            return
        price, volume, current = xs[0], xs[1], xs[2][n - 1:]
        below, total = lag(volume, 0) * (lag(price, 0) <= current), lag(volume, 0).copy()
        at_or_below, term = np.empty(below.shape, dtype=bool), np.empty(below.shape)
        for k in range(1, n):
            np.less_equal(lag(price, k), current, out=at_or_below)
            np.add(below, np.multiply(lag(volume, k), at_or_below, out=term), out=below)
            np.add(total, lag(volume, k), out=total)
        _div(below, total, out=out[n - 1:])

    writes_out = True

    def batch(self, ctx, *xs, out=None):
        kind, n, _ = self.params
        k = self.n_windowed
        out = np.empty(xs[0].shape) if out is None else out
        out.fill(np.nan)
        rows = xs[0].shape[0] - n + 1
        if rows <= 0:
            return out
        if kind in self._LAGGED:
            self._lag_sums(xs, out)
            return out
        cols = slice(None)
        if kind in self._TALIB:
            cols = self._talib_extreme(xs[0], out)
            if len(cols) == 0:
                return out
            if len(cols) == xs[0].shape[1]:
                cols = slice(None)
        views = [np.lib.stride_tricks.sliding_window_view(x[:, cols], n, axis=0) for x in xs[:k]]
        width = views[0].shape[1]
        block = max(1, self._BLOCK // max(1, width * n))
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            current = [x[start + n - 1: stop + n - 1, cols] for x in xs[k:]]
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
        """Rolling extremes by TA-Lib where a column has no NaN inside its data (the result is then
        identical to the kernel's); returns the columns left to the kernel. Columns whose valid
        rows coincide go through one TA-Lib call, laid end to end: TA-Lib's sliding extremes are
        exact for any window of valid values, and the windows that straddle two columns are dropped."""
        kind, n, _ = self.params
        fn = self._TALIB[kind]
        first, last, single = _valid_runs(np.isnan(x))
        usable = single & (last - first + 1 >= n)  # a shorter run has no full window: NaN throughout
        runs = np.unique(first[usable] * (len(x) + 1) + last[usable])
        for a, b in zip(*np.divmod(runs, len(x) + 1)):
            together = len(runs) == 1 and usable.all()
            cols = slice(None) if together else np.flatnonzero(usable & (first == a) & (last == b))
            segments = np.ascontiguousarray(x[a: b + 1, cols].T)
            values = fn(segments.reshape(-1), n).reshape(segments.shape)
            out[a + n - 1: b + 1, cols] = values[:, n - 1:].T
        return np.flatnonzero(~single)

    def stream_group(self, m, nodes):
        kind, n, _ = self.params
        if kind in self._EXTREMES:
            return _stream_extremes(m, nodes)
        k, target = self.n_windowed, m.output(nodes)
        readers = [m.window_reader([m.inputs[i][p] for i in nodes], n) for p in range(k)]
        current = [m.inputs_of(nodes, p) for p in range(k, len(m.nodes[nodes[0]].inputs))]

        def step():
            target[...] = self.kernel([read() for read in readers], [c() for c in current])
        return step


def _running_total(w: np.ndarray) -> np.ndarray:
    """Sum along the last axis, one term at a time from the first (see :class:`Window`)."""
    return np.add.accumulate(w, axis=-1)[..., -1]


SHORT_WINDOW = 32  # rescans of windows up to this long and of longer ones are read separately


def _stream_extremes(m, nodes) -> Callable[[], None]:
    """Rolling max / min / bars since the max / min of every node of a step, each with its own
    window length, updated in O(1) per bar: each (node, symbol) keeps its extreme and its age;
    a new value at least as extreme replaces it (the most recent wins ties, as in the kernel), and
    only when the extreme leaves the window is that window read back from the ring and rescanned.
    Extremes are exact, so the values equal the kernel's. Minima are tracked as maxima of -x."""
    kinds = [m.nodes[i].op.params[0] for i in nodes]
    n = np.array([m.nodes[i].op.params[1] for i in nodes])[:, None]
    sign = np.array([1.0 if kind.endswith("max") else -1.0 for kind in kinds])[:, None]
    ages = np.array([kind.startswith("bars_since") for kind in kinds])[:, None]
    sources = [m.inputs[i][0] for i in nodes]
    x_of, target, scope = m.inputs_of(nodes, 0), m.output(nodes), m.nodes[nodes[0]].scope
    history = m.history_reader(sources)
    lags = np.arange(1, n.max() + 1)[None, :]
    shape = (len(nodes), m.n)
    pair_n, pair_sign = np.broadcast_to(n, shape).reshape(-1), np.broadcast_to(sign, shape).reshape(-1)
    ages = np.broadcast_to(ages, shape).copy()
    best = np.full(shape, -np.inf)             # the extreme of the valid values in the window
    age = np.zeros(shape, dtype=np.int64)      # bars since the (most recent) extreme
    streak = np.zeros(shape, dtype=np.int64)   # valid values in a row: the window is full at n

    def rescan(x, pairs, length):
        """The extreme and its age of each pair's whole window (recent first, -inf past its end)."""
        longest = length.max()
        window = np.empty((len(pairs), longest))
        window[:, 0] = x.reshape(-1)[pairs]
        if longest > 1:
            window[:, 1:] = history(pairs, longest - 1) * pair_sign[pairs, None]
        if (length < longest).any():
            window[lags[:, :longest] > length[:, None]] = -np.inf
        at = window.argmax(axis=1)  # the first maximum: the most recent
        best.reshape(-1)[pairs] = window[np.arange(len(pairs)), at]
        age.reshape(-1)[pairs] = at

    def step():
        x = x_of() * sign
        mask = m.mask(scope)
        advance = 1 if mask is None else mask
        np.add(age, advance, out=age)
        np.add(streak, advance, out=streak)
        better = x >= best  # False for NaN
        if mask is not None:
            better &= mask
        np.putmask(best, better, x)
        np.putmask(age, better, 0)
        reset = np.isnan(x)
        if reset.any():
            if mask is not None:
                reset &= mask
            best[reset], age[reset], streak[reset] = -np.inf, 0, 0
        stale = (age >= n).ravel().nonzero()[0]  # (node, symbol) pairs whose extreme left the window
        if len(stale):
            lengths = pair_n[stale]
            if lengths.max() <= SHORT_WINDOW or len(stale) * lengths.max() <= 4 * SHORT_WINDOW ** 2:
                rescan(x, stale, lengths)
            else:  # short and long windows read apart: little padding
                short = lengths <= SHORT_WINDOW
                for pick in (short, ~short):
                    if pick.any():
                        rescan(x, stale[pick], lengths[pick])
        np.multiply(best, sign, out=target)
        np.putmask(target, ages, age)
        np.putmask(target, streak < n, np.nan)
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
    _ROWS = 1 << 16  # elements per block of rows of the batch's recurrence

    def group_key(self, node):
        return ("smooth", node.scope)

    def warmup(self, node, warmup_of, tolerance):
        a, b, m, div, skip = self.params
        return warmup_of(node.inputs[0]) + skip + m - 1 + settle_bars(b, tolerance)

    writes_out = True

    def batch(self, ctx, x, out=None):
        a, b, m, div, skip = self.params
        out = np.empty(x.shape) if out is None else out
        first, _, _ = _valid_runs(np.isnan(x))
        starts = np.unique(first[first < len(x)])
        together = len(starts) == 1 and (first == starts[0]).all()  # every column starts at once
        if together:
            out[: starts[0] + skip + m - 1] = np.nan  # the rows after the seed are all written below
        else:
            out.fill(np.nan)
        for start in starts:
            cols = slice(None) if together else np.flatnonzero(first == start)
            seed_at = start + skip + m - 1
            if seed_at >= x.shape[0]:
                continue
            block = x[:, cols]
            seed = np.cumsum(block[start + skip: seed_at + 1], axis=0)[-1] / div
            out[seed_at, cols] = seed
            # the recurrence a block of rows at a time, each block carrying on from the last one's
            # filter state (the same arithmetic as one call, with small temporary arrays)
            state, rows = (b * seed)[None, :], max(1, self._ROWS // max(block.shape[1], 1))
            for begin in range(seed_at + 1, x.shape[0], rows):
                out[begin: begin + rows, cols], state = scipy.signal.lfilter(
                    [a], [1.0, -b], block[begin: begin + rows], axis=0, zi=state)
        return out

    def stream_group(self, mach, nodes):
        y, x_of = mach.output(nodes), mach.inputs_of(nodes, 0)  # the rows hold the smoothed values
        a, b, m, div, skip = (np.array([mach.nodes[i].op.params[p] for i in nodes])[:, None] for p in range(5))
        m, skip = m.astype(np.int64), skip.astype(np.int64)
        shape = (len(nodes), mach.n)
        seen = np.zeros(shape, dtype=np.int64)   # bars since (and including) the first valid input
        total = np.zeros(shape)
        scope = mach.nodes[nodes[0]].scope
        ready = np.zeros(mach.n, dtype=bool)  # symbols past the seed in every node of the group

        def step():
            x = x_of()
            mask = mach.mask(scope)
            if ready.all() or (mask is not None and ready[mask].all()):  # the plain recurrence
                if mask is None:
                    np.add(a * x, b * y, out=y)
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
        return step


# ---------------------------------------------------------------------------------------------
# Scope conversions and cross-sectional operators

class ToPanel(Op):
    """A symbol's series (or a market value) laid on the calendar, NaN where the symbol has no bar."""

    name = "to_panel"

    def batch(self, ctx, x):
        return ctx.scatter(x) if self.params[0] == SYMBOL else ctx.broadcast(x)

    def stream_group(self, m, nodes):
        target, src = m.output(nodes), m.inputs_of(nodes, 0)

        def step():
            np.copyto(target, src() if m.all_present else np.where(m.present, src(), np.nan))
        return step


class ToSymbol(Op):
    """A calendar value read at each symbol's own bars."""

    name = "to_symbol"

    def group_key(self, node):
        return ("to_symbol", node.scope)

    writes_out = True

    def batch(self, ctx, x, out=None):
        return ctx.gather(x, out)

    def stream_group(self, m, nodes):
        target, src = m.output(nodes), m.inputs_of(nodes, 0)

        def step():
            np.copyto(target, src())
        return step


class Warm(Op):
    """x from the n-th bar of its clock on, NaN before (``params = (n,)``): a value cut at a
    warm-up, as a feature's output is. The clock is the symbol's own bars for ``SYMBOL`` and the
    calendar for ``MARKET`` (a ``PANEL`` value has no one clock: not supported). Cross-sectional
    normalisation (``features.registry``) ranks a feature's values only where they are warm, so a
    symbol still warming up takes no part in the others' ranks."""

    name = "warm"
    writes_out = True

    def group_key(self, node):
        return ("warm", node.scope)

    def warmup(self, node, warmup_of, tolerance):
        return self.params[0]  # declared, like a feature's (its input may be a running total's ratio)

    def batch(self, ctx, x, out=None):
        n = min(self.params[0], len(x))
        out = np.empty_like(x) if out is None else out
        out[:n] = np.nan
        out[n:] = x[n:]
        return out

    def stream_group(self, m, nodes):
        target, src = m.output(nodes), m.inputs_of(nodes, 0)
        n = np.array([m.nodes[i].op.params[0] for i in nodes], dtype=np.int64)[:, None]
        own = m.nodes[nodes[0]].scope == SYMBOL

        def step():
            count = m.own_count if own else m.calendar_count  # bars before this one: this bar's number
            np.copyto(target, np.where(count < n, np.nan, src()))
        return step


def warm(node: Node, n: int) -> Node:
    """``node`` NaN before its n-th bar (see :class:`Warm`)."""
    if node.scope == PANEL:
        raise ValueError("warm: a panel value has no one clock to count its warm-up on")
    return Node(Warm(int(n)), (node,), node.scope) if n > 0 else node


def to_panel(node: Node) -> Node:
    return node if node.scope == PANEL else Node(ToPanel(node.scope), (node,), PANEL)


def to_symbol(node: Node) -> Node:
    return node if node.scope == SYMBOL else Node(ToSymbol(), (node,), SYMBOL)


def _average_ranks(x: np.ndarray, groups: "Grouping | None" = None,
                   tie: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(1-based average ranks along the last axis of the valid values, NaN ranked after them in no
    particular order; number of valid values). ``groups``: x's columns are those of the grouping,
    in its order (``x[..., groups.order]``); ranks within each group (one sort by group, then
    value), and the count of each column's group. ``tie``: values that follow each other in order
    within ``tie`` x the row's largest |value| count as equal (rounding), not only equal ones."""
    shape, n = x.shape, x.shape[-1]
    x = x.reshape(-1, n)
    nan = np.isnan(x)
    filled = np.where(nan, np.inf, x)
    if groups is None:
        # Tied values get the same average rank, so their order does not matter; the one exception
        # is a value of +inf, ranked ordinally among the NaN: a stable sort keeps the results as before.
        order = np.argsort(filled, axis=-1, kind="stable" if (x == np.inf).any() else None)
        start = 0.0
    else:
        order = np.lexsort((filled, np.broadcast_to(groups.sorted_codes, x.shape)), axis=-1)
        start = groups.first_column
    flat = order + (np.arange(x.shape[0]) * n)[:, None]  # flat index of each row's k-th smallest
    ordered = filled.take(flat)
    position = np.arange(n, dtype=np.float64)
    if tie > 0:
        scale = np.max(np.where(nan, 0.0, np.abs(x)), axis=-1, keepdims=True)
        tied = ordered[:, 1:] - ordered[:, :-1] <= tie * scale  # inf - inf is NaN: never tied
    else:
        tied = ordered[:, 1:] == ordered[:, :-1]
    if groups is not None:
        tied &= groups.same_as_previous
    if not (tied & (ordered[:, 1:] < np.inf)).any():  # no ties among values: ordinal ranks
        average = position + 1.0 - start
    else:
        # each row's first position starts a tie group and its last ends one, so running extremes
        # over the flattened positions never cross rows
        starts = np.ones(x.shape, dtype=bool)
        starts[:, 1:] = ~tied
        ends = np.ones(x.shape, dtype=bool)
        ends[:, :-1] = ~tied
        flat_position = np.arange(x.size).reshape(x.shape)
        first = np.maximum.accumulate(np.where(starts, flat_position, 0).reshape(-1))
        last = np.minimum.accumulate(np.where(ends, flat_position, x.size).reshape(-1)[::-1])[::-1]
        row_start = flat_position[:, :1]
        average = ((first.reshape(x.shape) - row_start) + (last.reshape(x.shape) - row_start)) / 2 + 1 - start
    ranks = np.empty(x.size)
    ranks[flat] = average
    if groups is None:
        return ranks.reshape(shape), (n - np.add.reduce(nan, axis=-1)).reshape(shape[:-1] + (1,))
    count = np.add.reduceat(~nan, groups.segments, axis=-1)[:, groups.segment]
    return ranks.reshape(shape), count.reshape(shape)


def _rank(x: np.ndarray, groups: "Grouping | None" = None, tie: float = 0.0) -> np.ndarray:
    """Percentile rank in [0, 1] along the last axis among valid values (average ties; 0.5 alone),
    within groups when given (see ``_average_ranks``, and for ``tie``)."""
    pct, n = _average_ranks(x, groups, tie)
    np.subtract(pct, 1.0, out=pct)
    np.true_divide(pct, np.maximum(n - 1, 1), out=pct)
    alone = n <= 1
    if alone.any():
        pct[np.broadcast_to(alone, pct.shape)] = 0.5
    pct[np.isnan(x)] = np.nan
    return pct


def _mean(x):
    valid = ~np.isnan(x)
    return _div(np.add.reduce(np.where(valid, x, 0.0), axis=-1, keepdims=True),
                np.add.reduce(valid, axis=-1, keepdims=True))


def _std(x, centred=None):
    """Population standard deviation along the last axis; ``centred``: x - _mean(x), if known."""
    centred = x - _mean(x) if centred is None else centred
    return np.sqrt(_mean(centred * centred))


class Grouping:
    """Columns split into groups (e.g. sectors): each column's group code, -1 for none."""

    def __init__(self, codes: Sequence[int]):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.size = int(self.codes.max(initial=-1)) + 1
        self.order = np.argsort(self.codes, kind="stable")
        self.order = self.order[self.codes[self.order] >= 0]
        self.starts = np.searchsorted(self.codes[self.order], np.arange(self.size))
        # the columns in ``order``: codes, the start and index of their group among the non-empty
        # ones, and whether a column is in the same group as the one before it
        self.sorted_codes = self.codes[self.order]
        new = np.ones(len(self.order), dtype=bool)
        new[1:] = self.sorted_codes[1:] != self.sorted_codes[:-1]
        self.same_as_previous = ~new[1:]
        self.segments = np.flatnonzero(new)
        self.segment = np.cumsum(new) - 1
        self.first_column = self.segments[self.segment].astype(np.float64)

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
        """Percentile rank within each column's group (average ties; 0.5 alone in its group).

        Over many rows (the batch), each group's columns are ranked on their own; over a few rows
        (a stream step), one sort of all the columns by (group, value) costs less. The ranks are
        exact half-integers either way, so the values are the same."""
        out = np.full(x.shape, np.nan)
        if self.size == 0:
            return out
        if x.size > 64 * x.shape[-1]:  # more than 64 rows
            for members in np.split(self.order, self.starts[1:]):
                if len(members):
                    out[..., members] = _rank(x[..., members])
        else:
            out[..., self.order] = _rank(x[..., self.order], self)
        return out


class CrossSection(Op):
    """Row-wise across the symbols present at one bar: ``params = (kind, grouping)``.

    kinds: ``rank`` (percentile rank), ``zscore``, ``mean`` / ``std`` (to a market value),
    ``group_mean`` / ``group_rank`` (within each group of the named grouping, e.g. "sector", which
    the evaluator supplies; symbols in no group get NaN); and the cross-sectional normalisation's
    ``rank_tol`` / ``zscore_tol``, which count values within ``TIE`` x the bar's largest |value| of
    each other as equal, so that rounding (100 vs 99.99999999999999) neither orders symbols nor makes
    a spread: ``rank_tol`` ranks them as ties, ``zscore_tol`` is 0 for every symbol where the spread
    is within rounding (one symbol alone, or all equal). The batch applies the kernel to every
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
            centred = x - _mean(x)
            return _div(centred, _std(x, centred))
        if kind == "rank_tol":
            return _rank(x, tie=TIE)
        if kind == "zscore_tol":
            centred = x - _mean(x)
            spread = _std(x, centred)
            z = _div(centred, spread)
            flat = spread <= TIE * np.max(np.where(np.isnan(x), 0.0, np.abs(x)), axis=-1, keepdims=True)
            if flat.any():
                z[np.broadcast_to(flat, z.shape) & ~np.isnan(x)] = 0.0
            return z
        if kind == "group_mean":
            return grouping.mean(x)
        if kind == "group_rank":
            return grouping.rank(x)
        raise ValueError(f"unknown cross-section kind {kind}")

    writes_out = True
    _ROWS = 1 << 16  # elements per block of rows: each row is independent, a block stays in cache

    def batch(self, ctx, x, out=None):
        grouping = ctx.grouping(self.params[1])
        rows = max(1, self._ROWS // max(x.shape[1], 1))
        if len(x) <= rows:
            return self.kernel(x, grouping)
        out = np.empty((len(x), 1 if self.params[0] in ("mean", "std") else x.shape[1])) if out is None else out
        for start in range(0, len(x), rows):
            out[start: start + rows] = self.kernel(x[start: start + rows], grouping)
        return out

    def stream_group(self, m, nodes):
        target, src = m.output(nodes), m.inputs_of(nodes, 0)
        grouping = m.grouping(self.params[1])

        def step():
            target[...] = self.kernel(src(), grouping)
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

    def gather(self, calendar: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((self.L, self.N)) if out is None else out
        if self.aligned:
            np.copyto(out, np.broadcast_to(calendar, (self.T, self.N)))
            return out
        out.fill(np.nan)
        out[self.own_rows, self.cols] = calendar[self.cal_rows, self.cols if calendar.shape[1] > 1 else 0]
        return out

    def broadcast(self, market: np.ndarray) -> np.ndarray:
        return np.where(self.present, market, np.nan)

    def own_index(self) -> np.ndarray:
        """(T, N): the symbol's own bar number at each calendar bar, -1 where it has no bar."""
        out = np.full((self.T, self.N), -1, dtype=np.int64)
        out[self.cal_rows, self.cols] = self.own_rows
        return out
