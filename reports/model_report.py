"""The models' part of a run's report, from the ``walk_forward`` section of metrics.json alone: the
out-of-sample table against the baselines, per-fold rows, the leak alarm, the cross-sectional
evaluation against momentum and reversal, and five plots (feature importance, calibration, per-fold
accuracy, quantile returns, cumulative rank IC)."""
from __future__ import annotations

import html

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reports.html import fmt, table  # noqa: E402


def leak_alarms(wf: dict) -> list[str]:
    if not wf.get("leak_alarm"):
        return []
    return [f"Probable leak: out-of-sample {wf['horizon']}-bar directional accuracy "
            f"{fmt(wf['directional_accuracy'], 'pct')} is above {fmt(wf['leak_alarm_accuracy'], 'pct')}. "
            "Published accuracy for daily equities is about 51-53%; far more usually means the models saw "
            "the future (a label, a feature or a fit that reads past the bar). Do not trust this run's figures."]


def sections(wf: dict) -> list[tuple[str, str]]:
    base = wf["baselines"]
    rows = [["ensemble", fmt(wf["directional_accuracy"], "pct"), fmt(wf["directional_accuracy_ci95"], "interval"),
             fmt(wf["auc"], "num"), fmt(wf["ic"], "num"), fmt(wf["log_loss"], "num"), fmt(wf["samples"], "int")]]
    for name, scores in base.items():
        rows.append([name.replace("_", "-"), fmt(scores["accuracy"], "pct"), fmt(scores["accuracy_ci95"], "interval"),
                     fmt(scores["auc"], "num"), fmt(scores["ic"], "num"), "", fmt(scores["n"], "int")])
    intro = (f"<p>Every figure is out of sample: each fold's model was trained on the trailing window before "
             f"its test bars, on labels that had ended (purged, embargoed). {wf['retrains']} retrains of "
             f"{html.escape(', '.join(wf['models']))}; {wf['n_configurations']} hyperparameter configurations "
             f"tried in all. Decision horizon {wf['horizon']} bars. The interval treats rows as independent: "
             "overlapping horizons and correlated symbols make the real uncertainty wider.</p>")
    horizons = [[h, fmt(s["directional_accuracy"], "pct"), fmt(s["directional_accuracy_ci95"], "interval"),
                 fmt(s["auc"], "num"), fmt(s["ic"], "num")] for h, s in wf.get("by_horizon", {}).items()]
    folds = [[str(f["fold"]), f"{f['train_start']} .. {f['train_end']}", f"{f['test_start']} .. {f['test_end']}",
              fmt(f["train_samples"], "int"), fmt(f["test_samples"], "int"), fmt(f["accuracy"], "pct"),
              fmt(f["auc"], "num"), fmt(f["ic"], "num"), fmt(f["log_loss"], "num"),
              fmt(f.get("rank_ic"), "num"), fmt(f.get("rank_ic_t"), "num")] for f in wf["folds"]]
    blocks = [
        ("Walk-forward: out-of-sample accuracy against baselines",
         intro + table(rows, ["", "directional accuracy", "95% interval", "AUC", "IC", "log loss", "rows"])
         + table(horizons, ["horizon (bars)", "accuracy", "95% interval", "AUC", "IC"])),
        ("Walk-forward folds", '<div class="scroll">' + table(
            folds, ["fold", "train", "test", "train rows", "test rows", "accuracy", "AUC", "IC", "log loss",
                    "rank IC (cross-section)", "its t (Newey-West)"]) + "</div>"),
    ]
    if wf.get("cross_section"):
        blocks.append(("Cross-sectional evaluation", cross_section_block(wf["cross_section"], wf["horizon"])))
    if wf.get("sentiment_importance"):
        blocks.append(("Sentiment features' importance", sentiment_block(wf["sentiment_importance"])))
    return blocks


def sentiment_block(section: dict) -> str:
    """Each sentiment feature's mean importance and its rank among all the model's features."""
    rows = [[html.escape(name), fmt(f["importance"], "num"), f"{f['rank']} of {section['of']}"]
            for name, f in sorted(section["features"].items(), key=lambda kv: kv[1]["rank"])]
    return ("<p>The news features' mean importance in the fitted models (the gradient-boosted models' gain, "
            "as in the feature importance plot) and their rank among every feature.</p>"
            + table(rows, ["feature", "importance", "rank"]))


def news_block(news: dict) -> str:
    """How many headlines each symbol had over the run (``metrics.json`` ``news``)."""
    rows = [[html.escape(symbol), fmt(n, "int")] for symbol, n in sorted(news["headlines"].items(),
                                                                          key=lambda kv: (-kv[1], kv[0]))]
    without = news["symbols_without"]
    note = (f"<p>{fmt(news['total'], 'int')} headlines over the run's bars"
            + (f"; {len(without)} symbol(s) had none: their sentiment features are 0 (no news), not neutral news."
               if without else ".") + "</p>")
    return note + '<div class="scroll">' + table(rows, ["symbol", "headlines"]) + "</div>"


SCORE_NAMES = {"model": "ensemble", "momentum_12_1": "momentum 12-1", "reversal_1m": "reversal 1 month"}


def cross_section_block(cs: dict, decision_horizon: int) -> str:
    """Plain words, then one table per horizon: the model beside the momentum and reversal baselines."""
    intro = (
        "<p>Does the ensemble rank the symbols of a bar by what they return next? Each bar, every symbol's "
        "expected return is set against its realised forward log return over the horizon (the raw return, "
        "whatever label the models trained on), across the bar's symbols (bars with fewer than "
        f"{cs['min_symbols']} symbols are skipped, and so are bars where the score is the same for every "
        "symbol: the bars column counts the bars scored): the IC is the Pearson correlation, the rank IC the "
        "Spearman one, averaged over bars. Beside it, two naive scores on the same rows: momentum 12-1 (the "
        "return from 12 months to 1 month ago) and reversal 1 month (minus the last month's return). "
        "Daily ICs of returns over several bars overlap, so their t-statistic uses Newey-West standard "
        "errors (lags: at least the horizon minus one). <b>A rank IC whose t is below 2 is not evidence of "
        "skill</b>: an average that size arises by luck from scores with none. A model that does not beat "
        "the momentum and reversal rows has learnt nothing they do not already know.</p>"
        f"<p>Quantiles: each bar, the symbols are split into {cs['quantiles']} groups by score; the spread is "
        "the top group's mean forward return minus the bottom group's (with its Newey-West t), and the "
        "turnover is the share of the top group's names that were not in it one horizon earlier.</p>")
    header = ["", "IC mean", "rank IC mean", "rank IC std", "IC IR (rank IC mean / std)", "Newey-West t (rank IC)",
              "share of bars with rank IC > 0", "top-minus-bottom spread", "spread t", "top-quantile turnover",
              "bars", "rows"]
    parts = [intro]
    for h, block in cs["horizons"].items():
        rows = [[SCORE_NAMES.get(name, html.escape(name)), fmt(s["ic_mean"], "num"), fmt(s["rank_ic_mean"], "num"),
                 fmt(s["rank_ic_std"], "num"), fmt(s["rank_ic_ir"], "num"), fmt(s["rank_ic_t"], "num"),
                 fmt(s["rank_ic_positive"], "pct"), fmt(s["spread_mean"], "pct"), fmt(s["spread_t"], "num"),
                 fmt(s["top_turnover"], "pct"), fmt(s["bars"], "int"), fmt(s["rows"], "int")]
                for name, s in block.items()]
        mark = " (the decision horizon)" if int(h) == int(decision_horizon) else ""
        parts.append(f"<h3>{html.escape(str(h))}-bar horizon{mark}</h3>" + table(rows, header))
    return "".join(parts)


def plots(wf: dict, out) -> dict[str, str]:
    images = {}
    importance = wf.get("feature_importance") or {}
    if importance:
        names, values = list(importance)[::-1], list(importance.values())[::-1]
        fig, ax = plt.subplots(figsize=(9, 0.28 * len(names) + 1.2))
        ax.barh(names, values, color="tab:blue")
        ax.set_xlabel("share of the tree models' gain (mean over folds)")
        ax.set_title("Feature importance")
        ax.tick_params(axis="y", labelsize=8)
        images["Feature importance (top features)"] = _save(fig, out / "feature_importance.png")
    bins = [b for b in wf.get("reliability", []) if b["count"]]
    if bins:
        fig, ax = plt.subplots(figsize=(6.5, 6))
        ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="perfect calibration")
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], "o-", color="tab:blue",
                label="ensemble (out of sample)")
        for b in bins:
            ax.annotate(str(b["count"]), (b["mean_predicted"], b["observed"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability of a rise")
        ax.set_ylabel("observed frequency of a rise")
        ax.set_title(f"Calibration ({wf['horizon']}-bar horizon; numbers: rows per bin)")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        images["Calibration (reliability diagram)"] = _save(fig, out / "calibration.png")
    folds = [f for f in wf.get("folds", []) if f["accuracy"] is not None]
    if folds:
        fig, ax = plt.subplots(figsize=(12, 4))
        # one evenly spaced bar per fold, labelled by its first test bar (explicit ticks, not strings as
        # categorical x values, which matplotlib announces on the terminal)
        positions = range(len(folds))
        ax.bar(positions, [f["accuracy"] for f in folds], color="tab:blue")
        ax.set_xticks(positions, [f["test_start"] for f in folds])
        up = wf["baselines"]["always_up"]["accuracy"]
        if up is not None:
            ax.axhline(up, color="tab:gray", ls="--", label=f"always up (all folds) {up:.1%}")
        ax.axhline(0.5, color="black", lw=0.8)
        if wf.get("leak_alarm_accuracy") is not None:
            ax.axhline(wf["leak_alarm_accuracy"], color="tab:red", ls=":", label="leak alarm")
        ax.set_ylabel("directional accuracy")
        ax.set_title("Out-of-sample accuracy per fold (by first test bar)")
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.legend(loc="lower right")
        images["Per-fold accuracy"] = _save(fig, out / "fold_accuracy.png")
    images.update(cross_section_plots(wf, out))
    return images


def cross_section_plots(wf: dict, out) -> dict[str, str]:
    """Quantile mean forward returns (decision horizon, the ensemble beside momentum 12-1) and the
    cumulative daily rank IC (the ensemble, momentum, reversal)."""
    images = {}
    cs = wf.get("cross_section") or {}
    block = cs.get("horizons", {}).get(str(wf["horizon"]), {})
    shown = [name for name in ("model", "momentum_12_1") if name in block]
    if shown and any(v is not None for name in shown for v in block[name]["quantile_mean_returns"]):
        q = cs["quantiles"]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(shown)
        for i, name in enumerate(shown):
            values = [100 * v if v is not None else 0.0 for v in block[name]["quantile_mean_returns"]]
            ax.bar([k + 1 + (i - (len(shown) - 1) / 2) * width for k in range(q)], values, width,
                   label=SCORE_NAMES[name], color=("tab:blue", "tab:orange")[i])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(1, q + 1))
        ax.set_xlabel(f"quantile of the score (1 = lowest, {q} = highest)")
        ax.set_ylabel(f"mean {wf['horizon']}-bar forward log return (%)")
        ax.set_title(f"Quantile mean forward returns ({wf['horizon']}-bar horizon, out of sample)")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
        images["Quantile mean forward returns"] = _save(fig, out / "quantile_returns.png")
    daily = cs.get("daily_rank_ic") or {}
    if daily.get("dates"):
        dates = pd.to_datetime(daily["dates"])
        fig, ax = plt.subplots(figsize=(12, 4.5))
        for name, color in (("model", "tab:blue"), ("momentum_12_1", "tab:orange"), ("reversal_1m", "tab:green")):
            if name in daily:
                values = np.array([np.nan if v is None else v for v in daily[name]], dtype=float)
                ax.plot(dates, np.nancumsum(values), color=color, label=SCORE_NAMES[name])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("cumulative daily rank IC")
        ax.set_title(f"Cumulative daily rank IC ({daily['horizon']}-bar forward returns, out of sample)")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
        images["Cumulative daily rank IC"] = _save(fig, out / "cumulative_rank_ic.png")
    return images


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return str(path)
