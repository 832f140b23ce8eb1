"""The pure packages (features, models, risk) know nothing of Backtrader, brokers or adapters."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = ("features", "models", "risk")
FORBIDDEN = ("backtrader", "alpaca", "engine", "strategies", "indicators", "sizers", "observers",
             "analyzers", "feeds.pandas_feed", "brokers")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("package", PURE)
def test_pure_package_imports_no_adapter(package):
    offenders = [f"{path.relative_to(ROOT)}: {name}"
                 for path in sorted((ROOT / package).rglob("*.py")) for name in _imports(path) if _forbidden(name)]
    assert not offenders, "pure packages must not import adapters:\n" + "\n".join(offenders)


def test_the_scan_sees_imports():
    assert _forbidden("backtrader") and _forbidden("feeds.pandas_feed") and not _forbidden("feeds.loader")
    assert not _forbidden("engineering")
