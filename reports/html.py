"""report.html: one self-contained page (plots embedded) with the run's figures, the blueprint's
targets against what the run achieved, and the trades."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

# (key in metrics.json, label, format)
METRIC_ROWS = [
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("annual_multiple", "Annual multiple (1 + CAGR)", "x"),
    ("sharpe", "Sharpe (annualised)", "num"),
    ("sharpe_ci_95", "Sharpe 95% interval (block bootstrap)", "interval"),
    ("probabilistic_sharpe", "Probabilistic Sharpe (P[true Sharpe > 0])", "num"),
    ("deflated_sharpe", "Deflated Sharpe (P[true Sharpe > best of n_trials by luck])", "num"),
    ("n_trials", "Configurations tried (deflation's n_trials)", "int"),
    ("excess_return", "Excess return over buy-and-hold (same bars)", "pct"),
    ("tracking_error", "Tracking error (annualised, daily returns less buy-and-hold's)", "pct"),
    ("information_ratio", "Information ratio (annualised mean active return / tracking error)", "num"),
    ("information_ratio_ci_95", "Information ratio 95% interval (block bootstrap)", "interval"),
    ("sortino", "Sortino", "num"),
    ("volatility", "Volatility (annualised)", "pct"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_days", "Longest drawdown (days)", "int"),
    ("n_trades", "Closed trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("avg_win", "Average win", "pct"),
    ("avg_loss", "Average loss", "pct"),
    ("avg_win_loss_ratio", "Average win / average loss", "num"),
    ("expectancy", "Expectancy per trade ($, after costs)", "money"),
    ("profit_factor", "Profit factor", "num"),
    ("sqn", "SQN", "num"),
    ("avg_holding_days", "Average holding time (days)", "num"),
    ("trades_per_day", "Trades per day", "num"),
    ("exposure", "Exposure (share of bars invested)", "pct"),
    ("turnover", "Turnover (traded value / mean equity, per year)", "num"),
    ("commission_paid", "Commission paid", "money"),
    ("slippage_paid", "Slippage paid (estimated)", "money"),
    ("end_equity", "Final equity", "money"),
]

# blueprint target key -> (label, metrics key, how it compares)
TARGET_ROWS = {
    "win_rate": ("Win rate", "win_rate", ">=", "pct"),
    "avg_win_loss_ratio": ("Average win / average loss", "avg_win_loss_ratio", ">=", "num"),
    "sharpe": ("Sharpe", "sharpe", ">=", "num"),
    "max_drawdown": ("Max drawdown", "max_drawdown", "<=", "pct"),
    "annual_multiple": ("Annual multiple (50x a year)", "annual_multiple", ">=", "x"),
    "trades_per_day": ("Trades per day", "trades_per_day", ">=", "num"),
    "avg_holding_days": ("Average holding time (days)", "avg_holding_days", "<=", "num"),
}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.note{background:#fff7e0;border:1px solid #e8c96a;padding:.7em 1em;margin:1em 0}
.alarm{background:#fde8e8;border:1px solid #d55;padding:.7em 1em;margin:1em 0}
.miss{color:#b00} .met{color:#070} img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.scroll{max-height:480px;overflow:auto}
"""


def fmt(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "int":
        return f"{int(value):d}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "interval":
        lo, hi = value
        return f"[{fmt(lo, 'num')}, {fmt(hi, 'num')}]"
    return f"{value:.3f}" if isinstance(value, (int, float)) else html.escape(str(value))


def _image(path: str | Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_table(metrics: dict) -> str:
    bh = metrics.get("buy_and_hold", {})
    rows = [[label, fmt(metrics.get(key), kind), fmt(bh.get(key), kind) if key in bh else ""]
            for key, label, kind in METRIC_ROWS if key in metrics or key in bh]
    return table(rows, ["", metrics.get("strategy", "strategy"), "buy and hold"])


def targets_table(metrics: dict, targets: dict[str, float]) -> str:
    rows = []
    for key, target in targets.items():
        label, metric_key, how, kind = TARGET_ROWS.get(key, (key, key, ">=", "num"))
        achieved = metrics.get(metric_key)
        if achieved is None:
            verdict = "n/a"
        else:
            met = achieved >= target if how == ">=" else achieved <= target
            verdict = '<span class="met">met</span>' if met else '<span class="miss">not met</span>'
        rows.append([label, f"{how} {fmt(target, kind)}", fmt(achieved, kind), verdict])
    return table(rows, ["Blueprint target", "target", "this run", ""])


def trades_table(trades: pd.DataFrame, limit: int = 500) -> str:
    if trades.empty:
        return "<p>No trades.</p>"
    shown = trades.head(limit)
    cols = ["symbol", "entry_datetime", "exit_datetime", "size", "entry_price", "exit_price", "pnl", "pnl_pct",
            "initial_stop", "target", "confidence", "exit_reason"]
    rows = []
    for _, t in shown[cols].iterrows():
        rows.append([html.escape(str(t["symbol"])), str(t["entry_datetime"])[:19], str(t["exit_datetime"])[:19],
                     fmt(t["size"], "int"), fmt(t["entry_price"], "money"), fmt(t["exit_price"], "money"),
                     fmt(t["pnl"], "money"), fmt(t["pnl_pct"], "pct"), fmt(_opt(t["initial_stop"]), "money"),
                     fmt(_opt(t["target"]), "money"), fmt(_opt(t["confidence"]), "num"), html.escape(str(t["exit_reason"]))])
    more = f"<p>First {limit} of {len(trades)} trades; all are in trades.csv.</p>" if len(trades) > limit else ""
    return more + '<div class="scroll">' + table(rows, cols) + "</div>"


def _opt(value):
    return None if value is None or pd.isna(value) else float(value)


def render_report(path, *, metrics: dict, trades: pd.DataFrame, images: dict[str, str],
                  targets: dict[str, float], sections: list[tuple[str, str]] = (),
                  alarms: list[str] = ()) -> str:
    """Write report.html. ``sections`` are extra (title, html) blocks, e.g. the walk-forward table."""
    cfg = metrics.get("config", {})
    costs = cfg.get("costs", {})
    rng = metrics.get("data_range", {})
    parts = [
        f"<h1>Backtest report: {html.escape(str(metrics.get('strategy')))}</h1>",
        f"<p>{len(metrics.get('symbols', []))} symbols ({html.escape(', '.join(metrics.get('symbols', [])))}); "
        f"{html.escape(str(rng.get('start')))} to {html.escape(str(rng.get('end')))}, {rng.get('bars')} bars; "
        f"seed {metrics.get('seed')}; config {metrics.get('config_hash')}. Costs: commission "
        f"{costs.get('commission_bps')} bps and slippage {costs.get('slippage_bps')} bps per side; orders fill at "
        f"the {html.escape(str(costs.get('fill', '')).replace('_', ' '))}.</p>",
        '<div class="note"><b>Past results do not predict future ones.</b> This is a simulation on historical '
        "data: fills, costs and liquidity are modelled, not observed. The sample universe is chosen from "
        "today's survivors (survivorship bias), and one backtest is one draw: read the Sharpe interval and "
        "the probabilistic Sharpe, and compare with buy-and-hold, before believing any figure.</div>",
    ]
    parts += [f'<div class="alarm">{html.escape(a)}</div>' for a in alarms]
    parts += ["<h2>Performance</h2>", metrics_table(metrics),
              "<h2>The blueprint's targets against this run</h2>",
              "<p>Targets the design promises; they are measured here, never tuned to.</p>",
              targets_table(metrics, targets)]
    st = metrics.get("stops_and_targets") or {}
    by_reason = st.get("exits_by_reason") or {}
    if by_reason:
        parts += ["<h2>Stops and targets</h2>",
                  f"<p>Mean initial stop {fmt(st.get('avg_initial_stop_pct'), 'pct')} below the entry fill; mean "
                  f"target {fmt(st.get('avg_target_pct'), 'pct')} above it (closed trades).</p>",
                  table([[html.escape(k), fmt(v["trades"], "int"), fmt(v["win_rate"], "pct"), fmt(v["avg_return"], "pct")]
                         for k, v in by_reason.items()], ["exit reason", "trades", "win rate", "mean return"])]
    for title, block in sections:
        parts += [f"<h2>{html.escape(title)}</h2>", block]
    parts.append("<h2>Charts</h2>")
    for title, image in images.items():
        parts += [f"<h3>{html.escape(title)}</h3>", _image(image)]
    parts += ["<h2>Trades</h2>", trades_table(trades)]
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Backtest report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    Path(path).write_text(page, encoding="utf-8")
    return str(path)
