"""Every library the project's code imports is pinned in requirements.txt: one a pinned package only
happens to pull in today can change version, or disappear, with that package's next release."""
from __future__ import annotations

import re
import sys
from importlib.metadata import packages_distributions

from tests.test_layering import ROOT, _direct_imports, _module_name


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            assert "==" in requirement, f"requirements.txt: {requirement!r} is not an exact pin"
            names.add(_normalised(requirement.split("==")[0].split("[")[0]))
    return names


def _imported_top_levels() -> dict[str, str]:
    """{top-level module: a file importing it} over the project's Python files (not the hidden
    folders: .venv, .git)."""
    found: dict[str, str] = {}
    for top in sorted(p for p in ROOT.iterdir() if not p.name.startswith(".")):
        for path in [top] if top.suffix == ".py" else sorted(top.rglob("*.py")) if top.is_dir() else []:
            for name in _direct_imports(_module_name(path)):
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_pinned():
    local = {p.name for p in ROOT.iterdir() if p.is_dir()} | {p.stem for p in ROOT.glob("*.py")}
    local |= {p.stem for p in ROOT.glob("tests/**/*.py")}
    providers = packages_distributions()
    pinned = _pinned()
    unpinned = {}
    for module, where in _imported_top_levels().items():
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        distributions = {_normalised(d) for d in providers.get(module, [])}
        assert distributions, f"{where} imports {module!r}, which no installed package provides"
        if not distributions & pinned:
            unpinned[module] = (where, sorted(distributions))
    assert not unpinned, f"imported but not pinned in requirements.txt: {unpinned}"
