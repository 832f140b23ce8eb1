"""Write a run's outputs into its folder: records (CSV), metrics.json, plots and report.html."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from common.jsonable import to_jsonable
from reports import html as report_html
from reports import plots

log = logging.getLogger("report")

RECORD_FILES = ("orders.csv", "trades.csv", "positions.csv", "equity.csv")


def write_metrics(path, metrics: dict) -> None:
    Path(path).write_text(json.dumps(to_jsonable(metrics), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_records(out: Path, records) -> None:
    records.orders.to_csv(out / "orders.csv", index=False)
    records.trades.to_csv(out / "trades.csv", index=False)
    records.positions.to_csv(out / "positions.csv", index=False)
    records.equity.to_csv(out / "equity.csv", index=False)


def most_traded(trades: pd.DataFrame, symbols: list[str], n: int) -> list[str]:
    if n <= 0:
        return []
    counts = trades["symbol"].value_counts() if len(trades) else pd.Series(dtype=int)
    ranked = sorted(symbols, key=lambda s: (-int(counts.get(s, 0)), s))
    return ranked[:n]


def write_run(out: Path, result, *, plot: bool = True, sections=(), alarms=(), extra_images=None) -> dict:
    """Everything a run leaves behind. Returns {name: path}. A run whose strategy trained models
    (metrics ``walk_forward``) gets their tables, plots and leak alarm too."""
    out.mkdir(parents=True, exist_ok=True)
    halted = result.metrics.get("kill_switch")
    if halted:
        alarms = [f"Kill switch tripped at {halted['datetime']}: {halted['reason']}. Every position was closed "
                  "and no new entry was taken after it.", *alarms]
    wf = result.metrics.get("walk_forward")
    if wf is not None:
        from reports import model_report

        sections = [*model_report.sections(wf), *sections]
        alarms = [*model_report.leak_alarms(wf), *alarms]
        if plot:
            extra_images = {**model_report.plots(wf, out), **(extra_images or {})}
    if result.metrics.get("news") is not None:
        from reports import model_report

        sections = [*sections, ("News: headlines per symbol", model_report.news_block(result.metrics["news"]))]
    write_records(out, result.records)
    write_metrics(out / "metrics.json", result.metrics)
    written = {name: str(out / name) for name in RECORD_FILES + ("metrics.json",)}
    lines = getattr(result.strategy, "decision_lines", None)
    if lines is not None:   # the plan's one line per decision
        (out / "decisions.log").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        written["decisions.log"] = str(out / "decisions.log")
    journal = getattr(result.strategy, "search_journal", None)
    if journal is not None and Path(journal).exists():   # every trial of the hyperparameter searches
        shutil.copyfile(journal, out / "search.journal")
        written["search.journal"] = str(out / "search.journal")
    images: dict[str, str] = {}
    if plot:
        equity = result.records.equity.set_index(pd.to_datetime(result.records.equity["datetime"]))["equity"]
        images["Equity and drawdown against buy-and-hold"] = plots.equity_vs_benchmark(
            equity, result.buy_and_hold["equity"], out / "equity.png", label=result.cfg.backtest.strategy)
        images["Monthly returns"] = plots.monthly_heatmap(equity, out / "monthly_returns.png")
        images.update(extra_images or {})
        chart_symbols = most_traded(result.records.trades, result.symbols, result.cfg.backtest.chart_symbols)
        if chart_symbols:
            from engine.compat import save_chart

            for d in result.strategy.datas:
                d.plotinfo.plot = d._name in chart_symbols
            try:
                for i, path in enumerate(save_chart(result.cerebro, out / "chart.png")):
                    images[f"Backtrader chart: {', '.join(chart_symbols)} (trades and stop levels)" if i == 0
                           else f"Backtrader chart ({i + 1})"] = path
            except Exception as exc:  # a chart must never cost the user the run's results
                log.warning("Backtrader chart failed (%s); the other outputs are complete", exc)
        written.update({Path(p).name: p for p in images.values()})
    written["report.html"] = report_html.render_report(
        out / "report.html", metrics=result.metrics, trades=result.records.trades, images=images,
        targets=dict(result.cfg.report.blueprint_targets), sections=list(sections), alarms=list(alarms))
    return written
