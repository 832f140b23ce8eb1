"""The ML strategies: the ensemble of ``models`` trained walk-forward inside the strategy
(``strategies.signals.WalkForwardSignals``: retrain every ``models.retrain_every`` bars on the
trailing ``models.train_bars``, purged and embargoed), reading the registry's features as one row
per bar from the strategy's ``FeatureHub``.

- ``ml`` (:class:`MLTradingPlan`, the default strategy): the blueprint's trading plan, below.
- ``ml_equal_weight`` (:class:`MLEqualWeight`): the same entry signal, equal weights, exit at the
  horizon; the plan's simplest baseline.
- :class:`RiskGatedPlan`: what ``ml`` and the ranked plan ``ml_rank`` (``strategies.ml_rank``)
  share: the risk gates, the risk score's verdict, the initial stop, the decision log, the live state.

A candidate, for both: the calibrated probability of a rise over the decision horizon (the
confidence) is at least ``ml.min_confidence`` and the expected simple return over that horizon is
above ``ml.min_expected_return``.

The plan, each bar (numbers in ``[ml]`` and ``[risk]``):

1. risk gates: the daily loss limit blocks new entries for the rest of the day; the drawdown kill
   switch flattens every position (exit ``kill_switch``) and halts entries for the rest of the run
   (``risk.limits``);
2. open positions: exit at the time limit (``time``: ``ml.max_hold_bars`` since the entry signal last
   held for the symbol) or on a reversed signal (``signal``: P(rise)
   below ``ml.signal_exit_confidence`` with a negative expected return); halve once when confidence
   fell by more than ``risk.confidence_drop_halve`` from entry; switch the stop to a stop-trail order
   once the gain reaches ``risk.trail_activation`` where momentum and ADX say a trailing stop fits
   (the take-profit is then dropped: see ``replace_exits``);
   else raise the stop to the model's new optimal stop when it moved by more than
   ``risk.stop_move_threshold`` of the entry; move the target when the prediction moves it by more than
   ``risk.target_update_threshold``. The stop and the target are real orders (stop / stop-trail
   and limit, one cancelling the other): the broker fills the ``stop``, ``trailing_stop`` and
   ``target`` exits;
3. candidates ranked by expected value (confidence x expected return) fill the free slots
   (``risk.max_positions``); each gets its initial stop (``risk.stops.initial_stop_pct``: the
   stop-loss model's stop, scaled by 20-bar volatility and the regime, within 0.5-5%) and a target
   at the ensemble's upper bound over the decision horizon;
4. sizing: the cvxpy mean-variance weights with quarter-Kelly caps over candidates and holdings
   (``sizers.mean_variance``); the risk manager's score (VaR, correlation, sector, liquidity,
   regime) approves each entry or not and applies its adjustments (half size, one bar's delay, a
   limit order); whole shares under 2% risk per trade, at least $1000.

Each decision is one line in the run's ``decisions.log`` (and the ``decisions`` debug logger).
"""
from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pandas as pd

from common.errors import UserError
from features.from_config import engine_from_config
from indicators.feature_bank import FeatureHub
from risk.manager import Candidate, PortfolioView, RiskManager
from risk.position_rules import should_halve, target_should_update
from risk.stops import initial_stop_pct, stop_should_move, trailing_stop_fits
from sizers.mean_variance import MeanVarianceSizer
from strategies.base import PortfolioStrategy
from strategies.signals import WalkForwardSignals

log = logging.getLogger("strategy")
decisions_log = logging.getLogger("decisions")

# the registry's features the stop rules read (blueprint: ADX > 25 and positive momentum to trail)
ADX_FEATURE, MOMENTUM_FEATURE = "adx_14", "ret_20"


class MLStrategy(PortfolioStrategy):
    """What the ML strategies share: features, walk-forward predictions, the entry signal."""

    # given by benchmarks and tests that run the same bars again: (WalkForwardResult, PanelData) skips
    # the training; the features' FeaturePanel skips their batch computation
    params = (("walk_forward", None), ("feature_panel", None))
    live_model: str | None = None        # live --model: "NAME@id" of models/registry/NAME (set by the live session)
    # the plan reads the prediction as a return (thresholds, targets): a rank label predicts none
    reads_returns = True

    @classmethod
    def required_bars(cls, cfg) -> int:
        """Bars after which ``models.min_feature_fraction`` of the features are past their warm-up
        (counted in the symbol's own bars): a symbol with fewer is never predicted."""
        from features.registry import build_registry

        warmups = sorted(f.warmup for f in build_registry(config=cfg.features) if not f.calendar_clock)
        k = math.ceil(cfg.models.min_feature_fraction * len(warmups)) - 1
        return warmups[max(k, 0)] + 1

    @classmethod
    def bars_before_first_training(cls, cfg, registry) -> int:
        """Bars before the one where the strategy, training its own model (no registry model), first
        trains and predicts, when every symbol's history starts together (a live start): that bar is
        ``WalkForward.first_retrain``'s, the first usable bar plus ``models.train_bars``, where a bar is
        usable once ``models.min_feature_fraction`` of all the features are past their warm-up
        (``models.dataset.valid_rows``, calendar-clock features included). ``registry``: the features
        the strategy computes (``features.registry.build_registry`` for this config)."""
        warmups = sorted(feature.warmup for feature in registry)
        n = len(warmups)
        # the fewest finite features valid_rows accepts (its float comparison, not a rounded product)
        enough = next(count for count in range(1, n + 1) if count / n >= cfg.models.min_feature_fraction)
        return warmups[enough - 1] + cfg.models.train_bars

    def __init__(self):
        super().__init__()
        if self.reads_returns and self.cfg.models.labels.kind == "cross_sectional_rank":
            raise UserError(f"strategy {self.cfg.backtest.strategy} reads the models' predictions as returns, and "
                            "models.labels.kind = \"cross_sectional_rank\" predicts ranks: use a return label "
                            "(forward_return, triple_barrier, excess_return) or --strategy ml_rank")
        engine = engine_from_config(self.cfg, [d._name for d in self.datas])
        self.features = FeatureHub(self, engine, panel=self.p.feature_panel)
        self.signals = WalkForwardSignals(self.cfg, self.features, seed=self.cfg.backtest.seed,
                                          progress=self.cfg.backtest.progress and sys.stderr.isatty(),
                                          given=self.p.walk_forward)
        models = self.cfg.models
        self.decision = models.horizons.index(models.decision_horizon)
        self.hold_bars = self.cfg.ml.max_hold_bars or models.decision_horizon
        self.predictions = None
        self.by_name = {d._name: d for d in self.datas}

    def next(self):
        if self.live_model and self.signals.model_id is None:
            self._load_live_model()
        # every bar, also before --start: bar by bar, the models see each bar once and in order
        self.predictions = self.signals.current()
        journal = getattr(self.broker, "journal", None)
        if journal is not None and self.predictions is not None:
            # live: a record, not a decision; written once the bar's orders are sent (1-2 ms sooner)
            self.broker.defer(lambda p=self.predictions, when=self.datetime.datetime(0):
                              self._journal_predictions(journal, p, when))
        super().next()

    def _load_live_model(self) -> None:
        from models import registry

        name = self.live_model.split("@")[0]
        predictor, _ = registry.load(registry.REGISTRY_ROOT / name, self.features.names,
                                     self.features.engine.registry.hash())
        self.signals.use_model(predictor, self.live_model)
        log.info("trading registry model %s", self.live_model)

    def _journal_predictions(self, journal, p, when) -> None:
        """Live: the bar's predictions ``p``, each with the model's id, into the journal."""
        model_id = self.signals.model_id or f"walk-forward@{self.signals.walk.predictor.fitted_at}"
        journal.record_predictions(when, model_id, [(self.features.datas[j]._name, {
            "confidence": float(p.confidence[i]),
            "expected_return": float(np.expm1(p.expected_return[i, self.decision])),  # as expected_return(i)
            "stop_distance": float(p.stop_distance[i]), "regime": int(p.regime[i]),
            "upper": float(p.upper[i, self.decision]), "lower": float(p.lower[i, self.decision])})
            for i, j in enumerate(p.symbols)])

    def retrain_now(self) -> None:
        """The live runner's scheduled retrain (``live.retrain_every_days``), after the close."""
        info = self.signals.retrain_now()
        if info is not None:
            log.info("retrained on %d samples", info["n_train"])

    def prediction_rows(self) -> dict[str, int]:
        """symbol -> its row in ``self.predictions`` (symbols predicted at this bar)."""
        p = self.predictions
        if p is None:
            return {}
        return {self.features.datas[j]._name: i for i, j in enumerate(p.symbols)}

    def expected_return(self, i: int) -> float:
        """Expected simple return over the decision horizon of prediction row ``i``."""
        return float(np.expm1(self.predictions.expected_return[i, self.decision]))

    def candidates(self, rows: dict[str, int]) -> list[tuple[str, int]]:
        """(symbol, row) of the symbols that pass the entry signal, not held, with their warm-up."""
        out = []
        for name, i in rows.items():
            if name in self.positions_plan or not self.tradable(self.by_name[name]):
                continue
            if self.signal_holds(i):
                out.append((name, i))
        return out

    def signal_holds(self, i: int) -> bool:
        """Prediction row ``i`` passes the entry rule."""
        rule = self.cfg.ml
        return bool(self.predictions.confidence[i] >= rule.min_confidence
                    and self.expected_return(i) > rule.min_expected_return)

    def exit_at_time_limit(self, d, plan) -> bool:
        """Exit (``time``) once ``hold_bars`` have passed since the entry signal last held for it
        (``plan.extra["renewed_at"]``, in bars held: a fresh prediction that passes the entry rule
        covers the next horizon again)."""
        if plan.bars_held - plan.extra.get("renewed_at", 0) >= self.hold_bars:
            self.exit_position(d, "time")
            return True
        return False

    # ---- what the run's report reads ------------------------------------------------------------
    @property
    def search_journal(self):
        """Optuna's journal of the run's hyperparameter search trials (a file, once a search ran)."""
        return self.signals.walk.search_journal

    def walk_forward(self):
        """(``WalkForwardResult``, ``PanelData``) of the run, or None when no model was fitted."""
        result = self.signals.result()
        return None if result is None else (result, self.signals.labelled_data())


class MLEqualWeight(MLStrategy):
    """``ml_equal_weight``: the most confident candidates at 1/max_positions of equity each, held to
    the horizon. No stops: the baseline that shows what the plan's rules add."""

    def decide(self, now, fresh):
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is not None and plan.entry_datetime is not None and not plan.exiting:
                self.exit_at_time_limit(d, plan)
        candidates = self.candidates(self.prediction_rows())
        risk = self.cfg.risk
        free = risk.max_positions - self.open_and_pending()
        if free <= 0 or not candidates:
            return
        p = self.predictions
        equity = self.broker.getvalue()
        cash = self.broker.getcash() - self.committed_cash()
        weight = min(1.0 / risk.max_positions, risk.max_position_weight)
        for name, i in sorted(candidates, key=lambda c: (-p.confidence[c[1]], c[0]))[:free]:
            d = self.by_name[name]
            value = min(equity * weight, cash)
            if value < risk.min_position_value:
                break
            size = self.shares_for_value(value, d.close[0])
            if size <= 0:
                continue
            self.enter_long(d, size, stop_price=None, reason="ml", confidence=float(p.confidence[i]),
                            expected_return=self.expected_return(i))
            cash -= size * d.close[0]


class RiskGatedPlan(MLStrategy):
    """What the plans that trade through the risk manager share (``ml``, ``ml_rank``): the account's
    gates (the daily loss limit, the drawdown kill switch that flattens and halts), the risk score's
    verdict on each entry with its delay, the initial stop, the regime, the trailing returns and the
    liquidity the risk score reads, the decision log, and the state a live restart restores."""

    def __init__(self):
        super().__init__()
        from feeds.loader import load_sector_map

        cfg = self.cfg
        self.risk = RiskManager(cfg.risk)
        sectors = load_sector_map(cfg.data.sector_map) if cfg.data.sector_map else {}
        self.sectors = pd.Series({d._name: sectors.get(d._name.upper()) for d in self.datas}, dtype=object)
        self.regime_labels = cfg.models.regime.labels
        self.halted: dict | None = None      # the kill switch: when and why
        self.delayed: dict[str, int] = {}    # symbol -> calendar bar from which its delayed entry may go
        self.decision_lines: list[str] = []
        self._blocked_day = None

    # ---- the gates and the decision log -------------------------------------------------------
    def _decision(self, now, symbol: str, text: str) -> None:
        line = f"{now:%Y-%m-%d %H:%M} {symbol} {text}"
        self.decision_lines.append(line)
        decisions_log.debug(line)

    def _flatten(self, now, reason: str) -> None:
        if self.halted is None:
            self.halted = {"datetime": str(now), "reason": reason}
            log.warning("%s kill switch: %s; flattening and halting new entries for the rest of the run "
                        "(live, it survives restarts: a changed risk.max_drawdown clears it)", now, reason)
            self._decision(now, "-", f"KILL SWITCH {reason}: flatten, halt")
        for symbol, plan in list(self.positions_plan.items()):
            d = self.by_name[symbol]
            if plan.entry_datetime is None:
                if plan.entry_order.alive():
                    self.cancel(plan.entry_order)
            elif not plan.exiting:
                self.exit_position(d, "kill_switch")

    def _entries_blocked(self, now, gate) -> bool:
        """Whether the daily loss limit blocks new entries at this bar (said once a day in the log)."""
        if gate.allowed:
            return False
        if self._blocked_day != now.date():
            self._blocked_day = now.date()
            self._decision(now, "-", f"no new entries: {gate.reason}")
        return True

    def _approve(self, now, t: int, candidate: Candidate, portfolio: PortfolioView):
        """The risk manager's verdict on an entry at calendar bar ``t``: None when it is rejected or
        waits out a delay (each logged once), else the approved ``RiskAssessment`` (its size
        multiplier and limit order apply). A delayed entry is approved at its bar without a second delay."""
        name = candidate.symbol
        assessment = self.risk.assess(candidate, portfolio)
        if not assessment.approved:
            self._decision(now, name, f"rejected score {assessment.score:.2f}: {'; '.join(assessment.reasons)}")
            return None
        if assessment.delay_bars and name not in self.delayed:
            self.delayed[name] = t + assessment.delay_bars
            self._decision(now, name, f"delayed {assessment.delay_bars} bar(s): {'; '.join(assessment.reasons)}")
            return None
        if t < self.delayed.get(name, t):
            return None
        self.delayed.pop(name, None)
        return assessment

    # ---- what the risk rules read -------------------------------------------------------------
    def _stop_pct(self, d, i: int) -> float:
        """Initial stop distance for prediction row i: the stop-loss model's, scaled (risk.stops)."""
        n = self.cfg.risk.stop_volatility_bars
        closes = np.asarray(d.close.get(size=n + 1), dtype=float)
        vol = float(np.std(np.diff(np.log(closes)), ddof=1)) if len(closes) == n + 1 else math.nan
        return initial_stop_pct(float(self.predictions.stop_distance[i]), vol, self._regime(i), self.cfg.risk)

    def _regime(self, i: int) -> str | None:
        r = int(self.predictions.regime[i])
        return self.regime_labels[r] if 0 <= r < len(self.regime_labels) else None

    def _returns(self) -> pd.DataFrame:
        """Per-bar simple returns of every symbol up to this bar (the risk rules' history)."""
        r = self.cfg.risk
        t = self.features.calendar_index()
        bars = max(r.covariance_bars, r.var_bars, r.correlation_bars) + 1
        close = self.signals.data.close[max(0, t - bars + 1): t + 1]
        frame = pd.DataFrame(close, columns=list(self.features.engine.symbols))
        return frame.pct_change(fill_method=None).iloc[1:]

    def _average_dollar_volume(self, d) -> float:
        n = self.cfg.risk.adv_bars
        if len(d) < n:
            return math.nan
        return float(np.mean(np.asarray(d.close.get(size=n)) * np.asarray(d.volume.get(size=n))))

    # ---- live restarts ------------------------------------------------------------------------
    def export_state(self) -> dict:
        """The risk gates and the kill switch's verdict (per-position state is in the plans)."""
        return {"risk": self.risk.to_dict(), "halted": self.halted}

    def import_state(self, state: dict) -> None:
        self.risk.load_state(state["risk"])
        # a latch cleared by a changed risk.max_drawdown clears its record too
        self.halted = state.get("halted") if self.risk.kill_switch.tripped else None


class MLTradingPlan(RiskGatedPlan):
    """``ml``: the blueprint's trading plan (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.sizer = MeanVarianceSizer(risk=self.cfg.risk)   # Backtrader's sizer property: setsizer
        names = self.features.names
        self._adx, self._momentum = names.index(ADX_FEATURE), names.index(MOMENTUM_FEATURE)

    # ---- one bar ------------------------------------------------------------------------------
    def decide(self, now, fresh):
        gate = self.risk.update_equity(now, self.broker.getvalue())
        if gate.flatten:
            self._flatten(now, gate.reason)
            return
        rows = self.prediction_rows()
        self._manage(fresh, rows)
        if self._entries_blocked(now, gate):
            return
        self._enter(now, rows)

    # ---- open positions -----------------------------------------------------------------------
    def _manage(self, fresh, rows) -> None:
        risk, p = self.cfg.risk, self.predictions
        for d in fresh:
            plan = self.positions_plan.get(d._name)
            if plan is None or plan.entry_datetime is None or plan.exiting:
                continue
            i = rows.get(d._name)
            if i is not None and self.signal_holds(i):
                plan.extra["renewed_at"] = plan.bars_held
            if self.exit_at_time_limit(d, plan):
                continue
            if i is not None and p.confidence[i] < self.cfg.ml.signal_exit_confidence \
                    and p.expected_return[i, self.decision] < 0:
                self.exit_position(d, "signal")
                self._decision(self.now, d._name, f"exit signal confidence {p.confidence[i]:.3f}")
                continue
            x = plan.extra
            close, entry = float(d.close[0]), plan.entry_price
            x["highest"] = max(x.get("highest", entry), float(d.high[0]))
            size = int(self.getposition(d).size)
            stop, target, trailing = plan.stop_price, plan.target_price, x.get("trailing", False)
            changed = []
            features = self.features.row(d)
            if not trailing and x["highest"] >= entry * (1 + risk.trail_activation) \
                    and trailing_stop_fits(features[self._momentum], features[self._adx], adx_min=risk.trail_adx_min,
                                           min_momentum=risk.trail_min_momentum) \
                    and close * (1 - risk.trail_pct) > (stop or 0.0):
                trailing, stop = True, close * (1 - risk.trail_pct)
                changed.append(f"trailing stop {risk.trail_pct:.1%}")
            if i is not None:
                if not trailing and stop is not None:
                    optimal = close * (1 - self._stop_pct(d, i))
                    if stop_should_move(stop, optimal, entry, risk.stop_move_threshold):
                        stop = optimal
                        changed.append(f"stop {stop:.2f}")
                predicted = self._target(close, i)
                if target is not None and predicted > close and \
                        target_should_update(target, predicted, risk.target_update_threshold):
                    target = predicted
                    changed.append(f"target {target:.2f}")
                if should_halve(plan.confidence or 0.0, float(p.confidence[i]), risk.confidence_drop_halve,
                                already_halved=x.get("halved", False)) and size >= 2:
                    half = size // 2
                    self._tag(self.sell(data=d, size=half, exectype=self._entry_exectype), d._name, "reduce")
                    size -= half
                    plan.size, x["halved"] = size, True
                    changed.append(f"halve to {size} (confidence {p.confidence[i]:.3f} from {plan.confidence:.3f})")
            if changed:
                x["trailing"] = trailing
                self.replace_exits(d, plan, size=size, stop_price=stop, target_price=target, trailing=trailing)
                self._decision(self.now, d._name, "; ".join(changed))
            elif trailing:   # the broker trails the order: show where it is now
                order = next((c for c in plan.children if c.exectype == c.StopTrail and c.alive()), None)
                if order is not None and order.created.price:
                    self.stop_levels[d._name] = plan.stop_price = float(order.created.price)

    # ---- new entries --------------------------------------------------------------------------
    def _target(self, price: float, i: int) -> float:
        """The ensemble's upper bound over the decision horizon (else the expected return)."""
        upper = float(self.predictions.upper[i, self.decision])
        if not math.isfinite(upper) or upper <= self.predictions.expected_return[i, self.decision]:
            return price * (1 + self.expected_return(i))
        return price * math.exp(upper)

    def _enter(self, now, rows) -> None:
        risk, p = self.cfg.risk, self.predictions
        t = self.features.calendar_index()
        self.delayed = {s: bar for s, bar in self.delayed.items() if bar >= t}   # a lapsed delay is forgotten
        candidates = self.candidates(rows)
        free = risk.max_positions - self.open_and_pending()
        if free <= 0 or not candidates:
            return
        value = {name: float(p.confidence[i]) * self.expected_return(i) for name, i in candidates}
        candidates = sorted(candidates, key=lambda c: (-value[c[0]], c[0]))[:free]
        equity = self.broker.getvalue()
        # weights of what is held or on its way (a pending entry at its planned size)
        holdings = {s: plan.size * float(self.by_name[s].close[0]) / equity for s, plan in self.positions_plan.items()}
        stop_pct = {name: self._stop_pct(self.by_name[name], i) for name, i in candidates}
        names = list(holdings) + [name for name, _ in candidates]
        per_bar = {name: self.expected_return(rows[name]) / self.cfg.models.decision_horizon
                   if name in rows else 0.0 for name in names}
        confidence = {name: float(p.confidence[rows[name]]) if name in rows else 0.5 for name in names}
        gain = {name: self.expected_return(rows[name]) if name in rows else 0.0 for name in names}
        # holdings join the problem (their covariance and budget); the plan neither adds to nor trims them
        stops = {**{s: risk.stop_max for s in holdings}, **stop_pct}
        returns = self._returns()
        allocation = self.sizer.weights(pd.Series(per_bar), returns, self.sectors, p_win=pd.Series(confidence),
                                        expected_gain=pd.Series(gain), stop_distance=pd.Series(stops),
                                        current_weights=pd.Series(holdings, dtype=float), max_names=risk.max_positions)
        if allocation.fallback_used:
            self._decision(now, "-", f"sizing fallback: {allocation.message}")
        cash = self.broker.getcash() - self.committed_cash()
        room = risk.max_total_weight - sum(holdings.values())
        regime = self._regime(candidates[0][1])
        sectors = self.sectors.dropna().to_dict()
        for name, i in candidates:
            d = self.by_name[name]
            weight = min(float(allocation.weights.get(name, 0.0)), room)
            if weight <= 0:
                continue
            price = float(d.close[0])
            adv = self._average_dollar_volume(d)
            assessment = self._approve(now, t, Candidate(name, weight, self.sectors.get(name), adv),
                                       PortfolioView(equity, holdings, sectors, returns, regime))
            if assessment is None:
                continue
            weight *= assessment.size_multiplier
            size = self.sizer.shares(name, weight, equity, price, stop_pct[name])
            costs = (self.cfg.costs.commission_bps + self.cfg.costs.slippage_bps) / 1e4
            size = min(size, int(cash / (price * (1 + 2 * costs))))
            if size <= 0 or size * price < risk.min_position_value:
                continue
            stop, target = price * (1 - stop_pct[name]), self._target(price, i)
            limit = price if assessment.use_limit_order else None
            self.enter_long(d, size, stop_price=stop, target_price=target, reason="ml",
                            confidence=float(p.confidence[i]), expected_return=self.expected_return(i),
                            limit_price=limit)
            self._decision(now, name, f"BUY size {size} entry {price:.2f} target {target:.2f} stop {stop:.2f} "
                                      f"confidence {p.confidence[i]:.3f} expected {self.expected_return(i):.4f} "
                                      f"weight {weight:.4f} risk score {assessment.score:.2f}"
                                      + (" limit order" if limit else ""))
            cash -= size * price
            room -= size * price / equity
            holdings[name] = size * price / equity
