"""The model report's plots, drawn from a real run's walk-forward section."""
from __future__ import annotations

import logging

from reports import model_report


def _section(n_folds: int = 6) -> dict:
    folds = [{"fold": k, "test_start": f"2015-0{k + 1}-02", "accuracy": 0.5 + 0.01 * k} for k in range(n_folds)]
    return {"horizon": 5, "folds": folds, "baselines": {"always_up": {"accuracy": 0.55}}, "leak_alarm_accuracy": 0.7}


def test_per_fold_accuracy_plot_is_quiet_and_labelled(tmp_path, caplog):
    """One bar per fold, labelled by its first test bar, and no library chatter on the terminal (a
    plot of strings as x values makes matplotlib log at INFO)."""
    with caplog.at_level(logging.INFO):
        images = model_report.plots(_section(), tmp_path)
    assert (tmp_path / "fold_accuracy.png").stat().st_size > 0 and "Per-fold accuracy" in images
    assert not [r for r in caplog.records if r.name.startswith("matplotlib")], caplog.text
