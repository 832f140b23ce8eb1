"""Generate ``docs/features.md`` from the registry: ``python -m features.docs`` writes it."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from features.registry import GROUPS, NOT_NORMALISED_GROUPS, Registry, build_registry, default_config, normalisable

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


def _normalised(registry: Registry) -> list[str]:
    """The features ``features.normalise`` would normalise (``registry`` built without it)."""
    return [f.name for f in registry if normalisable(f.group, f.node)]


def render(registry: Registry, tolerance: float) -> str:
    counts = Counter(registry.groups.values())
    default = build_registry()
    normalised = set(_normalised(registry))
    normalised_counts = Counter(f.group for f in registry if f.name in normalised)
    partial = [f.name for f in registry if f.name not in normalised and normalised_counts[f.group]]
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
        "| group | features | normalised |",
        "|---|---|---|",
    ]
    lines += [f"| {g} | {counts[g]} | {normalised_counts[g]} |" for g in GROUPS if counts[g]]
    lines += [
        "",
        "## Cross-sectional normalisation",
        "",
        "`features.normalise` (default `\"none\"`: the raw values, as listed below) replaces each per-symbol "
        "feature, under the same name and warm-up, by a value relative to the other symbols at the same bar: "
        "with `\"rank\"` its percentile rank in [0, 1] (0 lowest; ties share their average rank; 0.5 for a "
        "symbol alone), with `\"zscore\"` (x - mean) / std (population std; 0 where the values have no "
        "spread, one symbol alone or all equal), among the symbols whose value is past its warm-up at that "
        "bar. A symbol without a bar, or still warming up, takes no part and gets NaN, so a normalised value "
        "is warm when the raw one is. Bar t's cross-section uses bar t's values only (earlier bars through "
        "the feature's own formula), and it is a registry formula like the others: the batch and the "
        "bar-by-bar evaluation compute it alike, and the registry's hash, hence the feature cache's key and "
        "a trained model's check, change with the option.",
        "",
        f"Normalised: every feature whose value is the symbol's own (its bars or its news) outside the "
        f"{', '.join(NOT_NORMALISED_GROUPS)} group, {len(set(_normalised(default)))} of the default run's "
        f"{len(default)} and {len(normalised)} of the {len(registry)} here (the table's last column). Left "
        "alone: features that are the same for every symbol at a bar (market, macro, calendar, and the "
        "market-wide news values), where a rank would be a constant, and those already relative to the "
        "other symbols (the cross_sectional group, the news rank)"
        + (f"; in the partly normalised groups: {', '.join(f'`{n}`' for n in partial)}." if partial else ".")
        + " A rank moves by a whole step when two symbols' values cross: where a later data start moves "
        "near-tied raw values past each other (within `features.history_tolerance`), the normalised value "
        "past its warm-up moves by more than that tolerance. Features in price or volume units (moving "
        "averages, Bollinger bands, ATR, MACD, dollar volume) become ranks of the symbols' price levels, "
        "ranges or sizes; ratios and oscillators become their relative standing.",
    ]
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
