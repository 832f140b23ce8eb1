"""The feature registry: declarative definitions expanded over parameter grids into named features.

A definition is a small function decorated with :func:`feature`; the decorator only attaches its
declaration (name template, group, parameter grid, required context, optional warm-up override,
optional TA-Lib oracle) and returns a :class:`FeatureDef`. :func:`build_registry` collects the
definitions of the group modules in order, expands the grids for a context (which optional inputs
exist) and returns an immutable :class:`Registry`.

Cross-sectional normalisation (``features.normalise``, :data:`NORMALISE`): with ``"rank"`` or
``"zscore"`` every normalisable feature (:func:`normalisable`: a per-symbol value outside the
``cross_sectional`` group) keeps its name and warm-up but its graph becomes
``cs_normalise(node, kind, warmup)`` (:func:`features.formulas.cs_normalise`): at each bar, the
percentile rank or z-score of its value among the symbols that have a (warm) value at that bar. It
is a graph like any other, so the batch and the bar-by-bar evaluation compute it alike, and the
registry's hash (and the feature cache's key) change with it.
"""
from __future__ import annotations

import functools

import hashlib
import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from features.formulas import Bars, cs_normalise
from features.graph import MARKET, SYMBOL, UNBOUNDED, Node

GROUPS = ("price", "volume", "technical", "volatility", "microstructure", "cross_sectional",
          "market", "macro", "calendar", "sentiment")
REQUIREMENTS = ("universe", "sectors", "news", "macro")
NORMALISE = ("none", "rank", "zscore")
"""``features.normalise``: raw values, or each normalisable feature's cross-sectional rank / z-score."""
NOT_NORMALISED_GROUPS = ("cross_sectional",)
"""Groups left alone by the normalisation: already relative to the other symbols (ranks, z-scores,
relative strength, betas, sector-relative values)."""


@dataclass(frozen=True)
class Context:
    """Which optional inputs a run has; decides which features are active."""

    has_news: bool = False
    has_sectors: bool = False
    macro_names: tuple[str, ...] = ()

    def provides(self, requirement: str) -> bool:
        return {"universe": True, "sectors": self.has_sectors, "news": self.has_news,
                "macro": bool(self.macro_names)}[requirement]


@dataclass(frozen=True)
class FeatureDef:
    """One definition: ``fn(bars, **params) -> Node`` expanded over ``grid``."""

    fn: Callable[..., Node]
    name: str
    group: str
    grid: Mapping[str, Sequence[Any]] | Callable[[Context], Mapping[str, Sequence[Any]]]
    requires: tuple[str, ...]
    warmup: int | Callable[..., int] | None
    oracle: Callable[..., Any] | None

    @property
    def formula(self) -> str:
        """The docstring: its first paragraph is the formula, the rest the reference."""
        return inspect.cleandoc(self.fn.__doc__ or "")

    def expand(self, context: Context) -> list[tuple[str, dict[str, Any]]]:
        grid = self.grid(context) if callable(self.grid) else self.grid
        keys = list(grid)
        return [(self.name.format(**dict(zip(keys, values))), dict(zip(keys, values)))
                for values in itertools.product(*(grid[k] for k in keys))]


def feature(name: str, *, group: str, grid: Mapping | Callable | None = None, requires: Iterable[str] = (),
            warmup: int | Callable[..., int] | None = None, oracle: Callable | None = None):
    """Declare a feature definition.

    name: template filled from the grid, e.g. ``"rsi_{n}"``; group: one of :data:`GROUPS`;
    grid: {parameter: values} (or a function of the :class:`Context`); requires: optional inputs it
    needs ("universe", "sectors", "news", "macro"); warmup: bars before a value is usable, derived
    from the formula when omitted (an int, or ``f(tolerance, **params)``); oracle:
    ``f(open, high, low, close, volume, **params)`` giving the TA-Lib value of one symbol (tests).
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; one of {GROUPS}")
    unknown = set(requires) - set(REQUIREMENTS)
    if unknown:
        raise ValueError(f"unknown requirement(s) {sorted(unknown)}; one of {REQUIREMENTS}")

    def wrap(fn):
        return FeatureDef(fn, name, group, grid or {}, tuple(requires), warmup, oracle)
    return wrap


@dataclass(frozen=True)
class Feature:
    """One active feature: its name, group, graph, warm-up, whether the warm-up counts calendar
    bars (market features) or the symbol's own bars, and the cross-sectional normalisation its
    graph applies ("none", "rank" or "zscore"; see :data:`NORMALISE`)."""

    name: str
    group: str
    node: Node
    warmup: int
    calendar_clock: bool
    definition: FeatureDef = field(repr=False)
    params: Mapping[str, Any] = field(default_factory=dict)
    normalised: str = "none"


def normalisable(group: str, node: Node) -> bool:
    """Whether ``features.normalise`` replaces a feature (of ``group``, raw graph ``node``) by its
    cross-sectional rank or z-score: a per-symbol value (``SYMBOL`` scope: the symbol's own series,
    or its news) outside :data:`NOT_NORMALISED_GROUPS`. Left alone: values that are the same for
    every symbol at a bar (``MARKET`` scope: market, macro, calendar, market-wide news; ranking them
    gives constants), and values already computed across the symbols (``PANEL`` scope: ranks)."""
    return node.scope == SYMBOL and group not in NOT_NORMALISED_GROUPS


class Registry:
    """An ordered, immutable set of features for one context."""

    def __init__(self, features: Sequence[Feature], context: Context, seed_tolerance: float,
                 normalise: str = "none"):
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {duplicates}")
        self._features = tuple(features)
        self._by_name = {f.name: f for f in features}
        self.context = context
        self.seed_tolerance = seed_tolerance
        self.normalise = normalise  # the option it was built with; each feature's ``normalised`` says what it got

    def __len__(self):
        return len(self._features)

    def __iter__(self):
        return iter(self._features)

    def __getitem__(self, name: str) -> Feature:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self._features]

    @property
    def groups(self) -> dict[str, str]:
        return {f.name: f.group for f in self._features}

    def warmup(self, name: str) -> int:
        return self._by_name[name].warmup

    @property
    def max_warmup(self) -> int:
        return max((f.warmup for f in self._features), default=0)

    def subset(self, names: Iterable[str]) -> "Registry":
        """The named features, in registry order."""
        wanted = set(names)
        missing = wanted - set(self._by_name)
        if missing:
            raise KeyError(f"not in the registry: {sorted(missing)}")
        return Registry([f for f in self._features if f.name in wanted], self.context, self.seed_tolerance,
                        self.normalise)

    @property
    def normalised(self) -> list[str]:
        """The features whose values are cross-sectional ranks or z-scores by ``features.normalise``."""
        return [f.name for f in self._features if f.normalised != "none"]

    def hash(self) -> str:
        """Stable fingerprint of names, groups, warm-ups and formulas (the graphs' structure, so a
        normalised feature's hash is not its raw one's)."""
        from features.engine import structure_keys

        keys = structure_keys([f.node for f in self._features])
        text = "\n".join(f"{f.name}|{f.group}|{f.warmup}|{f.calendar_clock}|{k}"
                         for f, k in zip(self._features, keys))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_config():
    """The ``[features]`` section of ``config/default.toml`` (validated on its own, so this package
    does not depend on the rest of the config)."""
    import tomllib

    from config import DEFAULT_PATH
    from config.schema import FeaturesConfig

    with open(DEFAULT_PATH, "rb") as fh:
        return FeaturesConfig.model_validate(tomllib.load(fh)["features"])


def _definition_modules():
    from features.definitions import (calendar, cross_sectional, macro, market, microstructure, price,
                                      sentiment, technical, volatility, volume)
    return (price, volume, technical, volatility, microstructure, cross_sectional, market, macro,
            calendar, sentiment)


def collect_definitions(modules=None) -> list[FeatureDef]:
    """The FeatureDef objects of the given modules (default: the group modules), in source order."""
    found = []
    for module in modules or _definition_modules():
        found += [v for v in vars(module).values() if isinstance(v, FeatureDef)]
    return found


_NAME = re.compile(r"[a-z][a-z0-9_]*")


def registry_from_definitions(definitions: Sequence[FeatureDef], context: Context,
                              seed_tolerance: float, normalise: str = "none") -> Registry:
    """Expand definitions for a context; warm-ups are derived from each formula unless declared.
    normalise: one of :data:`NORMALISE`; the normalisable features' graphs then become their
    cross-sectional rank or z-score (warm-ups unchanged: a rank of x is warm when x is)."""
    from features.engine import derive_warmups

    if normalise not in NORMALISE:
        raise ValueError(f"features.normalise = {normalise!r}: one of {NORMALISE}")

    bars = Bars.make()
    pending = []
    for definition in definitions:
        if not all(context.provides(r) for r in definition.requires):
            continue
        for name, params in definition.expand(context):
            if not _NAME.fullmatch(name):
                raise ValueError(f"feature name {name!r}: lower case letters, digits and _ only")
            node = definition.fn(bars, **params)
            if not isinstance(node, Node):
                raise TypeError(f"{name}: the definition must return a feature expression")
            pending.append((definition, name, params, node))
    derived = derive_warmups([node for *_, node in pending], seed_tolerance)
    features = []
    for (definition, name, params, node), auto in zip(pending, derived):
        declared = definition.warmup
        warm = declared(tolerance=seed_tolerance, **params) if callable(declared) else declared
        if warm is None:
            if auto >= UNBOUNDED:
                raise ValueError(f"{name}: depends on all history (a running total); declare its warm-up")
            warm = auto
        kind = normalise if normalise != "none" and normalisable(definition.group, node) else "none"
        if kind != "none":
            node = cs_normalise(node, kind, int(warm))  # its warm-up is the raw value's, on the same clock
        features.append(Feature(name, definition.group, node, int(warm), node.scope == MARKET,
                                definition, params, kind))
    return Registry(features, context, seed_tolerance, normalise)


def build_registry(has_news: bool = False, has_macro: bool | Sequence[str] = False, has_sectors: bool = True,
                   *, config=None) -> Registry:
    """The registry for a context.

    has_macro: the macro series' names (file stems, e.g. ``["vix", "dgs10"]``), or False; each
    series gets its own features, so True alone is not enough. has_sectors: sector-relative
    features (the engine needs the sector map then). config: a ``FeaturesConfig`` (default: the
    defaults of ``config/default.toml``), whose ``seed_tolerance`` sets the recursive warm-ups and
    ``normalise`` the cross-sectional normalisation (see :data:`NORMALISE`).
    """
    if has_macro is True:
        raise ValueError("has_macro: give the macro series' names, e.g. ['vix']")
    macro_names = tuple(has_macro) if has_macro else ()
    config = config or default_config()
    context = Context(has_news=bool(has_news), has_sectors=bool(has_sectors), macro_names=macro_names)
    return _cached_registry(context, config.seed_tolerance, config.normalise)


@functools.lru_cache(maxsize=16)
def _cached_registry(context: Context, seed_tolerance: float, normalise: str = "none") -> Registry:
    # A registry is immutable and costs ~0.2 s to expand and derive: one per context, tolerance and
    # normalisation, and process (a strategy, its warm-up check and a live session's daily rebuild
    # share it).
    return registry_from_definitions(collect_definitions(), context, seed_tolerance, normalise)
