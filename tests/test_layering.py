"""The core (features, models, risk, the metrics in analyzers/stats.py, the operations in ops/) knows
nothing of Backtrader, Alpaca, brokers or adapters: not directly, and not through anything it imports, however deep.

Among the adapters, ``feeds`` never reaches ``brokers`` and only ``brokers.alpaca`` imports alpaca-py.

Every ``import`` counts, also one inside a function (a lazy import still runs in the process), and
importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too.
"""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("features", "models", "risk", "analyzers.stats", "ops")
# third-party packages the core must never reach
FORBIDDEN_LIBRARIES = ("backtrader", "alpaca", "alpaca_trade_api")
# our adapters: Backtrader glue, the live path, the venues
FORBIDDEN_MODULES = ("engine", "strategies", "indicators", "observers", "analyzers.records", "brokers",
                     "feeds.pandas_feed", "feeds.live_feed", "cli", "reports")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _path_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@functools.cache
def _direct_imports(module: str) -> tuple[str, ...]:
    """Every module ``module``'s file imports, anywhere in it, as absolute names."""
    path = _path_of(module)
    if path is None:
        return ()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.append(source)
            # ``from a import b`` may import the module a.b
            names += [f"{source}.{alias.name}" for alias in node.names if _path_of(f"{source}.{alias.name}")]
    return tuple(names)


def _import_chain(start: str, forbidden) -> list[str] | None:
    """The shortest chain of imports from ``start`` to a module ``forbidden(name)`` accepts, or None."""
    seen, frontier = {start: None}, [start]
    while frontier:
        following = []
        for module in frontier:
            for name in _direct_imports(module):
                for step in _with_parents(name):
                    if step in seen:
                        continue
                    seen[step] = module
                    if forbidden(step):
                        chain = [step]
                        while seen[chain[-1]] is not None:
                            chain.append(seen[chain[-1]])
                        return chain[::-1]
                    if _path_of(step) is not None:    # ours: follow it
                        following.append(step)
        frontier = following
    return None


def _matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _forbidden(name: str) -> bool:
    return _matches(name, FORBIDDEN_LIBRARIES) or _matches(name, FORBIDDEN_MODULES)


def _core_modules() -> list[str]:
    modules = []
    for root in CORE:
        path = _path_of(root)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        modules += [_module_name(f) for f in files]
    return modules


@pytest.mark.parametrize("module", _core_modules())
def test_core_reaches_no_adapter(module):
    chain = _import_chain(module, _forbidden)
    assert chain is None, f"the core must not reach adapters or venue libraries: {' -> '.join(chain)}"


def test_the_scan_follows_imports_transitively(tmp_path, monkeypatch):
    """A chain through two of our modules, one import lazy inside a function, is found."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _direct_imports.cache_clear()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("from . import b\n")
    (tmp_path / "core" / "b.py").write_text("def f():\n    import helpers.c\n")
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "c.py").write_text("import backtrader as bt\n")
    (tmp_path / "clean.py").write_text("import numpy\nimport pandas.api\n")
    try:
        assert _import_chain("core.a", _forbidden) == ["core.a", "core.b", "helpers.c", "backtrader"]
        assert _import_chain("clean", _forbidden) is None
    finally:
        _direct_imports.cache_clear()


def test_the_names_match_whole_packages():
    assert _forbidden("backtrader.feeds") and _forbidden("feeds.live_feed") and not _forbidden("feeds.loader")
    assert not _forbidden("engineering") and not _forbidden("analyzers.stats") and _forbidden("analyzers.records")


# ---- the adapters among themselves ----------------------------------------------------------------
# The venue adapters live under ``brokers`` (``brokers.alpaca``: store, venue, bar source, calendar,
# keys, test server), which may use the venue-neutral ``feeds``; nothing in ``feeds`` reaches
# ``brokers``, however deep or lazy the import, so the two packages never import each other; and only
# the Alpaca adapter imports alpaca-py.

FEEDS = [_module_name(path) for path in sorted((ROOT / "feeds").rglob("*.py"))]


@pytest.mark.parametrize("module", FEEDS)
def test_feeds_never_reach_brokers(module):
    chain = _import_chain(module, lambda name: _matches(name, ("brokers",)))
    assert chain is None, f"feeds must not import brokers (brokers imports feeds): {' -> '.join(chain)}"


PRODUCTION = [_module_name(path) for folder in ("analyzers", "brokers", "cli", "engine", "feeds", "strategies")
              for path in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("module", [m for m in PRODUCTION if not _matches(m, ("brokers.alpaca",))])
def test_only_the_alpaca_adapter_imports_alpaca_py(module):
    """The rest reaches Alpaca through the adapter's modules, never alpaca-py directly."""
    direct = [name for name in _direct_imports(module) if _matches(name, ("alpaca",))]
    assert direct == [], f"{module} imports alpaca-py ({direct}): that belongs in brokers.alpaca"


# ---- the dashboard ----------------------------------------------------------------------------------
# It reads records and the journal and serves pages: it never loads Backtrader, a venue or the live path.
DASHBOARD = [_module_name(path) for path in sorted((ROOT / "dashboard").rglob("*.py"))]


@pytest.mark.parametrize("module", DASHBOARD)
def test_the_dashboard_reaches_no_engine_or_venue(module):
    chain = _import_chain(module, lambda name: _matches(name, ("backtrader", "alpaca", "engine", "strategies",
                                                               "brokers.live", "brokers.alpaca", "feeds.live_feed")))
    assert chain is None, f"the dashboard must stay a reader: {' -> '.join(chain)}"
