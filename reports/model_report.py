"""The models' part of a run's report, from the ``walk_forward`` section of metrics.json alone: the
out-of-sample table against the baselines, per-fold rows, the leak alarm, and three plots (feature
importance, calibration, per-fold accuracy)."""
from __future__ import annotations

import html

import matplotlib

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
              fmt(f["auc"], "num"), fmt(f["ic"], "num"), fmt(f["log_loss"], "num")] for f in wf["folds"]]
    return [
        ("Walk-forward: out-of-sample accuracy against baselines",
         intro + table(rows, ["", "directional accuracy", "95% interval", "AUC", "IC", "log loss", "rows"])
         + table(horizons, ["horizon (bars)", "accuracy", "95% interval", "AUC", "IC"])),
        ("Walk-forward folds", '<div class="scroll">' + table(
            folds, ["fold", "train", "test", "train rows", "test rows", "accuracy", "AUC", "IC", "log loss"]) + "</div>"),
    ]


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
        ax.bar([f["test_start"] for f in folds], [f["accuracy"] for f in folds], color="tab:blue")
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
    return images


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return str(path)
