"""``ml_rank`` (:class:`MLRankPlan`): a ranked, fully invested plan on the ensemble's scores.

Where ``ml`` waits for a confident call on one symbol, this plan asks only which symbols the models
like best: it holds the ``top_k`` the ensemble ranks highest and stays invested. Its question is the
cross-section (which stocks), not the market's direction (whether to hold stocks at all), so its
yardstick is the equal-weight buy-and-hold of the same universe: metrics.json's ``excess_return`` and
``information_ratio``.

At the first bar with predictions, then every ``ml_rank.rebalance_bars`` bars (numbers in
``[ml_rank]`` and ``[risk]``):

1. risk gates, as in ``ml`` (:class:`strategies.ml.RiskGatedPlan`): a day that lost
   ``risk.daily_loss_limit`` of equity allows no new entries (sales by rank still go); the drawdown
   kill switch flattens every position (exit ``kill_switch``) and halts entries for the rest of the run;
2. rank the symbols predicted at this bar (with a bar now, past their warm-up, not about to leave the
   data) by the stacked ensemble's expected log return at the decision horizon, highest first, equal
   scores by symbol name (``ml_rank.score = "momentum_12_1"``: by the 12-1 month momentum instead, the
   baseline the models must beat in the same plan). When every symbol gets the same score (the
   stacking gave every base model zero weight: no opinion on which stock), the rebalance trades
   nothing and the holdings are kept;
3. select (``strategies.ranking.select_holdings``, Qlib's top-k dropout): a holding ranked within
   ``keep_k`` is kept, any other is sold (exit ``rank``); the best-ranked names not held fill the
   ``top_k`` slots the kept holdings leave; one the risk manager rejects gives its slot to the next
   ranked (down to rank ``keep_k``: one ranked lower would be sold at the next rebalance). Holdings are
   never added to or trimmed, so what is traded is only what changed rank enough;
4. size: the new entries share the room R = ``target_exposure`` x equity - what is held or pending
   (this bar's closes; this bar's sales left out). Each in turn takes R_left x its share among the
   entries still to place (itself and those after it in the free slots), at most
   ``risk.max_position_weight`` of equity and the cash left (this bar's sales' proceeds included,
   less ``ml_rank.cash_buffer`` of equity: buys sized at the close fill at the next open, and one
   that costs more than the cash left is refused by the broker):

   - ``weights = "equal"``: equal shares, so with nothing held each of the ``top_k`` gets
     ``target_exposure / top_k`` (capped);
   - ``weights = "mean_variance"``: shares proportional to the cvxpy sizer's weights
     (``risk.portfolio.MeanVarianceSizer``: expected return minus ``risk.risk_aversion`` x variance,
     Ledoit-Wolf covariance, at most ``risk.max_position_weight`` a name and ``risk.max_sector_weight`` a sector,
     holdings in the problem at their weights; no Kelly caps: the plan sizes by rank, not by edge).
     The optimiser sets the proportions, and the scaling to R_left keeps the plan near its target
     exposure whatever total the optimiser would hold. A name it leaves at zero (a non-positive
     expected return, an unknown variance) is not bought;

   a position's risk (value x stop distance) at most ``risk.risk_per_trade`` of equity when it has
   a stop; whole shares, at least ``risk.min_position_value``;
5. the risk manager's score approves each entry or not, and applies its adjustments as in ``ml``
   (half size, one bar's delay, a limit order); a delayed entry goes at its bar, re-assessed, or not
   at all before the next rebalance (a live restart forgets it);
6. ``ml_rank.stops``: each entry with the initial stop order ``ml`` places (``risk.stops``: the
   stop-loss model's stop scaled by volatility and the regime, within ``risk.stop_min``..``stop_max``);
   no take-profit, no trailing or moved stops. A stopped-out slot stays in cash until the next rebalance.

Between rebalances nothing is bought or sold but delayed entries, stops and delistings (the base
class closes a position whose data ends: exit ``delisted``). Each decision is one line in the run's
``decisions.log``: a rebalance's summary (ranked, held, kept, sold, bought, rejected, delayed,
invested), each SELL and BUY with its rank and score, each rejection or delay, the kill switch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.factor_evaluation import momentum_12_1_at
from risk.manager import Candidate, PortfolioView
from risk.portfolio import MeanVarianceSizer
from risk.sizing import cost_rate, shares_for_value
from strategies.ml import RiskGatedPlan
from strategies.ranking import Selection, rank_symbols, select_holdings


NO_SPREAD = 1e-12   # scores this close together are one score (floating-point noise of a constant)


@dataclass
class _Book:
    """The account as a rebalance sees it, updated as entries are placed (weights are of equity)."""

    equity: float
    holdings: dict[str, float]   # held (kept) and pending names -> weight at this bar's close
    cash: float                  # broker cash - pending entries + this bar's sales, after costs
    room: float                  # target_exposure - sum(holdings)
    returns: pd.DataFrame        # what the risk score reads: trailing returns, sectors, the regime
    sectors: dict[str, str]
    regime: str | None

    def add(self, name: str, value: float, costs: float) -> None:
        self.holdings[name] = value / self.equity
        self.room -= value / self.equity
        self.cash -= value * (1 + costs)


class MLRankPlan(RiskGatedPlan):
    """``ml_rank``: see the module docstring."""

    ENTRY_REASON, EXIT_REASON = "ml_rank", "rank"
    reads_returns = False        # only the order of the scores counts: any label kind will do

    def __init__(self):
        super().__init__()
        cfg = self.cfg
        self.plan = cfg.ml_rank
        if self.plan.weights == "mean_variance":
            # a problem large enough for the holdings and every candidate down to keep_k
            size = cfg.risk.max_positions + self.plan.keep_k
            self.mean_variance = MeanVarianceSizer(cfg.risk.model_copy(update={"max_positions": size}))
        self.since_rebalance: int | None = None          # bars since the last rebalance; None before the first
        self.waiting: dict[str, tuple[float, int, float]] = {}   # delayed entries: symbol -> (weight, rank, score)
        self._costs = cost_rate(cfg.costs)

    # ---- one bar ------------------------------------------------------------------------------
    def decide(self, now, fresh):
        gate = self.risk.update_equity(now, self.broker.getvalue())
        if gate.flatten:
            self._flatten(now, gate.reason)
            return
        if self.since_rebalance is not None:
            self.since_rebalance += 1
        rows = self.prediction_rows()
        t = self.features.calendar_index()
        due = bool(rows) and (self.since_rebalance is None or self.since_rebalance >= self.plan.rebalance_bars)
        if due:
            ranked, scores = self._rank(fresh, rows)
            if len(scores) > 1 and np.ptp(list(scores.values())) <= NO_SPREAD:
                # the stacking gave every base model zero weight: one score for all, no opinion on
                # which stock; ranking ties by name would trade the alphabet, so nothing is traded
                self._decision(now, "-", f"REBALANCE skipped: one score ({next(iter(scores.values())):.6f}) for all "
                                         f"{len(scores)} ranked symbols, no cross-sectional opinion; holdings kept")
            else:
                selection = self._sell(now, t, ranked, scores)
                self._buy(now, t, rows, ranked, scores, selection, blocked=self._entries_blocked(now, gate))
            self.since_rebalance = 0
        elif not self._entries_blocked(now, gate) and self.waiting:
            self._enter_waiting(now, t, rows)

    # ---- ranking and selling ------------------------------------------------------------------
    def _rank(self, fresh, rows) -> tuple[list[str], dict[str, float]]:
        """The symbols that may be ranked now, best first, and their scores (the ensemble's expected
        log return at the decision horizon, or ``ml_rank.score``'s 12-1 month momentum)."""
        p = self.predictions
        momentum = None
        if self.plan.score == "momentum_12_1":
            momentum = momentum_12_1_at(self.signals.data.close, self.features.calendar_index())
            column = {name: j for j, name in enumerate(self.features.engine.symbols)}
        scores = {}
        for d in fresh:
            i = rows.get(d._name)
            if i is not None and self.tradable(d) and not self._leaving(d):
                scores[d._name] = (float(p.expected_return[i, self.decision]) if momentum is None
                                   else float(momentum[column[d._name]]))
        return rank_symbols(scores), scores

    def _sell(self, now, t: int, ranked: list[str], scores: dict[str, float]) -> Selection:
        """Select (top-k dropout) and sell the holdings ranked below keep_k; an entry still pending
        (a limit order) is withdrawn instead."""
        self.waiting = {}
        self.delayed = {s: bar for s, bar in self.delayed.items() if bar >= t}   # a lapsed delay is forgotten
        held = [s for s, plan in self.positions_plan.items() if not plan.exiting]
        selection = select_holdings(ranked, held, self.plan.top_k, self.plan.keep_k)
        position = {name: k + 1 for k, name in enumerate(ranked)}
        for name in selection.sell:
            plan = self.positions_plan[name]
            why = f"rank {position[name]} score {scores[name]:.4f}: below the top {self.plan.keep_k} (ml_rank.keep_k)"
            if plan.entry_datetime is None:
                if plan.entry_order.alive():
                    self.cancel(plan.entry_order)
                self._decision(now, name, f"CANCEL entry, {why}")
            else:
                self.exit_position(self.by_name[name], self.EXIT_REASON)
                self._decision(now, name, f"SELL {why}")
        return selection

    # ---- buying -------------------------------------------------------------------------------
    def _book(self, selling=(), regime: str | None = None) -> _Book:
        equity = self.broker.getvalue()
        holdings, pending, proceeds = {}, 0.0, 0.0
        for name, plan in self.positions_plan.items():
            close = float(self.by_name[name].close[0])
            if name in selling:
                if plan.entry_datetime is not None:
                    proceeds += self.getposition(self.by_name[name]).size * close * (1 - self._costs)
                continue
            if plan.exiting:
                continue
            if plan.entry_datetime is None:
                holdings[name] = plan.size * close / equity
                if plan.entry_order.alive():
                    pending += plan.size * plan.signal_price
            else:
                holdings[name] = self.getposition(self.by_name[name]).size * close / equity
        cash = self.broker.getcash() - pending + proceeds - self.plan.cash_buffer * equity
        return _Book(equity, holdings, cash, self.plan.target_exposure - sum(holdings.values()), self._returns(),
                     self.known_sectors, regime)

    def _proportions(self, queue: list[str], book: _Book, rows: dict[str, int], now) -> dict[str, float]:
        """Each candidate's share of the room relative to the others: 1 each (``equal``), or its
        mean-variance weight (``mean_variance``; zero: not bought)."""
        if self.plan.weights == "equal":
            return dict.fromkeys(queue, 1.0)
        names = list(book.holdings) + queue
        horizon = self.cfg.models.decision_horizon
        per_bar = pd.Series({name: self.expected_return(rows[name]) / horizon if name in rows else 0.0
                             for name in names})
        allocation = self.mean_variance.weights(per_bar, book.returns, self.sectors,
                                                current_weights=pd.Series(book.holdings, dtype=float),
                                                max_names=min(len(names), self.mean_variance.problem.size))
        if allocation.fallback_used:
            self._decision(now, "-", f"sizing fallback: {allocation.message}")
        return {name: float(allocation.weights.get(name, 0.0)) for name in queue}

    def _buy(self, now, t: int, rows, ranked, scores, selection: Selection, blocked: bool) -> None:
        """Fill the free slots in rank order (a refused candidate's slot passes to the next), then the
        rebalance's summary line."""
        position = {name: k + 1 for k, name in enumerate(ranked)}
        counts = dict.fromkeys(("bought", "rejected", "delayed"), 0)
        book = self._book(set(selection.sell), self._regime(rows[ranked[0]]) if ranked else None)
        slots = len(selection.buy)
        if slots and not blocked:
            queue = [*selection.buy, *selection.reserve]
            share = self._proportions(queue, book, rows, now)
            queue = [name for name in queue if share[name] > 0]
            for k, name in enumerate(queue):
                if slots == 0 or book.room * book.equity < self.cfg.risk.min_position_value:
                    break
                weight = book.room * share[name] / sum(share[n] for n in queue[k: k + slots])
                outcome = self._place(now, t, name, rows[name], min(weight, self.cfg.risk.max_position_weight),
                                      book, position[name], scores[name])
                if outcome in ("bought", "delayed"):
                    slots -= 1
                if outcome in counts:
                    counts[outcome] += 1
        self._decision(now, "-", f"REBALANCE ranked {len(ranked)}: held {len(selection.keep) + len(selection.sell)}, "
                                 f"kept {len(selection.keep)}, sold {len(selection.sell)}, bought {counts['bought']}, "
                                 f"rejected {counts['rejected']}, delayed {counts['delayed']}; invested "
                                 f"{self.plan.target_exposure - book.room:.1%}"
                                 + ("; no new entries (daily loss limit)" if blocked and slots else ""))

    def _enter_waiting(self, now, t: int, rows) -> None:
        """Delayed entries whose bar has come: re-assessed and placed, or dropped."""
        ready = sorted((name for name in self.waiting if self.delayed.get(name, t) <= t),
                       key=lambda name: self.waiting[name][1])
        if not ready:
            return
        book = None
        for name in ready:
            weight, rank, score = self.waiting.pop(name)
            if name not in rows:
                self.delayed.pop(name, None)
                self._decision(now, name, "delayed entry dropped: no prediction at its bar")
                continue
            book = book or self._book(regime=self._regime(rows[name]))
            if min(weight, book.room) > 0:
                self._place(now, t, name, rows[name], min(weight, book.room), book, rank, score)

    def _place(self, now, t: int, name: str, i: int, weight: float, book: _Book, rank: int, score: float) -> str:
        """One entry of ``weight`` (of equity) through the risk manager: "bought", "rejected",
        "delayed" (kept in ``waiting`` with its slot and room) or "skipped" (too small to trade)."""
        d, risk = self.by_name[name], self.cfg.risk
        candidate = Candidate(name, weight, self.sectors.get(name), self._average_dollar_volume(d))
        assessment = self._approve(now, t, candidate,
                                   PortfolioView(book.equity, book.holdings, book.sectors, book.returns, book.regime))
        price = float(d.close[0])
        if assessment is None:
            if self.delayed.get(name, t) > t:
                self.waiting[name] = (weight, rank, score)
                book.add(name, weight * book.equity, self._costs)
                return "delayed"
            return "rejected"
        weight *= assessment.size_multiplier
        value = weight * book.equity
        stop = None
        if self.plan.stops:
            stop_pct = self._stop_pct(d, i)
            value = min(value, risk.risk_per_trade / stop_pct * book.equity)
            stop = price * (1 - stop_pct)
        size = shares_for_value(min(value, book.cash), price, self._costs)
        if size * price < max(risk.min_position_value, 1e-9):
            return "skipped"
        limit = price if assessment.use_limit_order else None
        order = self.enter_long(d, size, stop_price=stop, reason=self.ENTRY_REASON,
                                confidence=float(self.predictions.confidence[i]),
                                expected_return=self.expected_return(i), limit_price=limit)
        if order is None:
            return "skipped"
        book.add(name, size * price, self._costs)
        stop_text = "none" if stop is None else f"{stop:.2f}"
        self._decision(now, name, f"BUY rank {rank} score {score:.4f} size {size} entry {price:.2f} stop {stop_text} "
                                  f"weight {size * price / book.equity:.4f} risk score {assessment.score:.2f}"
                                  + (" limit order" if limit else ""))
        return "bought"

    # ---- live restarts ------------------------------------------------------------------------
    def export_state(self) -> dict:
        """The risk gates, the kill switch's verdict and the rebalance schedule."""
        return {**super().export_state(), "since_rebalance": self.since_rebalance}

    def import_state(self, state: dict) -> None:
        super().import_state(state)
        self.since_rebalance = state.get("since_rebalance")
