"""Generate ``docs/features.md`` from the registry: ``python -m features.docs`` writes it."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from features.registry import GROUPS, Registry, build_registry, default_config

PATH = Path(__file__).resolve().parents[1] / "docs" / "features.md"

GROUP_NOTES = {
    "price": "Returns, moving averages, new highs and lows, breakouts, the 52-week range, gaps.",
    "volume": "Relative volume, on-balance volume, accumulation/distribution, money flow, VWAP.",
    "technical": "Indicators as TA-Lib defines them; each with a TA-Lib function is tested against it.",
    "volatility": "Realised and range-based volatility per bar (not annualised).",
    "microstructure": "Liquidity, spread and bar-shape estimators computed from daily bars.",
    "cross_sectional": "Each symbol against the run's other symbols at the same bar; sector features "
                       "need the sector map (`data.sector_map`).",
    "market": "The universe's equal-weight index, breadth and dispersion: one value per bar, the same "
              "for every symbol; warm-up in calendar bars.",
    "macro": "Per series of `data.macro` (VIX, rates, dollar index), as known at the bar's close.",
    "calendar": "From the bar's timestamp.",
    "sentiment": "From `data.news` headlines scored with the VADER lexicon; absent without a news file.",
}


def _formula(text: str) -> str:
    first = text.split("\n\n")[0]
    return " ".join(first.split()).replace("|", "\\|")


def render(registry: Registry, tolerance: float) -> str:
    counts = Counter(registry.groups.values())
    default = build_registry()
    lines = [
        "# Features",
        "",
        "Generated from the registry by `python -m features.docs`; do not edit by hand.",
        "",
        f"The default run (sector map, no news, no macro series) has **{len(default)} features**; with "
        f"news and one macro series, {len(registry)}. Every value at bar t uses bars up to t only; "
        "before its warm-up a value is NaN, and so is a symbol's whole row at a bar where it has no bar.",
        "",
        "Warm-up is counted in the symbol's own bars (a day it does not trade does not count), for "
        "market, macro and calendar features in calendar bars. It is derived from each formula: a lag "
        "of k bars adds k, a window of n bars adds n - 1, and a recursive smoother (EMA, Wilder) adds "
        "its seed plus the bars after which the seed's weight (1 - alpha)^k is below "
        f"`features.seed_tolerance` = {tolerance:g}. The tests check that after the warm-up a value "
        "moves by less than `features.history_tolerance` x the feature's mean |value| when the data "
        "starts later, that no value moves when later bars change, that the bar-by-bar evaluation "
        "equals the batch, and that features TA-Lib also computes match it.",
        "",
        "| group | features |",
        "|---|---|",
    ]
    lines += [f"| {g} | {counts[g]} |" for g in GROUPS if counts[g]]
    for group in GROUPS:
        members = [f for f in registry if f.group == group]
        if not members:
            continue
        lines += ["", f"## {group}", "", GROUP_NOTES[group], "",
                  "| name | parameters | warm-up | formula |", "|---|---|---|---|"]
        for f in members:
            clock = " (calendar)" if f.calendar_clock else ""
            params = ", ".join(f"{k}={v}" for k, v in f.params.items())
            lines.append(f"| `{f.name}` | {params} | {f.warmup}{clock} | {_formula(f.definition.formula)} |")
    return "\n".join(lines) + "\n"


def documented_registry() -> Registry:
    """The registry the document lists: every group, with one macro series named ``vix``."""
    return build_registry(has_news=True, has_macro=["vix"], has_sectors=True)


def main() -> int:
    PATH.write_text(render(documented_registry(), default_config().seed_tolerance))
    print(f"wrote {PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
