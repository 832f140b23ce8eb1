"""What the dashboard's views compute from a run's or a session's records: pure pandas and numpy,
no web framework, no journal (``dashboard.sources`` reads those), so each figure is tested alone.

Figures that need more data than there is (a Sharpe ratio of three days, win rate before a trade
closed) are None with the reason beside them, never a number that looks like an answer.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analyzers.stats import drawdown, return_metrics, trade_metrics
from risk.manager import historical_var

MIN_DAYS_FOR_RATIOS = 20  # fewer daily returns: no Sharpe, no annual multiple (noise, not an estimate)


def finite(value) -> float | None:
    """A JSON-safe number: None for None, NaN or infinity."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def thin(index: pd.DatetimeIndex, values: dict[str, np.ndarray], max_points: int) -> tuple[pd.DatetimeIndex, dict]:
    """At most about ``max_points`` points that keep the curve's shape: the series cut into equal
    buckets, and of each the first point and the points where the first series is lowest and highest
    (a drawdown's bottom and a peak survive, which every-n-th sampling would drop). Vectorised: a year
    of minute bars takes milliseconds."""
    n = len(index)
    if n <= max_points:
        return index, values
    lead = np.asarray(next(iter(values.values())), dtype=float)
    size = -(-n // max(1, max_points // 3))  # bucket length
    buckets = -(-n // size)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = np.where(np.isfinite(lead), lead, np.nan)
    grid = padded.reshape(buckets, size)
    starts = np.arange(buckets) * size
    empty = np.isnan(grid).all(axis=1)
    filled = np.where(np.isnan(grid), np.inf, grid)
    lows = starts + np.where(empty, 0, np.argmin(filled, axis=1))
    filled = np.where(np.isnan(grid), -np.inf, grid)
    highs = starts + np.where(empty, 0, np.argmax(filled, axis=1))
    rows = np.unique(np.concatenate([starts, lows, highs, [n - 1]]))
    rows = rows[rows < n]
    return index[rows], {name: np.asarray(series)[rows] for name, series in values.items()}


def equity_curve(equity: pd.Series, benchmark: pd.Series | None, max_points: int) -> dict:
    """The equity (marked to each bar's close: unrealised P&L included), its drawdown and the
    benchmark's equity rescaled to the same start, thinned for the chart."""
    if equity.empty:
        return {"t": [], "equity": [], "drawdown": [], "benchmark": []}
    series = {"equity": equity.to_numpy(dtype=float), "drawdown": drawdown(equity).to_numpy(dtype=float)}
    if benchmark is not None and not benchmark.dropna().empty:
        aligned = benchmark.sort_index().ffill().reindex(equity.index, method="ffill")
        first = aligned.dropna()
        scale = float(equity.loc[first.index[0]]) / float(first.iloc[0]) if len(first) and first.iloc[0] else 1.0
        series["benchmark"] = (aligned * scale).to_numpy(dtype=float)
    index, series = thin(equity.index, series, max_points)
    return {"t": [t.isoformat() for t in index],
            **{name: [finite(v) for v in values] for name, values in series.items()},
            "benchmark": [finite(v) for v in series.get("benchmark", [])]}


def equal_weight_index(closes: pd.DataFrame) -> pd.Series:
    """Equal-weight buy-and-hold of the columns (each from its first close): the live benchmark.
    Without costs; the run folder's buy-and-hold (``analyzers.stats.buy_and_hold``) has them."""
    first = closes.bfill().iloc[0]
    return (closes.ffill() / first).mean(axis=1)


def performance(equity: pd.Series, trades: pd.DataFrame) -> dict:
    """Return and trade figures; ratios only with ``MIN_DAYS_FOR_RATIOS`` daily returns."""
    out: dict = {}
    if len(equity) > 1:
        # the ratios from each day's last equity (what they are defined on; a year of minute bars
        # would cost a Python loop over every bar), the drawdown from every bar
        daily = equity.groupby(equity.index.normalize()).last()
        figures = return_metrics(daily) if len(daily) > 1 else {"n_days": 0, "sharpe": None, "annual_multiple": None}
        out.update(total_return=float(equity.iloc[-1] / equity.iloc[0] - 1.0),
                   max_drawdown=float(drawdown(equity).max()), n_days=figures["n_days"])
        if figures["n_days"] >= MIN_DAYS_FOR_RATIOS:
            out.update(sharpe=figures["sharpe"], annual_multiple=figures["annual_multiple"])
        else:
            out["too_short"] = (f"{figures['n_days']} daily returns: Sharpe and annual multiple need at least "
                                f"{MIN_DAYS_FOR_RATIOS}")
    if len(trades):
        days = max(1, out.get("n_days") or 1)
        figures = trade_metrics(trades, n_days=days)
        out.update({key: figures[key] for key in ("n_trades", "win_rate", "avg_win_loss_ratio", "trades_per_day",
                                                  "avg_holding_days", "profit_factor")})
    return {key: (finite(v) if isinstance(v, (float, np.floating)) else v) for key, v in out.items()}


def targets(achieved: dict, targets_config: dict[str, float]) -> list[dict]:
    """The blueprint's targets beside what was achieved: met, not met, or not measurable yet."""
    from reports.html import TARGET_ROWS

    rows = []
    for key, target in targets_config.items():
        label, metric, how, kind = TARGET_ROWS.get(key, (key, key, ">=", "num"))
        value = finite(achieved.get(metric))
        met = None if value is None else (value >= target if how == ">=" else value <= target)
        rows.append({"key": key, "label": label, "target": target, "how": how, "kind": kind, "achieved": value,
                     "met": met})
    return rows


def round_trips(fills: pd.DataFrame) -> pd.DataFrame:
    """Closed long round trips from fills (symbol, side, qty, price, commission, filled_datetime), in
    ``trades.csv``'s columns: a trade opens when a position leaves zero and closes when it returns;
    its P&L is what was sold less what was bought, less commission. Still open: ``exit_reason`` end."""
    columns = ["symbol", "entry_datetime", "exit_datetime", "size", "entry_price", "exit_price", "pnl", "pnl_pct",
               "exit_reason", "bars_held"]
    rows = []
    ordered = fills.sort_values(["symbol", "filled_datetime"], kind="stable")
    by_symbol: dict[str, list] = {}
    for symbol, side, qty, price, commission, when in zip(ordered["symbol"], ordered["side"], ordered["qty"],
                                                          ordered["price"], ordered["commission"],
                                                          ordered["filled_datetime"]):
        by_symbol.setdefault(symbol, []).append((side, float(qty), float(price), float(commission), when))
    for symbol, group in by_symbol.items():
        position, bought, sold, cost, start, size = 0.0, 0.0, 0.0, 0.0, None, 0.0
        for side, qty, price, commission, when in group:
            signed = qty if side == "buy" else -qty
            if position == 0 and signed > 0:
                bought, sold, cost, start, size = 0.0, 0.0, 0.0, when, 0.0
            if signed > 0:
                bought += qty * price
                size += qty
            else:
                sold += qty * price
            cost += commission
            position = round(position + signed, 9)
            if position == 0 and start is not None:
                pnl = sold - bought - cost
                rows.append([symbol, start, when, size, bought / size, sold / size, pnl,
                             pnl / bought if bought else 0.0, "closed", 0])
                start = None
        if position > 0 and start is not None:
            rows.append([symbol, start, None, size, bought / size, math.nan, math.nan, math.nan, "end", 0])
    return pd.DataFrame(rows, columns=columns)


def order_slippage(side: str, fill_price: float | None, decision_price: float | None) -> float | None:
    """A fill against the decision bar's close, in basis points, positive when it cost the trader."""
    if fill_price is None or decision_price is None or not decision_price or not math.isfinite(fill_price):
        return None
    sign = 1.0 if side == "buy" else -1.0
    return finite(sign * (fill_price / decision_price - 1.0) * 1e4)


def sector_exposure(values: pd.Series, sectors: dict[str, str], equity: float) -> list[dict]:
    """Market value per sector (``values``: by symbol) as a fraction of equity, largest first."""
    if values.empty or not equity:
        return []
    by_sector = values.groupby(lambda s: sectors.get(str(s).upper()) or "unknown").sum().sort_values(ascending=False)
    return [{"sector": name, "weight": finite(v / equity)} for name, v in by_sector.items()]


def correlation_exposure(returns: pd.DataFrame, held: list[str]) -> dict:
    """How alike the holdings move: the mean pairwise correlation of their returns and the most
    correlated pair (None with fewer than two holdings or too few returns)."""
    held = [s for s in held if s in returns.columns]
    if len(held) < 2 or len(returns) < 3:
        return {"mean": None, "pair": None, "bars": int(len(returns))}
    corr = returns[held].corr().to_numpy()
    upper = np.triu_indices(len(held), k=1)
    pairs = corr[upper]
    best = int(np.nanargmax(pairs)) if np.isfinite(pairs).any() else 0
    return {"mean": finite(np.nanmean(pairs)), "bars": int(len(returns)),
            "pair": [held[upper[0][best]], held[upper[1][best]], finite(pairs[best])]}


def portfolio_var(returns: pd.DataFrame, weights: pd.Series, confidence: float) -> float | None:
    """Historical VaR of today's weights over the returns given (the risk manager's definition)."""
    weights = weights[weights.index.isin(returns.columns)]
    if weights.empty or len(returns) < 2:
        return None
    book = returns[weights.index].fillna(0.0).to_numpy() @ weights.to_numpy(dtype=float)
    return finite(historical_var(book, confidence))


def histogram(values, bins: int = 10, lo: float = 0.0, hi: float = 1.0) -> dict:
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "n": int(values.size)}


def worst_drift(psi: dict[str, float] | None, n: int = 10) -> list[dict]:
    if not psi:
        return []
    ranked = sorted(((name, finite(v)) for name, v in psi.items()), key=lambda kv: -(kv[1] or 0.0))
    return [{"feature": name, "psi": value} for name, value in ranked[:n]]
